// The download tests' fixture: the kit's nginx with the variants the tests need, a request with
// small limits, and helpers to read what reached the disk and the server.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <cstring>
#include <optional>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "kit.hpp"
#include "ota/crypto.hpp"
#include "ota/download.hpp"
#include "tcp_relay.hpp"

namespace download_test {

namespace kit = ota::testkit;
namespace fs = std::filesystem;
namespace dl = ota::download;
using namespace std::chrono_literals;
using ota::ErrorCode;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;

inline std::string random_bytes(std::uint64_t n, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
    return s;
}

inline double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// How many requests for `path` nginx logged (with the given status, or any).
inline int requests(const std::string& access_log, const std::string& path, const std::string& status = "") {
    int n = 0;
    std::size_t pos = 0;
    const std::string needle = "GET /" + path + " HTTP/1.1\" " + status;
    while ((pos = access_log.find(needle, pos)) != std::string::npos) {
        ++n;
        pos += needle.size();
    }
    return n;
}

class DownloadTest : public ::testing::Test {
protected:
    static inline std::unique_ptr<kit::ArtifactServer> server;
    static inline std::string setup_error;

    // Variants, each a location under the server's root:
    //   /norange/    ignores Range (max_ranges 0)
    //   /drip/       4 KiB/s, far below any low-speed limit used here
    //   /slow/       200 KiB/s
    //   /freshslow/  256 KiB/s for a request without Range, unlimited for a resume
    //   /chunked/    no Content-Length (sub_filter streams the file chunked)
    //   /fail/       always 503
    // A failure in SetUpTestSuite would only mark the tests skipped (which CTest counts as
    // passed): keep the error and fail every test with it instead.
    static void SetUpTestSuite() {
        try {
            kit::ArtifactServer::Options o;
            o.http = {R"(map $http_range $ota_fresh_rate { "" 256k; default 0; })"};
            o.locations = {{"/norange/", "max_ranges 0;"},
                           {"/drip/", "limit_rate 4k;"},
                           {"/slow/", "limit_rate 200k;"},
                           {"/freshslow/", "limit_rate $ota_fresh_rate;"},
                           {"/chunked/", "sub_filter 'no-such-text-in-the-test-data' 'x'; sub_filter_types *;"},
                           {"/fail/", "return 503;"}};
            server = std::make_unique<kit::ArtifactServer>(kit::shared_pki(), o);
        } catch (const std::exception& e) {
            setup_error = e.what();
            server.reset();
        }
    }
    static void TearDownTestSuite() { server.reset(); }
    void SetUp() override { ASSERT_TRUE(server) << setup_error; }

    kit::TempDir tmp{"ota-dl"};
    fs::path dest() const { return tmp / "artifact.bin"; }
    fs::path part() const { return tmp / "artifact.bin.part"; }
    fs::path sidecar() const { return tmp / "artifact.bin.part.json"; }

    static void publish(const std::string& path, const std::string& content) {
        const auto file = server->root() / path;
        fs::create_directories(file.parent_path());
        kit::write_file(file, content);
    }

    // `path` published as `old_content`, then replaced by `content` with a later mtime, so nginx
    // gives it another ETag: the old one is returned (for a partial left of the old object).
    static std::string publish_replaced(const std::string& path, const std::string& old_content, const std::string& content) {
        publish(path, old_content);
        const auto old_etag = etag(path);
        publish(path, content);
        fs::last_write_time(server->root() / path, fs::file_time_type::clock::now() + std::chrono::seconds(10));
        if (etag(path) == old_etag) throw std::runtime_error("the replaced " + path + " kept its ETag " + old_etag);
        return old_etag;
    }

    // A request with small limits so that failures are quick.
    static dl::Request request(const std::string& path, const std::string& content, const fs::path& dest) {
        dl::Request r;
        r.url = server->url(path);
        r.dest = dest;
        r.expected_size = content.size();
        r.expected_sha256 = ota::crypto::sha256_hex(content);
        r.cafile = kit::shared_pki().ca().string();
        r.low_speed_limit = 1024;
        r.low_speed_time = 5s;
        r.connect_timeout = 5s;
        r.deadline = 30s;
        r.max_attempts = 3;
        r.retry_window = 0s;  // give up on the attempt count alone (the tests of the window set it)
        r.backoff_min = 10ms;
        r.backoff_max = 50ms;
        return r;
    }

    // The ETag nginx sends for `path`, asked with curl.
    static std::string etag(const std::string& path) {
        const auto r = kit::run({"curl", "-sS", "-I", "--cacert", kit::shared_pki().ca().string(), server->url(path)}, 10s);
        const auto pos = r.out.find("ETag: ");
        if (pos == std::string::npos) throw std::runtime_error("no ETag for " + path + ": " + r.out + r.err);
        return r.out.substr(pos + 6, r.out.find('\r', pos) - pos - 6);
    }

    // What a killed agent leaves behind: the first bytes and a sidecar naming the request.
    void leave_partial(const dl::Request& r, const std::string& bytes, const std::string& etag_value) const {
        kit::write_file(part(), bytes);
        const nlohmann::json j{{"url", r.url},        {"sha256", r.expected_sha256}, {"size", r.expected_size},
                               {"etag", etag_value}, {"last_modified", ""}};
        kit::write_file(sidecar(), j.dump());
    }

    // How many GETs of `path` nginx logged, waiting (up to 3 s) for `expect` of them: nginx logs a
    // request when it is finished, which can be after the client has its answer or has hung up.
    static int logged(const std::string& path, const std::string& status, int expect) {
        kit::wait_until([&] { return requests(server->access_log(), path, status) >= expect; }, 3s, 10ms);
        return requests(server->access_log(), path, status);
    }

    void expect_nothing_left() const {
        EXPECT_FALSE(fs::exists(dest()));
        EXPECT_FALSE(fs::exists(part()));
        EXPECT_FALSE(fs::exists(sidecar()));
    }
};

}  // namespace download_test
