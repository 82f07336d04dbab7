// The whole pipeline on loopback, as the demo runs it: a real Mosquitto (TLS, ACL), nginx
// (HTTPS, Range), ota-controller with three waves, three real ota-agent processes (each with its
// own certificate, state and install root), releases published by ota-publish (the CI step).
// A good release reaches every device wave by wave; a bad one (its health check fails) halts in
// the canary, later waves never receive it, and every device ends on the good version.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kit.hpp"

namespace kit = ota::testkit;
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

const std::vector<std::string> devices{"device-001", "device-002", "device-003"};

class PipelineTest : public ::testing::Test {
protected:
    const kit::Pki& pki = kit::shared_pki(3);
    kit::TempDir dir{"ota-e2e"};
    std::unique_ptr<kit::Broker> broker;
    std::unique_ptr<kit::ArtifactServer> server;
    std::unique_ptr<kit::Process> controller;
    std::vector<std::unique_ptr<kit::Process>> agents;

    void SetUp() override {
        broker = std::make_unique<kit::Broker>(pki);
        server = std::make_unique<kit::ArtifactServer>(pki);
        auto k = kit::run({OTA_PUBLISH_BIN, "keygen", "--out", (dir / "release").string()});
        ASSERT_EQ(k.exit_code, 0) << k.err;
        json cfg{{"mqtt", {{"broker", broker->url()}, {"cafile", pki.ca()}, {"cert", pki.cert("controller")},
                           {"key", pki.key("controller")}}},
                 {"trusted_keys", (dir / "release.pub").string()},
                 {"database", (dir / "controller.db").string()},
                 {"tick_ms", 50},
                 {"state_interval_ms", 100},
                 {"fleets", json::array({{{"name", "demo"},
                                          {"defaults", {{"max_failures", 1}, {"soak_s", 1}, {"device_timeout_s", 60}}},
                                          {"waves", json::array({{{"name", "canary"}, {"devices", {"device-001"}}},
                                                                 {{"name", "early"}, {"devices", {"device-002"}}},
                                                                 {{"name", "broad"}, {"percent", 100}}})}}})}};
        kit::write_file(dir / "controller.json", cfg.dump(2));
        controller = std::make_unique<kit::Process>(
            std::vector<std::string>{OTA_CONTROLLER_BIN, "--config", (dir / "controller.json").string()}, dir / "controller.log");
        for (const auto& d : devices) {
            const auto root = dir / d / "root";
            fs::create_directories(root / "var/lib/models");
            json a{{"device_id", d},
                   {"mqtt", {{"broker", broker->url()}, {"cafile", pki.ca()}, {"cert", pki.cert(d)}, {"key", pki.key(d)}}},
                   {"trusted_keys", (dir / "release.pub").string()},
                   {"state_dir", (dir / d / "state").string()},
                   {"install_root", root.string()},
                   {"download", {{"cafile", pki.ca().string()}}},
                   {"components",
                    {{"detection-model",
                      {{"version_source", {{"type", "files"}, {"dir", (root / "var/lib/models").string()}, {"pattern", "model-(.*)\\.trt"}}},
                       {"health", {{"command", {"sh", "-c", "head -c 4 " + (root / "var/lib/models").string() +
                                                                "/model-$OTA_VERSION.trt | grep -q GOOD"}},
                                   {"retries", 1}, {"interval_ms", 100}}}}}}}};
            kit::write_file(dir / d / "agent.json", a.dump(2));
            agents.push_back(std::make_unique<kit::Process>(
                std::vector<std::string>{OTA_AGENT_BIN, "--config", (dir / d / "agent.json").string()}, dir / d / "agent.log"));
        }
        ASSERT_TRUE(kit::wait_until([&] {
            for (const auto& d : devices)
                if (!retained("ota/v1/devices/" + d + "/assignment")) return false;
            return true;
        }, 30s, 200ms)) << controller->log();
    }

    void TearDown() override {
        if (HasFailure()) {
            std::cerr << "controller log:\n" << controller->log() << "\n";
            for (std::size_t i = 0; i < agents.size(); ++i) std::cerr << devices[i] << " log:\n" << agents[i]->log() << "\n";
        }
    }

    std::optional<std::string> retained(const std::string& topic) const {
        auto got = kit::mosquitto_sub(*broker, pki, "operator", topic, 1, 1000ms);
        if (got.messages.empty() || got.messages.front().second.empty()) return std::nullopt;
        return got.messages.front().second;
    }

    // CI: an artifact starting with `marker` (the health check looks for GOOD), published with ota-publish.
    std::string publish(const std::string& version, const std::string& marker) {
        std::string content = marker + " model " + version;
        content.resize(300000, 'x');
        kit::write_file(dir / ("model-" + version + ".trt"), content);
        auto r = kit::run({OTA_PUBLISH_BIN, "publish", "--broker", broker->url(), "--cafile", pki.ca().string(), "--cert",
                           pki.cert("ci").string(), "--key", pki.key("ci").string(), "--signing-key",
                           (dir / "release.key").string(), "--component", "detection-model", "--version", version,
                           "--channel", "stable", "--artifact", (dir / ("model-" + version + ".trt")).string(), "--url",
                           server->url("models/model-" + version + ".trt"), "--install", "file", "--target",
                           "/var/lib/models", "--copy-to", server->root().string()});
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return content;
    }

    json rollout(const std::string& id) const { return json::parse(retained("ota/v1/rollouts/" + id).value_or("{}")); }
    bool wait_rollout(const std::string& id, const std::string& state) const {
        return kit::wait_until([&] { return rollout(id).value("state", "") == state; }, 90s, 250ms);
    }
    std::vector<std::string> models(const std::string& d) const {
        std::vector<std::string> out;
        for (const auto& e : fs::directory_iterator(dir / d / "root/var/lib/models"))
            if (!e.path().filename().string().starts_with(".")) out.push_back(e.path().filename().string());
        std::sort(out.begin(), out.end());
        return out;
    }
    json status(const std::string& d) const {
        return json::parse(retained("ota/v1/devices/" + d + "/status/detection-model").value_or("{}"));
    }
};

TEST_F(PipelineTest, AGoodReleaseRollsOutWaveByWaveAndABadOneHaltsInTheCanary) {
    const auto good = publish("2026-03-10", "GOOD");
    const std::string r1 = "demo.detection-model.2026-03-10";
    ASSERT_TRUE(wait_rollout(r1, "completed")) << rollout(r1).dump();
    auto s = rollout(r1);
    EXPECT_EQ(s["totals"]["devices"], 3);
    EXPECT_EQ(s["totals"]["succeeded"], 3);
    EXPECT_EQ(s["totals"]["failed"], 0);
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(s["waves"][i]["state"], "done");
        EXPECT_EQ(s["waves"][i]["succeeded"], 1);
    }
    // opened in order, each after the previous one's soak
    EXPECT_LT(s["waves"][0]["opened_at"].get<std::string>(), s["waves"][2]["opened_at"].get<std::string>());
    for (const auto& d : devices) {
        EXPECT_EQ(models(d), std::vector<std::string>{"model-2026-03-10.trt"}) << d;
        EXPECT_EQ(kit::read_file(dir / d / "root/var/lib/models/model-2026-03-10.trt"), good) << d;
        EXPECT_EQ(status(d)["stage"], "succeeded") << d;
    }

    publish("2026-03-11", "BAD!");
    const std::string r2 = "demo.detection-model.2026-03-11";
    ASSERT_TRUE(wait_rollout(r2, "halted")) << rollout(r2).dump();
    s = rollout(r2);
    EXPECT_EQ(s["waves"][0]["state"], "halted");
    EXPECT_EQ(s["waves"][0]["failed"], 1);
    EXPECT_EQ(s["waves"][1]["state"], "pending");
    EXPECT_EQ(s["waves"][2]["state"], "pending");
    auto canary = json::parse(retained("ota/v1/fleets/demo/waves/canary/detection-model").value_or("{}"));
    EXPECT_EQ(canary["state"], "halted");
    EXPECT_EQ(canary["rollout"], r2);
    // later waves still offer the good release, never the bad one
    for (const char* w : {"early", "broad"}) {
        auto msg = json::parse(retained(std::string("ota/v1/fleets/demo/waves/") + w + "/detection-model").value_or("{}"));
        EXPECT_EQ(msg["rollout"], r1) << w;
    }
    auto alert = json::parse(retained("ota/v1/alerts/" + r2).value_or("{}"));
    EXPECT_EQ(alert["state"], "firing");
    EXPECT_EQ(alert["wave"], "canary");
    // the canary rolled back; every device runs the good version
    auto st = status("device-001");
    EXPECT_EQ(st["stage"], "rolled_back");
    EXPECT_EQ(st["error"]["code"], "health_check_failed");
    for (const auto& d : devices) {
        EXPECT_EQ(models(d), std::vector<std::string>{"model-2026-03-10.trt"}) << d;
        auto inv = json::parse(retained("ota/v1/devices/" + d + "/inventory").value_or("{}"));
        EXPECT_EQ(inv["components"]["detection-model"], "2026-03-10") << d;
    }
}

}  // namespace
