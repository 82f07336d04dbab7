// The agent on flaky links and against hostile input, with the real broker and nginx:
//  - a restart mid-download connects first (online, inventory) and then resumes, reporting
//    progress from the bytes already on disk as it goes, fetching again at most 1 MiB;
//  - a broker link that dies silently mid-download (tests/shared/download/tcp_relay.hpp in front
//    of Mosquitto) is online again at once on its new connection, not after the update;
//  - malformed assignments, wave messages and commands (numbers that overflow a double, wrong
//    types deep inside, invalid UTF-8, deep nesting) neither stop the agent nor flood its log,
//    and a good release still installs afterwards.
#include <regex>

#include "agent_fixture.hpp"
#include "tcp_relay.hpp"

namespace {

const std::vector<std::pair<std::string, std::string>> kLocations = {
    {"/models/RestartMidDownloadConnectsFirstThenResumesReportingProgress/", "limit_rate 1m;"},
    {"/models/ABrokerLinkThatDiesMidDownloadIsOnlineAgainBeforeTheUpdateEnds/", "limit_rate 512k;"},
};

std::string topic_of(const std::string& device, const std::string& what) { return "ota/v1/devices/" + device + "/" + what; }

}  // namespace

class AgentNetTest : public AgentTest {
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
    bool installed(const Release& rel) const { return fs::exists(target() / ("model-" + rel.version + ".trt")); }

    // The retained `online` message of the device (null when none).
    json online() {
        auto got = kit::mosquitto_sub(*broker, pki, "operator", topic_of(device, "online"), 1, 1500ms);
        if (got.messages.empty() || got.messages[0].second.empty()) return nullptr;
        return json::parse(got.messages[0].second, nullptr, false);
    }
    bool online_is(bool value) {
        const auto o = online();
        return o.is_object() && o.contains("online") && o["online"] == value;
    }
    // Bytes nginx sent for this release's artifact, per request.
    std::vector<std::uint64_t> bytes_sent(const Release& rel) const {
        std::vector<std::uint64_t> out;
        const std::regex line("\"GET [^\"]*model-" + std::regex_replace(rel.version, std::regex("\\."), "\\.") +
                              "\\.trt HTTP/[0-9.]+\" ([0-9]{3}) ([0-9]+)");
        const auto log = server->access_log();
        for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator(); ++it)
            out.push_back(std::stoull((*it)[2].str()));
        return out;
    }
    static std::vector<json> payloads(const kit::Received& r) {
        std::vector<json> out;
        for (const auto& [t, p] : r.messages) out.push_back(json::parse(p, nullptr, false));
        return out;
    }
};

TEST_F(AgentNetTest, RestartMidDownloadConnectsFirstThenResumesReportingProgress) {
    auto rel = make_release("2026-04-01", "release", {}, 8 << 20);  // ~8 s at 1 MiB/s
    const auto config = write_config();
    assign();
    offer(rel);
    {
        kit::Process first({OTA_AGENT_BIN, "--config", config.string()}, dir / "agent-killed.log");
        ASSERT_TRUE(kit::wait_until([&] { return partial_size(rel) >= (2u << 20); }, 30s)) << first.log();
        first.kill(SIGKILL);
    }
    ASSERT_FALSE(installed(rel));
    // The broker saw the connection drop: the last will says offline.
    ASSERT_TRUE(kit::wait_until([&] { return online_is(false); }, 10s));
    const auto on_disk = partial_size(rel);
    const int resumed_percent = static_cast<int>(on_disk * 100 / rel.content.size());
    // Forget the first run's retained status, so that everything seen below is the restarted agent's.
    (void)kit::mosquitto_pub(*broker, pki, device, topic_of(device, "status/detection-model"), "", true);
    kit::Subscriber statuses(*broker, pki, "operator", topic_of(device, "status/detection-model"));
    kit::Subscriber inventories(*broker, pki, "operator", topic_of(device, "inventory"));
    ASSERT_TRUE(statuses.subscribed() && inventories.subscribed());
    const auto retained_inventories = inventories.wait(1, 2s).messages.size();  // the first run's

    kit::Process agent({OTA_AGENT_BIN, "--config", config.string()}, dir / "agent.log");
    // Online, a fresh inventory and a progress report while the resumed download still runs.
    EXPECT_TRUE(kit::wait_until([&] { return online_is(true) || installed(rel); }, 20s)) << agent.log();
    EXPECT_FALSE(installed(rel)) << "online only once the update was over:\n" << agent.log();
    EXPECT_GT(inventories.wait(retained_inventories + 1, 5s).messages.size(), retained_inventories);
    bool progress_while_downloading = false;
    EXPECT_TRUE(kit::wait_until(
        [&] {
            for (const auto& s : payloads(statuses.wait(1, 0ms)))
                if (s.is_object() && s["stage"] == "downloading") {
                    progress_while_downloading = !installed(rel);
                    return true;
                }
            return installed(rel);
        },
        20s));
    EXPECT_TRUE(progress_while_downloading) << "no progress report before the download ended:\n" << agent.log();

    ASSERT_TRUE(kit::wait_until([&] { return installed(rel); }, 60s)) << agent.log();
    EXPECT_TRUE(kit::wait_until([&] { auto s = status(); return !s.is_null() && s["stage"] == "succeeded"; }, 20s));
    EXPECT_EQ(kit::read_file(target() / "model-2026-04-01.trt"), rel.content);
    EXPECT_EQ(agent.stop(), 0) << agent.log();

    // The first report of the resumed download carries what was on disk, not 0 (its log says
    // which reports it made; the broker may also get a report of the first run again, QoS 1).
    const auto log = agent.log();
    const auto first = log.find("stage=downloading progress=");
    ASSERT_NE(first, std::string::npos) << log;
    EXPECT_EQ(std::atoi(log.c_str() + first + std::strlen("stage=downloading progress=")), resumed_percent) << log;
    std::vector<int> progress;
    for (const auto& s : payloads(statuses.stop()))
        if (s.is_object() && s["stage"] == "downloading") progress.push_back(s.value("progress", -1));
    EXPECT_NE(std::find(progress.begin(), progress.end(), resumed_percent), progress.end()) << ::testing::PrintToString(progress);
    EXPECT_EQ(std::find(progress.begin(), progress.end(), 0), progress.end()) << ::testing::PrintToString(progress);
    EXPECT_GE(progress.size(), 2u) << ::testing::PrintToString(progress);

    // Fetched again after the kill -9: what was received but not yet written (<= 1 MiB).
    ASSERT_TRUE(kit::wait_until([&] { return bytes_sent(rel).size() >= 2; }, 5s)) << server->access_log();
    std::uint64_t total = 0;
    for (auto b : bytes_sent(rel)) total += b;
    EXPECT_LE(total, rel.content.size() + (1u << 20)) << ::testing::PrintToString(bytes_sent(rel));
}

TEST_F(AgentNetTest, ABrokerLinkThatDiesMidDownloadIsOnlineAgainBeforeTheUpdateEnds) {
    // The agent reaches Mosquitto through a relay; mid-download the relay drops every packet of
    // the connection without closing it (a NAT gateway lost its mapping). The broker's keepalive
    // (1.5 x 2 s) may fire the last will; the agent's own keepalive reconnects through a new mapping.
    kit::TcpRelay relay({.upstream_port = broker->port()});
    auto rel = make_release("2026-04-02", "release", {}, 10 << 20);  // ~20 s at 512 KiB/s
    const auto config = write_config({{"mqtt", {{"broker", "mqtts://127.0.0.1:" + std::to_string(relay.port())}, {"keepalive_s", 2}}}});
    assign();
    offer(rel);
    kit::Subscriber presence(*broker, pki, "operator", topic_of(device, "online"));
    ASSERT_TRUE(presence.subscribed());
    kit::Process agent({OTA_AGENT_BIN, "--config", config.string()}, dir / "agent.log");
    ASSERT_TRUE(kit::wait_until([&] { return partial_size(rel) >= (1u << 20); }, 30s)) << agent.log();
    ASSERT_TRUE(online_is(true)) << agent.log();
    const auto seen_before = presence.wait(0, 0ms).messages.size();
    relay.blackhole_current();
    // The agent's new connection publishes {"online":true} again, while the download still runs
    // (not once the whole update has finished). Before it, the broker publishes the last will
    // ({"online":false}) if its keepalive check ends the dead connection first; if the new
    // connection takes the session over first, Mosquitto 2.0.11 sends no will: either is fine.
    bool went_offline = false, back_online = false, back_while_downloading = false;
    EXPECT_TRUE(kit::wait_until(
        [&] {
            const auto msgs = payloads(presence.wait(0, 0ms));
            const bool done = installed(rel);
            for (std::size_t i = seen_before; i < msgs.size() && !back_online; ++i) {
                if (!msgs[i].is_object()) continue;
                if (msgs[i].value("online", true) == false) {
                    went_offline = true;
                } else {
                    back_online = true;
                    back_while_downloading = !done;
                }
            }
            return back_online || done;
        },
        40s, 10ms))
        << agent.log();
    EXPECT_TRUE(back_online) << agent.log();
    EXPECT_TRUE(back_while_downloading) << "online again only after the update (will seen: " << went_offline << "):\n"
                                        << agent.log();
    EXPECT_GE(relay.connections(), 2);
    ASSERT_TRUE(kit::wait_until([&] { return installed(rel); }, 60s)) << agent.log();
    EXPECT_TRUE(kit::wait_until([&] { auto s = status(); return !s.is_null() && s["stage"] == "succeeded"; }, 20s))
        << agent.log();
    EXPECT_EQ(agent.stop(), 0) << agent.log();
}

TEST_F(AgentNetTest, HostileInputNeverStopsTheAgentAndAGoodReleaseStillInstalls) {
    // JSON log lines: a line quoting input bytes that are not UTF-8 must not throw either.
    const auto config = write_config({{"log", {{"format", "json"}, {"level", "debug"}}}});
    assign();
    kit::Process agent({OTA_AGENT_BIN, "--config", config.string()}, dir / "agent.log");
    ASSERT_TRUE(kit::wait_until([&] { return agent.log().find("following wave") != std::string::npos; }, 20s)) << agent.log();

    const std::string nested(5000, '[');
    const std::string bad_utf8 = "\xff\xfe\xc3\x28";
    const auto good = make_release("2026-04-03");
    auto envelope = json::parse(good.envelope);
    // Payloads of each class, for each message kind.
    const std::vector<std::string> assignments = {
        R"({"fleet": 1e400, "wave": "canary"})", R"({"fleet": ["x"], "wave": {"a": 1}})", "{\"fleet\": \"" + bad_utf8 + "\"}",
        bad_utf8, nested, "[]", "\"canary\"", R"({"fleet": "a/b", "wave": "+"})"};
    auto deep_wrong = envelope;
    deep_wrong["manifest"]["artifact"]["size"] = "12";
    const std::vector<std::string> waves = {
        R"({"rollout": 1e400, "state": "open", "release": {}})",
        R"({"rollout": "r", "state": "open", "release": {"manifest": {"artifact": {"size": 1e400}}}})",
        json{{"rollout", "r-deep"}, {"state", "open"}, {"release", deep_wrong}}.dump(),
        R"({"rollout": "r", "state": "open", "release": "{\"manifest\": 1e400}"})",
        R"({"rollout": "r", "state": "open", "release": [1, 2]})",
        R"({"rollout": ["r"], "state": {"open": true}, "release": 7})",
        "{\"rollout\": \"r\", \"state\": \"open\", \"release\": \"" + bad_utf8 + "\"}",
        bad_utf8, nested};
    const std::vector<std::string> cmds = {
        R"({"cmd": "install", "component": "detection-model", "release": {"manifest": 1e400}})",
        R"({"cmd": "install", "component": 5, "release": {}})",
        R"({"cmd": "retry", "component": ["detection-model"]})",
        R"({"cmd": "install", "component": "detection-model", "rollout": {"x": [1]}, "release": "nope"})",
        R"({"cmd": "install", "component": "detection-model", "release": [[[[{"a": null}]]]]})",
        R"({"cmd": "rollback", "component": {"deep": [[[]]]}})",
        "{\"cmd\": \"" + bad_utf8 + "\"}",
        "{\"cmd\": \"report\", \"component\": \"" + bad_utf8 + "\"}",
        R"({"cmd": 1e400})", bad_utf8, nested, "null"};
    const auto wave_topic = "ota/v1/fleets/" + fleet + "/waves/canary/detection-model";
    for (const auto& p : assignments) ASSERT_EQ(kit::mosquitto_pub(*broker, pki, "controller", topic_of(device, "assignment"), p, false).exit_code, 0);
    for (const auto& p : waves) ASSERT_EQ(kit::mosquitto_pub(*broker, pki, "controller", wave_topic, p, false).exit_code, 0);
    // A flood of one kind is logged a few times, not once per message.
    for (int i = 0; i < 4; ++i)
        for (const auto& p : cmds) ASSERT_EQ(kit::mosquitto_pub(*broker, pki, "controller", topic_of(device, "cmd"), p, false).exit_code, 0);

    // Still up, still following its wave: the good release installs.
    command({{"cmd", "report"}});
    ASSERT_TRUE(kit::wait_until([&] { return agent.log().find(R"("cmd":"report")") != std::string::npos; }, 20s)) << agent.log();
    ASSERT_TRUE(agent.running()) << agent.log();
    offer(good);
    ASSERT_TRUE(kit::wait_until([&] { return fs::exists(target() / "model-2026-04-03.trt"); }, 30s)) << agent.log();
    EXPECT_EQ(kit::read_file(target() / "model-2026-04-03.trt"), good.content);
    EXPECT_TRUE(kit::wait_until([&] { auto s = status(); return !s.is_null() && s["stage"] == "succeeded"; }, 20s));
    EXPECT_TRUE(agent.running());
    const auto log = agent.log();
    std::size_t ignored_lines = 0;
    for (std::size_t pos = 0; (pos = log.find("cmd ignored", pos)) != std::string::npos; ++pos) ++ignored_lines;
    EXPECT_GE(ignored_lines, 1u) << log;
    EXPECT_LE(ignored_lines, 6u) << "48 malformed commands must not become 48 log lines:\n" << log;
    std::size_t rejected_lines = 0;
    for (std::size_t pos = 0; (pos = log.find("release rejected", pos)) != std::string::npos; ++pos) ++rejected_lines;
    EXPECT_GE(rejected_lines, 1u) << log;
    EXPECT_LE(rejected_lines, 6u) << waves.size() << " distinct bad offers, each logged:\n" << log;
    EXPECT_EQ(agent.stop(), 0) << log;
}
