// The agent's downloads under real network trouble: kill -9 mid-download, a broker restart
// mid-update, a slow drip, a server without Range, an object that changes between attempts, a
// body larger than signed. nginx is rate-limited per test (a location per fleet, i.e. per test).
#include <regex>

#include "agent_fixture.hpp"

namespace {

// Per-test nginx locations: the fixture serves each test's files under /models/<test name>/.
const std::vector<std::pair<std::string, std::string>> kLocations = {
    {"/models/KillNineMidDownloadResumes/", "limit_rate 1m;"},
    {"/models/BrokerRestartMidUpdateFinishes/", "limit_rate 1m;"},
    {"/models/SlowDripEndsDownloadStalled/", "limit_rate 8k;"},
    {"/models/ServerWithoutRangeRestartsCleanly/", "max_ranges 0; limit_rate 1m;"},
    {"/models/ObjectChangedMidResumeIsNeverJoined/", "limit_rate 1m;"},
};

}  // namespace

class AgentResumeTest : public AgentTest {
protected:
    static void SetUpTestSuite() {
        AgentTest::SetUpTestSuite();
        try {
            kit::ArtifactServer::Options options;
            options.locations = kLocations;
            server = std::make_unique<kit::ArtifactServer>(kit::shared_pki(), options);
        } catch (const std::exception& e) {
            setup_error = e.what();
        }
    }

    fs::path partial(const Release& rel) const {
        return dir / "state" / "staging" / "detection-model" / ("model-" + rel.version + ".trt.part");
    }
    std::uintmax_t partial_size(const Release& rel) const {
        std::error_code ec;
        const auto n = fs::file_size(partial(rel), ec);
        return ec ? 0 : n;
    }
    // Bytes nginx sent for requests of this release's artifact, one entry per request.
    std::vector<std::uint64_t> bytes_sent(const Release& rel) const {
        std::vector<std::uint64_t> out;
        const std::regex line("\"GET [^\"]*model-" + std::regex_replace(rel.version, std::regex("\\."), "\\.") +
                              "\\.trt HTTP/[0-9.]+\" ([0-9]{3}) ([0-9]+)");
        const auto log = server->access_log();
        for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator(); ++it)
            out.push_back(std::stoull((*it)[2].str()));
        return out;
    }
    // Start the agent, wait until `at_least` bytes of the artifact are on disk, kill -9 it.
    void kill_mid_download(const fs::path& config, const Release& rel, std::uintmax_t at_least) {
        kit::Process agent({OTA_AGENT_BIN, "--config", config.string()}, dir / "agent-killed.log");
        ASSERT_TRUE(kit::wait_until([&] { return partial_size(rel) >= at_least; }, 20s)) << agent.log();
        agent.kill(SIGKILL);
        ASSERT_LT(partial_size(rel), rel.content.size()) << "the download finished before the kill";
    }
};

TEST_F(AgentResumeTest, KillNineMidDownloadResumes) {
    auto rel = make_release("2026-03-11", "release", {}, 4 << 20);
    const auto config = write_config();
    assign();
    offer(rel);
    kill_mid_download(config, rel, 1 << 20);
    const auto on_disk = partial_size(rel);
    auto r = run_once(config, 20);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(status()["stage"], "succeeded") << r.err;
    EXPECT_EQ(kit::read_file(target() / "model-2026-03-11.trt"), rel.content);
    ASSERT_TRUE(kit::wait_until([&] { return bytes_sent(rel).size() >= 2; }, 5s)) << server->access_log();
    const auto sent = bytes_sent(rel);
    std::uint64_t total = 0;
    for (auto b : sent) total += b;
    // The second request asked only for what was missing; nothing was fetched twice but what was
    // in flight when the agent died.
    EXPECT_LT(sent.back(), rel.content.size() - on_disk + 64 * 1024) << ::testing::PrintToString(sent);
    EXPECT_LT(static_cast<double>(total), 1.2 * static_cast<double>(rel.content.size())) << ::testing::PrintToString(sent);
}

TEST_F(AgentResumeTest, BrokerRestartMidUpdateFinishes) {
    auto rel = make_release("2026-03-12", "release", {}, 3 << 20);
    const auto config = write_config();
    assign();
    offer(rel);
    kit::Process agent({OTA_AGENT_BIN, "--config", config.string()}, dir / "agent.log");
    ASSERT_TRUE(kit::wait_until([&] { return partial_size(rel) >= (512u << 10); }, 20s)) << agent.log();
    broker->restart();
    ASSERT_TRUE(kit::wait_until([&] { return fs::exists(target() / "model-2026-03-12.trt"); }, 30s)) << agent.log();
    // The reports made while the broker was away reach it once the agent reconnected.
    EXPECT_TRUE(kit::wait_until([&] { auto s = status(); return !s.is_null() && s["stage"] == "succeeded"; }, 20s))
        << agent.log();
    EXPECT_EQ(kit::read_file(target() / "model-2026-03-12.trt"), rel.content);
    EXPECT_EQ(agent.stop(), 0) << agent.log();
    EXPECT_NE(agent.log().find("connected"), agent.log().rfind("connected")) << "expected a reconnect:\n" << agent.log();
}

TEST_F(AgentResumeTest, SlowDripEndsDownloadStalled) {
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    auto rel = make_release("2026-03-13", "release", {}, 1 << 20);
    const auto config = write_config({{"download", {{"low_speed_limit", 64 * 1024}, {"low_speed_time_s", 2}, {"attempts", 1}, {"retry_window_s", 0}}}});
    assign();
    offer(rel);
    auto r = run_once(config, 20);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto s = status();
    EXPECT_EQ(s["stage"], "failed") << r.err;
    EXPECT_EQ(s["error"]["code"], "download_stalled") << s.dump();
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"});
}

TEST_F(AgentResumeTest, ServerWithoutRangeRestartsCleanly) {
    auto rel = make_release("2026-03-14", "release", {}, 3 << 20);
    const auto config = write_config();
    assign();
    offer(rel);
    kill_mid_download(config, rel, 1 << 20);
    auto r = run_once(config, 20);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(status()["stage"], "succeeded") << r.err;
    EXPECT_EQ(kit::read_file(target() / "model-2026-03-14.trt"), rel.content);
}

TEST_F(AgentResumeTest, ObjectChangedMidResumeIsNeverJoined) {
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    auto rel = make_release("2026-03-15", "release", {}, 3 << 20);
    const auto config = write_config();
    assign();
    offer(rel);
    kill_mid_download(config, rel, 1 << 20);
    // The object on the server changes (same size, other bytes, new ETag) before the resume.
    std::this_thread::sleep_for(1100ms);  // nginx's ETag is mtime + size: make the mtime differ
    const auto served = server->root() / "models" / fleet / "model-2026-03-15.trt";
    auto other = rel.content;
    std::reverse(other.begin() + 100, other.end());
    kit::write_file(served, other);
    auto r = run_once(config, 20);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto s = status();
    EXPECT_EQ(s["stage"], "failed") << r.err;
    EXPECT_EQ(s["error"]["code"], "hash_mismatch") << s.dump();
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"});
}

TEST_F(AgentResumeTest, OversizeBodyIsRefused) {
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    auto rel = make_release("2026-03-16");
    kit::write_file(server->root() / "models" / fleet / "model-2026-03-16.trt", rel.content + std::string(4096, 'z'));
    const auto config = write_config();
    assign();
    offer(rel);
    auto r = run_once(config);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto s = status();
    EXPECT_EQ(s["stage"], "failed") << r.err;
    EXPECT_EQ(s["error"]["code"], "size_mismatch") << s.dump();
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"});
}

TEST_F(AgentResumeTest, BrokerDownAtStartIsAOneLineErrorWithOnce) {
    auto config = write_config({{"mqtt", {{"broker", "mqtts://127.0.0.1:" + std::to_string(kit::free_port())}}}});
    const auto start = std::chrono::steady_clock::now();
    auto r = kit::run({OTA_AGENT_BIN, "--config", config.string(), "--once", "--once-wait", "3"}, 30s);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_LT(std::chrono::steady_clock::now() - start, 15s);
    EXPECT_NE(r.err.find("could not connect"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("connection refused"), std::string::npos) << r.err;
}
