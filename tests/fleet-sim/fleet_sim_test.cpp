// ota-fleet-sim against the real broker (the project's config with the simulation listener and
// a password file from `ota-fleet-sim make-passwords`), a real ota-controller, releases
// published with ota-publish, and artifacts served by nginx for the download sample.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kit.hpp"
#include "passwords.hpp"

namespace kit = ota::testkit;
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

const std::string secret = "fleet-sim-test-secret";

class FleetSimTest : public ::testing::Test {
protected:
    void SetUp() override {
        const auto r = kit::run({OTA_FLEET_SIM_BIN, "make-passwords", "--devices", "500", "--secret", secret, "--out",
                                 (dir / "sim.passwd").string()});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        broker = std::make_unique<kit::Broker>(pki, kit::BrokerOptions{dir / "sim.passwd"});
        const auto k = kit::run({OTA_PUBLISH_BIN, "keygen", "--out", (dir / "release").string()});
        ASSERT_EQ(k.exit_code, 0) << k.err;
        kit::write_file(dir / "app-1.1.0.bin", std::string(100'000, 'x'));
    }
    void TearDown() override {
        if (HasFailure()) {
            if (controller) std::cerr << "controller log (tail):\n" << tail(controller->log()) << "\n";
            if (sim) std::cerr << "simulator log (tail):\n" << tail(sim->log()) << "\n";
        }
        sim.reset();
        controller.reset();
    }

    static std::string tail(const std::string& s, std::size_t n = 6000) { return s.size() > n ? s.substr(s.size() - n) : s; }

    void start_controller(const json& waves) {
        const json cfg{{"mqtt", {{"broker", broker->url()}, {"cafile", pki.ca()}, {"cert", pki.cert("controller")},
                                 {"key", pki.key("controller")}}},
                       {"trusted_keys", (dir / "release.pub").string()},
                       {"database", (dir / "controller.db").string()},
                       {"tick_ms", 50},
                       {"state_interval_ms", 100},
                       {"fleets", json::array({{{"name", "plant"}, {"channel", "stable"}, {"waves", waves}}})}};
        kit::write_file(dir / "controller.json", cfg.dump(2));
        controller = std::make_unique<kit::Process>(
            std::vector<std::string>{OTA_CONTROLLER_BIN, "--config", (dir / "controller.json").string()}, dir / "controller.log");
        ASSERT_TRUE(kit::wait_until([&] { return controller->log().find("controller running") != std::string::npos; }, 15s))
            << controller->log();
    }

    // The usual three waves: canary = device-00001..00002, early = label ring=early, broad = the rest.
    static json three_waves(const json& canary_policy = json::object()) {
        json canary{{"name", "canary"}, {"devices", {"device-00001", "device-00002"}}};
        canary.update(canary_policy);
        return json::array({canary, {{"name", "early"}, {"labels", {{"ring", "early"}}}}, {{"name", "broad"}, {"percent", 100}}});
    }

    void start_sim(const std::vector<std::string>& extra, const std::string& with_secret = secret) {
        std::vector<std::string> argv{OTA_FLEET_SIM_BIN, "--port", std::to_string(broker->sim_port()), "--secret", with_secret,
                                      "--trusted-keys", (dir / "release.pub").string(), "--events",
                                      (dir / "events.jsonl").string(), "--quiet"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        sim = std::make_unique<kit::Process>(argv, dir / "sim.log");
    }

    // Wait for the simulator to exit by itself; its summary is the last line of its output.
    json sim_summary(std::chrono::seconds timeout) {
        if (!kit::wait_until([&] { return !sim->running(); }, timeout, 50ms)) return json{{"error", "still running"}};
        const int code = sim->stop();
        std::istringstream in(sim->log());
        json last{{"error", "no summary"}};
        for (std::string line; std::getline(in, line);)
            if (line.starts_with("{")) last = json::parse(line, nullptr, false);
        last["exit_code"] = code;
        return last;
    }

    std::vector<json> events() const {
        std::vector<json> out;
        std::ifstream in(dir / "events.jsonl");
        for (std::string line; std::getline(in, line);) {
            auto e = json::parse(line, nullptr, false);
            if (e.is_object()) out.push_back(std::move(e));  // the last line may still be half written
        }
        return out;
    }

    std::size_t count_events(const std::string& name) const {
        const auto all = events();
        return static_cast<std::size_t>(std::count_if(all.begin(), all.end(), [&](const json& e) { return e.value("event", "") == name; }));
    }

    void publish_release(const std::string& version, const kit::ArtifactServer* nginx = nullptr) {
        std::vector<std::string> argv{OTA_PUBLISH_BIN, "publish", "--broker", broker->url(), "--cafile", pki.ca().string(),
                                      "--cert", pki.cert("ci").string(), "--key", pki.key("ci").string(), "--signing-key",
                                      (dir / "release.key").string(), "--component", "app", "--version", version,
                                      "--artifact", (dir / "app-1.1.0.bin").string(), "--url",
                                      nginx ? nginx->url("app/app-" + version + ".bin") : "https://127.0.0.1:1/app-" + version,
                                      "--install", "file", "--target", "/var/lib/app"};
        if (nginx) argv.insert(argv.end(), {"--copy-to", nginx->root().string()});
        const auto r = kit::run(argv, 30s);
        ASSERT_EQ(r.exit_code, 0) << r.err;
    }

    json ctl_json(const std::vector<std::string>& args) const {
        std::vector<std::string> argv{OTA_CTL_BIN, "--broker", broker->url(), "--cafile", pki.ca().string(), "--cert",
                                      pki.cert("operator").string(), "--key", pki.key("operator").string(), "--json"};
        argv.insert(argv.end(), args.begin(), args.end());
        const auto r = kit::run(argv, 30s, {{"HOME", dir.path().string()}});
        return r.exit_code == 0 ? json::parse(r.out, nullptr, false) : json{{"error", r.err}};
    }

    const kit::Pki& pki = kit::shared_pki(3);
    kit::TempDir dir{"ota-fleet-sim-test"};
    std::unique_ptr<kit::Broker> broker;
    std::unique_ptr<kit::Process> controller, sim;
};

// The earliest and latest time (mono_us) of an event of the devices in `wave`.
std::pair<std::int64_t, std::int64_t> span(const std::vector<json>& evs, const std::map<std::string, std::string>& wave_of,
                                           const std::string& wave, const std::string& event, const std::string& stage = "") {
    std::int64_t lo = INT64_MAX, hi = 0;
    for (const auto& e : evs) {
        if (e.value("event", "") != event || (!stage.empty() && e.value("stage", "") != stage)) continue;
        const auto it = wave_of.find(e.value("device", ""));
        if (it == wave_of.end() || it->second != wave) continue;
        lo = std::min<std::int64_t>(lo, e["mono_us"].get<std::int64_t>());
        hi = std::max<std::int64_t>(hi, e["mono_us"].get<std::int64_t>());
    }
    return {lo, hi};
}

}  // namespace

TEST_F(FleetSimTest, ThreeWaveRolloutOver500SimulatedDevicesCompletesWithEveryDeviceCountedOnce) {
    kit::ArtifactServer nginx(pki);
    start_controller(three_waves());
    start_sim({"--devices", "500", "--early-fraction", "0.1", "--work-ms", "300", "--jitter-ms", "300", "--exit-when",
               "version=1.1.0", "--duration", "60", "--download-sample", "3", "--download-cafile", pki.ca().string()});
    // Every device connected, published its inventory and got its assignment from the controller.
    ASSERT_TRUE(kit::wait_until([&] { return count_events("assignment_received") >= 500; }, 30s))
        << count_events("connected") << " connected, " << count_events("assignment_received") << " assigned";
    publish_release("1.1.0", &nginx);

    const auto summary = sim_summary(60s);
    ASSERT_EQ(summary.value("exit", ""), "version=1.1.0") << summary.dump();
    EXPECT_EQ(summary["exit_code"], 0);
    EXPECT_EQ(summary["ever_connected"], 500);
    EXPECT_EQ(summary["stages"]["succeeded"], 500) << summary.dump();
    EXPECT_EQ(summary["jobs"]["started"], 500);
    EXPECT_EQ(summary["denied"], 0);
    EXPECT_EQ(summary["downloads"]["ok"], 3) << summary.dump();

    const std::string rollout = "plant.app.1.1.0";
    ASSERT_TRUE(kit::wait_until([&] { return ctl_json({"status", rollout}).value("state", "") == "completed"; }, 20s, 200ms))
        << ctl_json({"status", rollout}).dump();
    const auto s = ctl_json({"status", rollout});
    EXPECT_EQ(s["totals"]["devices"], 500) << s.dump();
    EXPECT_EQ(s["totals"]["succeeded"], 500);
    EXPECT_EQ(s["totals"]["failed"], 0);
    ASSERT_EQ(s["waves"].size(), 3u);
    EXPECT_EQ(s["waves"][0]["devices"], 2);
    EXPECT_GT(s["waves"][1]["devices"].get<int>(), 20);  // about 10 % of 500
    EXPECT_EQ(s["waves"][0]["devices"].get<int>() + s["waves"][1]["devices"].get<int>() + s["waves"][2]["devices"].get<int>(), 500);

    // Wave N+1 reached its devices only after every device of wave N reported succeeded.
    const auto evs = events();
    std::map<std::string, std::string> wave_of;
    for (const auto& e : evs)
        if (e.value("event", "") == "assignment_received") wave_of[e.value("device", "")] = e.value("wave", "");
    ASSERT_EQ(wave_of.size(), 500u);
    const auto canary_done = span(evs, wave_of, "canary", "status_published", "succeeded").second;
    const auto early = span(evs, wave_of, "early", "wave_open_received");
    const auto early_done = span(evs, wave_of, "early", "status_published", "succeeded").second;
    const auto broad_open = span(evs, wave_of, "broad", "wave_open_received").first;
    EXPECT_LT(canary_done, early.first);
    EXPECT_LT(early_done, broad_open);
}

TEST_F(FleetSimTest, AFailingCanaryDeviceHaltsTheRolloutAndLaterWavesNeverReceiveIt) {
    start_controller(three_waves({{"max_failures", 1}}));
    start_sim({"--devices", "200", "--early-fraction", "0.1", "--fail-devices", "device-00001", "--work-ms", "200",
               "--exit-when", "halted", "--duration", "40"});
    ASSERT_TRUE(kit::wait_until([&] { return count_events("assignment_received") >= 200; }, 30s));
    publish_release("1.1.0");

    const auto summary = sim_summary(40s);
    ASSERT_EQ(summary.value("exit", ""), "halted") << summary.dump();
    EXPECT_EQ(summary["wave_messages"]["open"], 2) << summary.dump();  // the two canary devices only
    EXPECT_EQ(summary["jobs"]["started"], 2);
    EXPECT_EQ(summary["jobs"]["rolled_back"], 1);
    for (const auto& e : events()) {
        if (e.value("event", "").starts_with("wave_") || e.value("event", "") == "halted_received") {
            EXPECT_TRUE(e.value("device", "") == "device-00001" || e.value("device", "") == "device-00002") << e.dump();
        }
    }

    const auto s = ctl_json({"status", "plant.app.1.1.0"});
    EXPECT_EQ(s.value("state", ""), "halted") << s.dump();
    EXPECT_EQ(s["waves"][0]["failed"], 1);
    EXPECT_EQ(s["waves"][1]["state"], "pending");
}

TEST_F(FleetSimTest, FloodPublishesEveryStatusWithIncreasingSeqAndReportsTheRate) {
    start_sim({"--devices", "50", "--flood", "40", "--seq-start", "1000", "--exit-when", "flood-done", "--duration", "30"});
    const auto summary = sim_summary(30s);
    ASSERT_EQ(summary.value("exit", ""), "flood-done") << summary.dump();
    EXPECT_EQ(summary["flood"]["messages"], 2000);
    EXPECT_GT(summary["flood"]["rate_per_s"].get<double>(), 0);
    EXPECT_EQ(summary["denied"], 0);
    // The last retained status of a device is its 40th: seq 1040, progress 100.
    const auto got = kit::mosquitto_sub(*broker, pki, "operator", "ota/v1/devices/device-00007/status/app", 1, 3s);
    ASSERT_EQ(got.messages.size(), 1u) << got.err;
    const auto st = json::parse(got.messages[0].second);
    EXPECT_EQ(st["seq"], 1040);
    EXPECT_EQ(st["progress"], 100);
    EXPECT_EQ(st["rollout"], "flood");
}

TEST_F(FleetSimTest, TheSimulationListenerRefusesWrongPasswordsAndBindsEachDeviceToItsOwnTopics) {
    start_sim({"--devices", "3", "--duration", "2"}, "not-the-secret");
    const auto refused = sim_summary(20s);
    EXPECT_EQ(refused["refused"], 3) << refused.dump();
    EXPECT_EQ(refused["ever_connected"], 0);

    // A simulated device may write its own inventory, not another device's; the TLS listener (the
    // operator's subscription) works as before.
    kit::Subscriber sub(*broker, pki, "operator", "ota/v1/devices/+/inventory");
    ASSERT_TRUE(sub.subscribed()) << sub.log();
    const auto password = ota::fleetsim::derive_password(secret, "device-00001");
    for (const auto* target : {"device-00002", "device-00001"}) {
        const auto r = kit::run({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(broker->sim_port()), "-u",
                                 "device-00001", "-P", password, "-i", "device-00001", "-q", "1", "-t",
                                 std::string("ota/v1/devices/") + target + "/inventory", "-m", target});
        EXPECT_EQ(r.exit_code, 0) << r.err;
    }
    const auto got = sub.wait(1, 5s);
    std::this_thread::sleep_for(300ms);
    const auto all = sub.stop();
    ASSERT_EQ(all.messages.size(), 1u);
    EXPECT_EQ(all.messages[0].first, "ota/v1/devices/device-00001/inventory");
    (void)got;
}

TEST_F(FleetSimTest, DevicesWithCertificatesUseTheTlsListenerInstead) {
    sim = std::make_unique<kit::Process>(
        std::vector<std::string>{OTA_FLEET_SIM_BIN, "--port", std::to_string(broker->port()), "--cafile", pki.ca().string(),
                                 "--cert-dir", pki.dir.string(), "--id-format", "device-%03d", "--devices", "3",
                                 "--exit-when", "connected", "--duration", "20", "--quiet"},
        dir / "sim.log");
    const auto summary = sim_summary(20s);
    EXPECT_EQ(summary.value("exit", ""), "connected") << summary.dump();
    EXPECT_EQ(summary["ever_connected"], 3);
    EXPECT_EQ(summary["acked"], 6);  // online and inventory of each
    EXPECT_EQ(summary["denied"], 0);
}
