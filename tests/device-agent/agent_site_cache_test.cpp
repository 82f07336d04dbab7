// A site artifact cache (docs/multisite.md, "Site artifact cache"): a real nginx as a caching
// reverse proxy (scripts/render-nginx-config --cache-origin) in front of the real nginx origin of
// the agent fixture. A thousand devices of a site reach the origin once per slice, a resumed
// download continues from the cached pieces, and the agent (download.caches) goes through the
// cache; a poisoned cache is refused by the SHA-256 and the origin serves the device instead, or,
// without the fallback, the device keeps what it has.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <regex>

#include "agent_fixture.hpp"
#include "ota/download.hpp"

namespace {

// The origin's slow location, for a download to be cut half way.
const std::vector<std::pair<std::string, std::string>> kOriginLocations = {{"/slow/", "limit_rate 512k;"}};

struct Request {
    int status{0};
    std::uint64_t bytes{0};
};

// The requests in an nginx access log for paths that end with `name`.
std::vector<Request> requests_for(const std::string& log, const std::string& name) {
    std::vector<Request> out;
    const std::regex line("\"GET [^\" ]*" + std::regex_replace(name, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                          " HTTP/[0-9.]+\" ([0-9]{3}) ([0-9]+)");
    for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator(); ++it)
        out.push_back({std::stoi((*it)[1].str()), std::stoull((*it)[2].str())});
    return out;
}

std::uint64_t total_bytes(const std::vector<Request>& requests) {
    std::uint64_t n = 0;
    for (const auto& r : requests) n += r.bytes;
    return n;
}

std::string pattern(std::size_t size, unsigned seed) {
    std::string s(size, '\0');
    std::uint32_t x = seed * 2654435761U + 1;
    for (auto& c : s) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c = static_cast<char>(x & 0xff);
    }
    return s;
}

// Flip the last byte of every file in the cache: the end of each cached piece's body.
int poison(const fs::path& cache_dir) {
    int files = 0;
    for (const auto& e : fs::recursive_directory_iterator(cache_dir)) {
        if (!e.is_regular_file()) continue;
        const int fd = ::open(e.path().c_str(), O_RDWR);
        if (fd < 0) continue;
        const auto size = ::lseek(fd, 0, SEEK_END);
        unsigned char last = 0;
        if (size > 0 && ::pread(fd, &last, 1, size - 1) == 1) {
            last ^= 0x5a;
            if (::pwrite(fd, &last, 1, size - 1) == 1) ++files;
        }
        ::close(fd);
    }
    return files;
}

}  // namespace

class AgentSiteCacheTest : public AgentTest {
protected:
    static void SetUpTestSuite() {
        AgentTest::SetUpTestSuite();
        try {
            kit::ArtifactServer::Options options;
            options.locations = kOriginLocations;
            server = std::make_unique<kit::ArtifactServer>(kit::shared_pki(), options);
        } catch (const std::exception& e) {
            setup_error = e.what();
        }
    }
    void SetUp() override {
        AgentTest::SetUp();
        kit::ArtifactServer::Options options;
        options.cache_origin = server->url("");
        options.cache_slice = "64k";
        cache = std::make_unique<kit::ArtifactServer>(pki, options);
    }

    std::unique_ptr<kit::ArtifactServer> cache;

    // A file on the origin under `path`; its URL at the site cache.
    std::string put(const std::string& path, const std::string& content) {
        fs::create_directories((server->root() / path).parent_path());
    kit::write_file(server->root() / path, content);
        return cache->url(path);
    }
    ota::download::Request request(const std::string& url, const std::string& content, const fs::path& dest) {
        ota::download::Request d;
        d.url = url;
        d.dest = dest;
        d.expected_size = content.size();
        d.expected_sha256 = ota::crypto::sha256_hex(content);
        d.cafile = pki.ca().string();
        d.max_attempts = 2;
        d.retry_window = 0s;
        d.backoff_min = 50ms;
        d.backoff_max = 200ms;
        return d;
    }
    // Offer `rel` to the agent, run it once with `config`; the agent's log. The update succeeded
    // and the signed bytes are installed.
    std::string installs(const Release& rel, const fs::path& config) {
        assign();
        offer(rel);
        auto out = run_once(config);
        EXPECT_EQ(out.exit_code, 0) << out.err;
        EXPECT_EQ(status()["stage"], "succeeded") << out.err;
        EXPECT_EQ(kit::read_file(target() / ("model-" + rel.version + ".trt")), rel.content);
        return out.err;
    }
    fs::path config_with_cache(json download = json::object()) {
        json d{{"caches", {{server->url(""), cache->url("")}}}};
        d.merge_patch(download);
        return write_config({{"download", d}});
    }
};

// 1,000 devices of one site fetch the same artifact, 16 at a time: every download has the
// signed bytes, and the origin served each 64 KiB piece once (proxy_cache_lock holds the
// concurrent first requests until the piece is in the cache).
TEST_F(AgentSiteCacheTest, AThousandDevicesOfASiteReachTheOriginOncePerSlice) {
    const auto content = pattern(320 * 1024 + 1234, 1);  // 6 pieces of 64 KiB, the last one short
    const auto url = put("fleet/model-1000.bin", content);
    constexpr int kDevices = 1000;
    constexpr int kParallel = 16;
    std::atomic<int> next{0}, good{0};
    std::vector<std::string> errors(kParallel);
    std::vector<std::thread> workers;
    for (std::size_t w = 0; w < kParallel; ++w) {
        workers.emplace_back([&, w] {
            for (int i = next++; i < kDevices; i = next++) {
                const auto dest = dir / ("device-" + std::to_string(i) + ".bin");
                auto r = ota::download::fetch(request(url, content, dest));
                if (r && r->sha256 == ota::crypto::sha256_hex(content) && fs::file_size(dest) == content.size()) ++good;
                else if (errors[w].empty()) errors[w] = r ? "wrong bytes" : r.error().describe();
                std::error_code ec;
                fs::remove(dest, ec);
            }
        });
    }
    for (auto& t : workers) t.join();
    for (const auto& e : errors) EXPECT_TRUE(e.empty()) << e;
    EXPECT_EQ(good.load(), kDevices);
    const auto at_cache = requests_for(cache->access_log(), "/fleet/model-1000.bin");
    EXPECT_EQ(at_cache.size(), static_cast<std::size_t>(kDevices));
    for (const auto& r : at_cache) EXPECT_EQ(r.status, 200);
    const auto at_origin = requests_for(server->access_log(), "/fleet/model-1000.bin");
    EXPECT_EQ(at_origin.size(), 6U) << server->access_log();
    for (const auto& r : at_origin) EXPECT_EQ(r.status, 206);
    EXPECT_EQ(total_bytes(at_origin), content.size()) << "the origin served the artifact once";
}

// A download cut half way continues through the cache with a Range request (If-Range with the
// origin's ETag, which the cache passes on): 206 from the cache, only the rest transferred.
TEST_F(AgentSiteCacheTest, AResumedDownloadContinuesThroughTheCache) {
    const auto content = pattern(1024 * 1024, 2);  // 2 s at the origin's 512 KiB/s
    const auto url = put("slow/model-resume.bin", content);
    const auto dest = dir / "resume.bin";
    auto first = request(url, content, dest);
    std::atomic<std::uint64_t> seen{0};
    first.progress_step_percent = 1;
    first.progress_interval = 50ms;
    first.on_progress = [&](const ota::download::Progress& p) { seen = p.bytes; };
    first.cancelled = [&] { return seen.load() >= content.size() * 2 / 5; };
    auto cut = ota::download::fetch(first);
    ASSERT_FALSE(cut) << "the download was not cut";
    ASSERT_FALSE(fs::exists(dest));

    auto r = ota::download::fetch(request(url, content, dest));
    ASSERT_TRUE(r) << r.error().describe() << "\n" << cache->log();
    EXPECT_GE(r->resumed_from, content.size() * 2 / 5);
    EXPECT_EQ(r->resumed_from + r->bytes_transferred, content.size()) << "only the rest came over the network";
    EXPECT_EQ(kit::read_file(dest), content);
    const auto at_cache = requests_for(cache->access_log(), "/slow/model-resume.bin");
    ASSERT_GE(at_cache.size(), 2U);
    EXPECT_EQ(at_cache.back().status, 206);
    EXPECT_EQ(at_cache.back().bytes, r->bytes_transferred);
}

// The agent, with download.caches naming the origin, fetches through the site cache: installed,
// the cache answered the agent, the origin only the cache.
TEST_F(AgentSiteCacheTest, TheAgentFetchesThroughItsSiteCache) {
    auto rel = make_release("1.0.0");
    const auto log = installs(rel, config_with_cache());
    const auto at_cache = requests_for(cache->access_log(), "/model-1.0.0.trt");
    ASSERT_EQ(at_cache.size(), 1U) << cache->access_log();
    EXPECT_EQ(at_cache[0].bytes, rel.content.size());
    EXPECT_EQ(total_bytes(requests_for(server->access_log(), "/model-1.0.0.trt")), rel.content.size());
    EXPECT_EQ(log.find("the site cache failed"), std::string::npos) << log;
}

// A poisoned cache (each cached piece altered on disk) serves wrong bytes: the agent's SHA-256
// check refuses them and it fetches from the origin, which installs the signed bytes. Without
// the fallback the update fails with hash_mismatch and the device keeps its version.
TEST_F(AgentSiteCacheTest, APoisonedCacheIsRefusedByTheHashAndTheOriginServesTheDevice) {
    auto v1 = make_release("1.0.0");
    auto v2 = make_release("2.0.0");
    // Another device of the site fetched both first: the cache holds them.
    for (const auto* rel : {&v1, &v2}) {
        const auto path = "models/" + fleet + "/model-" + rel->version + ".trt";
        auto warm = ota::download::fetch(request(cache->url(path), rel->content, dir / ("warm-" + rel->version)));
        ASSERT_TRUE(warm) << warm.error().describe();
    }
    ASSERT_GE(poison(cache->cache_dir()), 8);  // 4 pieces of each

    const auto log = installs(v1, config_with_cache());
    EXPECT_NE(log.find("the site cache failed; fetching from the origin"), std::string::npos) << log;
    EXPECT_NE(log.find("hash_mismatch"), std::string::npos) << log;
    const auto from_origin = requests_for(server->access_log(), "/model-1.0.0.trt");
    EXPECT_EQ(from_origin.back().status, 200) << "the agent's own download from the origin";

    offer(v2);
    auto out = run_once(config_with_cache({{"cache_fallback", false}}));
    ASSERT_EQ(out.exit_code, 0) << out.err;
    const auto st = status();
    EXPECT_EQ(st["stage"], "failed") << st.dump();
    EXPECT_EQ(st["error"]["code"], "hash_mismatch") << st.dump();
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-1.0.0.trt"});
    EXPECT_EQ(kit::read_file(target() / "model-1.0.0.trt"), v1.content);
    EXPECT_EQ(inventory_version(), "1.0.0");
}

// The site cache is down: the agent fetches from the origin.
TEST_F(AgentSiteCacheTest, ASiteCacheThatIsDownFallsBackToTheOrigin) {
    auto rel = make_release("1.0.0");
    const auto config = config_with_cache();
    cache.reset();  // its port now refuses connections
    const auto log = installs(rel, config);
    EXPECT_NE(log.find("the site cache failed; fetching from the origin"), std::string::npos) << log;
}

// The cache verifies the origin: one whose certificate another CA issued gets no bytes into the
// cache (502 to the device), and nothing is cached.
TEST_F(AgentSiteCacheTest, TheCacheTakesNoBytesFromAnOriginItCannotVerify) {
    const auto other = kit::make_pki(dir / "other-pki", {.devices = 1, .sans = {}, .clients = {}});
    kit::ArtifactServer impostor(other);
    const auto content = pattern(100000, 3);
    fs::create_directories(impostor.root() / "fleet");
    kit::write_file(impostor.root() / "fleet" / "model.bin", content);
    kit::ArtifactServer::Options options;
    options.cache_origin = impostor.url("");
    kit::ArtifactServer trusting_our_ca(pki, options);
    auto r = ota::download::fetch(request(trusting_our_ca.url("fleet/model.bin"), content, dir / "model.bin"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ota::ErrorCode::download_failed) << r.error().describe();
    EXPECT_NE(r.error().message.find("502"), std::string::npos) << r.error().describe();
    EXPECT_NE(trusting_our_ca.log().find("upstream SSL certificate verify error"), std::string::npos) << trusting_our_ca.log();
    EXPECT_TRUE(requests_for(impostor.access_log(), "/fleet/model.bin").empty()) << "the TLS handshake failed first";
}

// render-nginx-config refuses a cache origin it could not mirror as a whole, naming the option.
TEST(SiteCacheConfig, BadCacheOptionsAreRefusedByName) {
    const auto script = (kit::source_dir() / "scripts" / "render-nginx-config").string();
    const std::vector<std::string> base{script, "--port", "1", "--cert", "/c", "--key", "/k", "--prefix", "/tmp/x"};
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
        {{"--cache-origin", "http://cloud/", "--cache-dir", "/tmp/c"}, "--cache-origin must be https://HOST[:PORT]/"},
        {{"--cache-origin", "https://cloud/models/", "--cache-dir", "/tmp/c"}, "--cache-origin must be https://HOST[:PORT]/"},
        {{"--cache-origin", "https://cloud/"}, "--cache-origin needs --cache-dir"},
        {{"--cache-origin", "https://cloud/", "--cache-dir", "/tmp/c", "--cache-slice", "1 m"}, "--cache-slice must be a size"},
        {{"--cache-origin", "https://cloud/", "--cache-dir", "/tmp/c", "--cache-origin-name", "a;b"}, "--cache-origin-name must be a DNS name"},
        {{"--cache-origin", "https://cloud/", "--cache-dir", "/tmp/c", "--console-proxy", "9"}, "exclude each other"},
    };
    for (const auto& [extra, message] : cases) {
        auto argv = base;
        argv.insert(argv.end(), extra.begin(), extra.end());
        auto r = kit::run(argv);
        EXPECT_EQ(r.exit_code, 2) << message;
        EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
        EXPECT_TRUE(r.out.empty()) << r.out;
    }
    auto argv = base;
    argv.insert(argv.end(), {"--cache-origin", "https://cloud.example.com:8443/", "--cache-dir", "/tmp/c"});
    auto ok = kit::run(argv);
    ASSERT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_NE(ok.out.find("proxy_pass https://cloud.example.com:8443;"), std::string::npos) << ok.out;
    EXPECT_NE(ok.out.find("proxy_ssl_name cloud.example.com;"), std::string::npos) << ok.out;
}
