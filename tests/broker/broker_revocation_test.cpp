// Device revocation against a real Mosquitto with the project's config (crlfile on): a PKI of the
// test's own, scripts/revoke-device, SIGHUP. Mosquitto 2.0.11 keeps the CRL it loaded until it is
// told to reload: after SIGHUP a new TLS handshake with the revoked certificate is refused, while
// every other device connects as before and connections already open (the revoked device's
// included) stay up until they end (broker-config/README.md, "Revoking a device").
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kit.hpp"

namespace {

namespace kit = ota::testkit;
using json = nlohmann::json;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

kit::PkiOptions three_devices() {
    kit::PkiOptions o;
    o.devices = 3;
    return o;
}

class BrokerRevocation : public ::testing::Test {
protected:
    kit::TempDir pki_dir{"ota-revoke-pki"};
    kit::Pki pki = kit::make_pki(pki_dir.path(), three_devices());
    kit::Broker broker{pki};

    std::string cmd_topic(const std::string& who) const { return "ota/v1/devices/" + who + "/cmd"; }
    // A new connection as `who`: true when the broker accepted it and granted a subscription.
    bool can_connect(const std::string& who) {
        kit::Subscriber s(broker, pki, who, cmd_topic(who), 5s);
        const bool ok = s.subscribed();
        const auto r = s.stop();
        return ok && r.exit_code == 0;
    }
    int reloads() const {
        const auto log = broker.log();
        int n = 0;
        for (auto pos = log.find("Reloading config"); pos != std::string::npos; pos = log.find("Reloading config", pos + 1)) ++n;
        return n;
    }
    void command(const std::string& who, const std::string& payload) {
        ASSERT_EQ(kit::mosquitto_pub(broker, pki, "controller", cmd_topic(who), payload).exit_code, 0);
    }
};

TEST_F(BrokerRevocation, ARevokedDeviceIsRefusedAfterTheReloadAndTheOthersAreUntouched) {
    for (const char* d : {"device-001", "device-002", "device-003"}) ASSERT_TRUE(can_connect(d)) << d << broker.log();
    // Connections open before the revocation.
    kit::Subscriber kept(broker, pki, "device-001", cmd_topic("device-001"));
    kit::Subscriber revoked_open(broker, pki, "device-002", cmd_topic("device-002"));
    ASSERT_TRUE(kept.subscribed() && revoked_open.subscribed()) << broker.log();

    // Revoked in the CRL but the broker not told: Mosquitto still uses the list it loaded.
    auto r = kit::revoke(pki, "device-002");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("device-002"));
    auto crl = kit::run({"openssl", "crl", "-in", pki.crl().string(), "-noout", "-text"});
    auto serial = kit::run({"openssl", "x509", "-in", pki.cert("device-002").string(), "-noout", "-serial"});
    ASSERT_EQ(serial.exit_code, 0);
    EXPECT_THAT(crl.out, HasSubstr(serial.out.substr(serial.out.find('=') + 1, 16)));
    EXPECT_TRUE(can_connect("device-002")) << "the CRL was re-read without SIGHUP:\n" << broker.log();

    // The script's --pid: SIGHUP, and the broker reloads.
    const int before = reloads();
    r = kit::revoke(pki, "device-002", broker.pid());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(kit::wait_until([&] { return reloads() > before; }, 10s)) << broker.log();
    EXPECT_FALSE(can_connect("device-002")) << broker.log();
    EXPECT_THAT(broker.log(), HasSubstr("certificate verify failed"));
    EXPECT_TRUE(can_connect("device-001")) << broker.log();
    EXPECT_TRUE(can_connect("device-003")) << broker.log();

    // The connections that were open stay up and keep receiving: a revocation takes effect at
    // the next handshake.
    command("device-001", R"({"cmd":"inventory"})");
    command("device-002", R"({"cmd":"inventory"})");
    EXPECT_EQ(kept.wait(1, 5s).messages.size(), 1u) << kept.log();
    EXPECT_EQ(revoked_open.wait(1, 5s).messages.size(), 1u) << revoked_open.log();

    // A restart keeps the revocation (the CRL is read at start-up).
    broker.restart();
    EXPECT_FALSE(can_connect("device-002")) << broker.log();
    EXPECT_TRUE(can_connect("device-001")) << broker.log();
}

// Why the CRL must be kept current: once past its nextUpdate OpenSSL refuses every client, revoked
// or not (broker-config/README.md). Written again with make-dev-certs, everyone is back.
TEST_F(BrokerRevocation, AnExpiredCrlRefusesEveryClient) {
    ASSERT_TRUE(can_connect("device-001")) << broker.log();
    auto r = kit::run({"openssl", "ca", "-config", (pki.dir / "ca.cnf").string(), "-gencrl", "-crl_lastupdate",
                       "20200101000000Z", "-crl_nextupdate", "20200102000000Z", "-out", pki.crl().string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    broker.restart();
    EXPECT_FALSE(can_connect("device-001")) << broker.log();
    EXPECT_FALSE(can_connect("controller")) << broker.log();
    (void)kit::make_pki(pki.dir, three_devices());
    ASSERT_EQ(kit::run({"kill", "-HUP", std::to_string(broker.pid())}).exit_code, 0);
    ASSERT_TRUE(kit::wait_until([&] { return reloads() > 0; }, 10s)) << broker.log();
    EXPECT_TRUE(can_connect("device-001")) << broker.log();
}

TEST_F(BrokerRevocation, TheAgentOfARevokedDeviceCannotConnectAndTheOthersCan) {
    kit::TempDir dir("ota-revoke-agent");
    auto k = kit::run({OTA_PUBLISH_BIN, "keygen", "--out", (dir / "release").string()});
    ASSERT_EQ(k.exit_code, 0) << k.err;
    auto agent_once = [&](const std::string& d) {
        json cfg{{"device_id", d},
                 {"mqtt", {{"broker", broker.url()}, {"cafile", pki.ca()}, {"cert", pki.cert(d)}, {"key", pki.key(d)}}},
                 {"trusted_keys", (dir / "release.pub").string()},
                 {"state_dir", (dir / d / "state").string()},
                 {"download", {{"cafile", pki.ca().string()}}},
                 {"components", json::object()}};
        std::filesystem::create_directories(dir / d);
        kit::write_file(dir / d / "agent.json", cfg.dump(2));
        return kit::run({OTA_AGENT_BIN, "--config", (dir / d / "agent.json").string(), "--once", "--once-wait", "3"}, 40s);
    };
    auto r = kit::revoke(pki, "device-003", broker.pid());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(kit::wait_until([&] { return reloads() > 0; }, 10s)) << broker.log();

    auto good = agent_once("device-001");
    EXPECT_EQ(good.exit_code, 0) << good.err;
    auto bad = agent_once("device-003");
    EXPECT_NE(bad.exit_code, 0) << bad.err;
    EXPECT_THAT(bad.err + bad.out, HasSubstr("TLS handshake failed"));
    // The broker saw device-001 connect, never device-003.
    EXPECT_THAT(broker.log(), HasSubstr("u'device-001'"));
    EXPECT_THAT(broker.log(), Not(HasSubstr("u'device-003'")));
    // Only the agent that connected published that it is online.
    auto online = kit::mosquitto_sub(broker, pki, "operator", "ota/v1/devices/+/online", 2, 1500ms);
    ASSERT_EQ(online.messages.size(), 1u);
    EXPECT_EQ(online.messages[0].first, "ota/v1/devices/device-001/online");
}

}  // namespace
