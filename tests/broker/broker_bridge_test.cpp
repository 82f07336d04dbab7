// A site broker bridged to a core broker (render-broker-config --bridge-to on the site, --site on
// the core; docs/multisite.md), both real Mosquittos with the project's config, TLS and ACL. The
// site dials out to the core with its own certificate. What devices write goes up, what the
// controller writes for devices comes down, retained state survives a core outage and a site
// restart, and the ACL at each level still says who writes what.
#include <gtest/gtest.h>

#include <string>

#include "kit.hpp"

namespace {

namespace kit = ota::testkit;
using namespace std::chrono_literals;

class BrokerBridge : public ::testing::Test {
protected:
    kit::TempDir dir{"ota-bridge"};
    kit::Pki pki = kit::make_pki(dir / "pki", {.devices = 3, .sans = {}, .clients = {"site-a"}});
    std::unique_ptr<kit::Broker> core = std::make_unique<kit::Broker>(pki, kit::BrokerOptions{.sites = {"site-a"}});
    std::unique_ptr<kit::Broker> site;

    void SetUp() override {
        site = std::make_unique<kit::Broker>(
            pki, kit::BrokerOptions{.bridge_to = "127.0.0.1:" + std::to_string(core->port()), .bridge_name = "site-a"});
        ASSERT_TRUE(bridge_up()) << "site log:\n" << site->log() << "\ncore log:\n" << core->log();
    }
    // The core has the site's bridge connected (as its certificate's CN, site-a), at most `within`.
    bool bridge_up(std::chrono::milliseconds within = 20s, std::size_t offset = 0) {
        return kit::wait_until([&] { return core->log().find("as ota-site-site-a", offset) != std::string::npos; }, within);
    }
    // The one retained message on `topic` at `broker` as `who`, or "" within 5 s.
    std::string retained(const kit::Broker& broker, const std::string& who, const std::string& topic,
                         std::chrono::milliseconds within = 5s) {
        std::string got;
        kit::wait_until(
            [&] {
                auto r = kit::mosquitto_sub(broker, pki, who, topic, 1, 1s);
                if (!r.messages.empty()) got = r.messages[0].second;
                return !got.empty();
            },
            within);
        return got;
    }
    void pub(const kit::Broker& broker, const std::string& who, const std::string& topic, const std::string& payload) {
        auto r = kit::mosquitto_pub(broker, pki, who, topic, payload, true);
        ASSERT_EQ(r.exit_code, 0) << r.err;
    }
};

const std::string kStatus = "ota/v1/devices/device-001/status/app";
const std::string kAssignment = "ota/v1/devices/device-001/assignment";
const std::string kWave = "ota/v1/fleets/plant/waves/canary/app";

}  // namespace

// Devices' reports go up, the controller's assignments and waves come down, retained both ways.
TEST_F(BrokerBridge, ReportsGoUpAndTheControllersMessagesComeDownRetained) {
    pub(*core, "controller", kAssignment, R"({"fleet":"plant","wave":"canary"})");
    pub(*core, "controller", kWave, R"({"rollout":"r1","state":"open"})");
    // a device of the site, subscribing later, gets both from its own broker
    EXPECT_EQ(retained(*site, "device-001", kAssignment), R"({"fleet":"plant","wave":"canary"})");
    EXPECT_EQ(retained(*site, "device-001", kWave), R"({"rollout":"r1","state":"open"})");
    // its status reaches the core, retained there too
    pub(*site, "device-001", kStatus, R"({"seq":1,"stage":"downloading"})");
    EXPECT_EQ(retained(*core, "operator", kStatus), R"({"seq":1,"stage":"downloading"})");
    // what is not in the bridge's map stays where it is: a release is the core's, not the site's
    pub(*core, "ci", "ota/v1/releases/app/stable", "release");
    EXPECT_EQ(kit::mosquitto_sub(*site, pki, "operator", "ota/v1/releases/#", 1, 1500ms).messages.size(), 0u);
}

// The core goes away: what the site's devices report meanwhile is queued by the bridge's
// persistent session and reaches the core once it is back; the retained state then matches.
TEST_F(BrokerBridge, ACoreOutageLosesNothingAndEndsWithTheSameRetainedState) {
    pub(*site, "device-001", kStatus, R"({"seq":1,"stage":"downloading"})");
    ASSERT_EQ(retained(*core, "operator", kStatus), R"({"seq":1,"stage":"downloading"})");
    core->stop();
    pub(*site, "device-001", kStatus, R"({"seq":2,"stage":"installing"})");
    pub(*site, "device-001", kStatus, R"({"seq":3,"stage":"succeeded"})");
    const auto offset = core->log().size();
    core->restart();
    ASSERT_TRUE(bridge_up(45s, offset)) << "site log:\n" << site->log();
    EXPECT_EQ(retained(*core, "operator", kStatus, 10s), R"({"seq":3,"stage":"succeeded"})");
    EXPECT_EQ(retained(*site, "operator", kStatus), R"({"seq":3,"stage":"succeeded"})");
}

// The site broker restarts (persistence on): its own retained state is kept, and what the
// controller published while it was down comes down once the bridge is back.
TEST_F(BrokerBridge, ASiteRestartCatchesUpWithWhatTheControllerPublishedMeanwhile) {
    pub(*core, "controller", kWave, R"({"rollout":"r1","state":"open"})");
    pub(*site, "device-001", kStatus, R"({"seq":1,"stage":"downloading"})");
    ASSERT_EQ(retained(*site, "device-001", kWave), R"({"rollout":"r1","state":"open"})");
    site->stop();
    pub(*core, "controller", kWave, R"({"rollout":"r1","state":"halted"})");
    const auto offset = core->log().size();
    site->restart();
    ASSERT_TRUE(bridge_up(30s, offset)) << "site log:\n" << site->log();
    EXPECT_EQ(retained(*site, "device-001", kWave, 10s), R"({"rollout":"r1","state":"halted"})");
    EXPECT_EQ(retained(*site, "operator", kStatus), R"({"seq":1,"stage":"downloading"})") << "kept by the site";
    EXPECT_EQ(retained(*core, "operator", kStatus), R"({"seq":1,"stage":"downloading"})");
}

// The ACL at each level: a site device cannot write another device's topics (the site's ACL,
// so nothing goes up), and the site's bridge identity cannot write what only the controller
// writes at the core.
TEST_F(BrokerBridge, TheAclAtEachLevelStillSaysWhoWritesWhat) {
    pub(*site, "device-002", kStatus, R"({"seq":9,"stage":"failed"})");  // device-001's topic
    EXPECT_EQ(kit::mosquitto_sub(*site, pki, "operator", kStatus, 1, 1500ms).messages.size(), 0u);
    EXPECT_EQ(kit::mosquitto_sub(*core, pki, "operator", kStatus, 1, 1500ms).messages.size(), 0u);
    pub(*core, "site-a", kWave, R"({"rollout":"evil","state":"open"})");
    pub(*core, "site-a", kAssignment, R"({"fleet":"evil","wave":"x"})");
    EXPECT_EQ(kit::mosquitto_sub(*core, pki, "operator", kWave, 1, 1500ms).messages.size(), 0u);
    EXPECT_EQ(kit::mosquitto_sub(*core, pki, "operator", kAssignment, 1, 1500ms).messages.size(), 0u);
    EXPECT_EQ(kit::mosquitto_sub(*site, pki, "device-001", kWave, 1, 1500ms).messages.size(), 0u);
    // the site's bridge identity may write a device's status at the core (it relays them)
    pub(*core, "site-a", kStatus, R"({"seq":1,"stage":"downloading"})");
    EXPECT_EQ(retained(*core, "operator", kStatus), R"({"seq":1,"stage":"downloading"})");
}

// Bad options of the bridge's renderer: one line that names the option and the cause, exit 2 (or
// 1 for a missing certificate), nothing written.
TEST(BridgeConfig, BadSiteAndBridgeOptionsAreRefusedWithTheCause) {
    kit::TempDir dir{"ota-bridge-cfg"};
    const auto pki = kit::make_pki(dir / "pki", {.devices = 1, .sans = {}, .clients = {}});
    const auto script = (kit::source_dir() / "scripts" / "render-broker-config").string();
    const std::vector<std::string> base{script, "--port", "1", "--certs", pki.dir.string(), "--data", (dir / "d").string(),
                                        "--acl", (kit::source_dir() / "broker-config" / "acl").string()};
    struct Case {
        std::vector<std::string> extra;
        int exit_code;
        std::string message;
    };
    const std::vector<Case> cases{
        {{"--site", "a/b", "--acl-out", (dir / "acl").string()}, 2, "--site \"a/b\" is not a valid name"},
        {{"--site", "site-a"}, 2, "--acl-out go together"},
        {{"--bridge-to", "127.0.0.1:1", "--acl-out", (dir / "acl").string()}, 2, "--bridge-to and --bridge-name go together"},
        {{"--bridge-to", "127.0.0.1:1", "--bridge-name", "site-x", "--acl-out", (dir / "acl").string()}, 1,
         "--bridge-name site-x: cannot read " + (pki.dir / "site-x.pem").string()},
    };
    for (const auto& c : cases) {
        auto argv = base;
        argv.insert(argv.end(), c.extra.begin(), c.extra.end());
        const auto r = kit::run(argv, 10s);
        EXPECT_EQ(r.exit_code, c.exit_code) << c.message << ": " << r.err;
        EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
        EXPECT_TRUE(r.out.empty()) << "no config on a refusal";
    }
    EXPECT_FALSE(std::filesystem::exists(dir / "acl")) << "no ACL written on a refusal";
}
