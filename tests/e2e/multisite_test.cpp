// A fleet over two sites (docs/multisite.md): a core broker where ota-controller and CI
// (ota-publish) connect, two site brokers bridged to it, each with its own certificate, and real
// ota-agent processes that connect only to their site's broker. A release rolls out wave by wave
// across both sites, and a site whose bridge is down for a while catches up when it is back.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kit.hpp"

namespace kit = ota::testkit;
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct Device {
    std::string id;
    int site;  // 0: site-a, 1: site-b
};
const std::vector<Device> devices{{"device-001", 0}, {"device-002", 1}, {"device-003", 1}};

class MultisiteTest : public ::testing::Test {
protected:
    kit::TempDir dir{"ota-multisite"};
    kit::Pki pki = kit::make_pki(dir / "pki", {.devices = 3, .sans = {}, .clients = {"site-a", "site-b"}});
    std::unique_ptr<kit::Broker> core;
    std::vector<std::unique_ptr<kit::Broker>> sites;
    std::unique_ptr<kit::ArtifactServer> server;
    std::unique_ptr<kit::Process> controller;
    std::vector<std::unique_ptr<kit::Process>> agents;

    void SetUp() override {
        core = std::make_unique<kit::Broker>(pki, kit::BrokerOptions{.sites = {"site-a", "site-b"}});
        for (const char* name : {"site-a", "site-b"})
            sites.push_back(std::make_unique<kit::Broker>(
                pki, kit::BrokerOptions{.bridge_to = "127.0.0.1:" + std::to_string(core->port()), .bridge_name = name}));
        server = std::make_unique<kit::ArtifactServer>(pki);
        auto k = kit::run({OTA_PUBLISH_BIN, "keygen", "--out", (dir / "release").string()});
        ASSERT_EQ(k.exit_code, 0) << k.err;
        json cfg{{"mqtt", {{"broker", core->url()}, {"cafile", pki.ca()}, {"cert", pki.cert("controller")},
                           {"key", pki.key("controller")}}},
                 {"trusted_keys", (dir / "release.pub").string()},
                 {"database", (dir / "controller.db").string()},
                 {"tick_ms", 50},
                 {"state_interval_ms", 100},
                 {"fleets", json::array({{{"name", "plant"},
                                          {"defaults", {{"max_failures", 1}, {"soak_s", 1}, {"device_timeout_s", 120}}},
                                          {"waves", json::array({{{"name", "canary"}, {"devices", {"device-001"}}},
                                                                 {{"name", "broad"}, {"percent", 100}}})}}})}};
        kit::write_file(dir / "controller.json", cfg.dump(2));
        controller = std::make_unique<kit::Process>(
            std::vector<std::string>{OTA_CONTROLLER_BIN, "--config", (dir / "controller.json").string()}, dir / "controller.log");
        for (const auto& d : devices) {
            const auto root = dir / d.id / "root";
            fs::create_directories(root / "var/lib/models");
            const auto& site = *sites[static_cast<std::size_t>(d.site)];
            json a{{"device_id", d.id},
                   {"mqtt", {{"broker", site.url()}, {"cafile", pki.ca()}, {"cert", pki.cert(d.id)}, {"key", pki.key(d.id)}}},
                   {"trusted_keys", (dir / "release.pub").string()},
                   {"state_dir", (dir / d.id / "state").string()},
                   {"install_root", root.string()},
                   {"download", {{"cafile", pki.ca().string()}}},
                   {"components",
                    {{"detection-model",
                      {{"type", "file"},
                       {"target", "/var/lib/models"},
                       {"version_source", {{"type", "files"}, {"dir", (root / "var/lib/models").string()}, {"pattern", "model-(.*)\\.trt"}}}}}}}};
            kit::write_file(dir / d.id / "agent.json", a.dump(2));
            agents.push_back(std::make_unique<kit::Process>(
                std::vector<std::string>{OTA_AGENT_BIN, "--config", (dir / d.id / "agent.json").string()}, dir / d.id / "agent.log"));
        }
        // every device known to the controller (its inventory went up) and assigned (it came down)
        ASSERT_TRUE(kit::wait_until([&] {
            for (const auto& d : devices)
                if (!retained(*sites[static_cast<std::size_t>(d.site)], "ota/v1/devices/" + d.id + "/assignment")) return false;
            return true;
        }, 45s, 250ms)) << controller->log();
    }

    void TearDown() override {
        if (HasFailure()) {
            std::cerr << "controller log:\n" << controller->log() << "\n";
            for (std::size_t i = 0; i < agents.size(); ++i) std::cerr << devices[i].id << " log:\n" << agents[i]->log() << "\n";
            for (const auto& s : sites) std::cerr << "site log:\n" << s->log() << "\n";
        }
    }

    std::optional<std::string> retained(const kit::Broker& broker, const std::string& topic) const {
        auto got = kit::mosquitto_sub(broker, pki, "operator", topic, 1, 1000ms);
        if (got.messages.empty() || got.messages.front().second.empty()) return std::nullopt;
        return got.messages.front().second;
    }
    void publish(const std::string& version) {
        std::string content = "model " + version;
        content.resize(200000, 'x');
        kit::write_file(dir / ("model-" + version + ".trt"), content);
        auto r = kit::run({OTA_PUBLISH_BIN, "publish", "--broker", core->url(), "--cafile", pki.ca().string(), "--cert",
                           pki.cert("ci").string(), "--key", pki.key("ci").string(), "--signing-key",
                           (dir / "release.key").string(), "--component", "detection-model", "--version", version,
                           "--artifact", (dir / ("model-" + version + ".trt")).string(), "--url",
                           server->url("models/model-" + version + ".trt"), "--install", "file", "--target",
                           "/var/lib/models", "--copy-to", server->root().string()});
        ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    json rollout(const std::string& id) const {
        return json::parse(retained(*core, "ota/v1/rollouts/" + id).value_or("{}"));
    }
    bool wait_rollout(const std::string& id, const std::string& state, std::chrono::milliseconds within = 90s) const {
        return kit::wait_until([&] { return rollout(id).value("state", "") == state; }, within, 250ms);
    }
    bool installed(const Device& d, const std::string& version) const {
        return fs::exists(dir / d.id / "root/var/lib/models" / ("model-" + version + ".trt"));
    }
};

}  // namespace

TEST_F(MultisiteTest, AReleaseRollsOutAcrossBothSitesThroughTheirBridges) {
    publish("2026-03-10");
    const std::string id = "plant.detection-model.2026-03-10";
    ASSERT_TRUE(wait_rollout(id, "completed")) << rollout(id).dump();
    const auto s = rollout(id);
    EXPECT_EQ(s["totals"]["devices"], 3);
    EXPECT_EQ(s["totals"]["succeeded"], 3) << "every device counted once, on the core";
    EXPECT_EQ(s["waves"][0]["state"], "done");
    EXPECT_EQ(s["waves"][1]["state"], "done");
    for (const auto& d : devices) {
        EXPECT_TRUE(installed(d, "2026-03-10")) << d.id;
        // the same last status retained at the device's site and at the core
        const auto topic = "ota/v1/devices/" + d.id + "/status/detection-model";
        const auto at_core = json::parse(retained(*core, topic).value_or("{}"));
        EXPECT_EQ(at_core.value("stage", ""), "succeeded") << d.id;
        EXPECT_EQ(retained(*sites[static_cast<std::size_t>(d.site)], topic), retained(*core, topic)) << d.id;
    }
}

// Site B is cut off (its broker down) while a release rolls out: the canary at site A finishes,
// site B's devices cannot report; when the site is back its devices get the offer through the
// bridge and the rollout completes.
TEST_F(MultisiteTest, ASiteThatIsDownForAWhileCatchesUpWhenItsBridgeIsBack) {
    sites[1]->stop();
    publish("2026-03-11");
    const std::string id = "plant.detection-model.2026-03-11";
    ASSERT_TRUE(kit::wait_until([&] { return installed(devices[0], "2026-03-11"); }, 60s)) << rollout(id).dump();
    EXPECT_FALSE(installed(devices[1], "2026-03-11"));
    EXPECT_NE(rollout(id).value("state", ""), "completed");
    const auto offset = core->log().size();
    sites[1]->restart();
    ASSERT_TRUE(kit::wait_until([&] { return core->log().find("as ota-site-site-b", offset) != std::string::npos; }, 45s));
    ASSERT_TRUE(wait_rollout(id, "completed")) << rollout(id).dump();
    for (const auto& d : devices) EXPECT_TRUE(installed(d, "2026-03-11")) << d.id;
    EXPECT_EQ(rollout(id)["totals"]["succeeded"], 3);
}
