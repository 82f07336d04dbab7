// broker-config/ against a real Mosquitto (test kit): TLS with client certificates, the
// certificate CN as user name, and the ACL enforcing the "written by" column of the topic tree.
// With MQTT 3.1.1 a publish the ACL denies is still acknowledged (mosquitto_pub exits 0), so every
// case asserts on what a subscriber actually receives.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "kit.hpp"

namespace {

namespace kit = ota::testkit;
using namespace std::chrono_literals;
using Messages = std::vector<std::pair<std::string, std::string>>;

constexpr auto kNothing = 1s;  // how long a subscriber that must receive nothing listens

class BrokerAcl : public ::testing::Test {
protected:
    static inline std::unique_ptr<kit::Broker> broker;
    static inline std::string setup_error;

    // A failure in SetUpTestSuite would only mark the tests skipped (and CTest counts skipped as
    // passed): keep the error and fail every test with it instead.
    static void SetUpTestSuite() {
        try {
            broker = std::make_unique<kit::Broker>(kit::shared_pki(3));
        } catch (const std::exception& e) {
            setup_error = e.what();
        }
    }
    static void TearDownTestSuite() { broker.reset(); }
    void SetUp() override { ASSERT_TRUE(broker) << setup_error; }

    const kit::Pki& pki = kit::shared_pki(3);

    void publish(const std::string& who, const std::string& topic, const std::string& payload, bool retain = false) {
        const auto r = kit::mosquitto_pub(*broker, pki, who, topic, payload, retain);
        // Accepted at the protocol level even when the ACL drops it.
        ASSERT_EQ(r.exit_code, 0) << who << " -> " << topic << ": " << r.err << "\n" << broker->log();
    }
    // The retained messages `who` gets when subscribing now: until `count` arrived (within 5 s),
    // or, with count 0, whatever arrives within kNothing.
    Messages retained(const std::string& who, const std::string& filter, int count) {
        const auto r = kit::mosquitto_sub(*broker, pki, who, filter, count, count > 0 ? 5s : kNothing);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return r.messages;
    }
    std::unique_ptr<kit::Subscriber> subscribe(const std::string& who, const std::string& filter) {
        auto s = std::make_unique<kit::Subscriber>(*broker, pki, who, filter);
        EXPECT_TRUE(s->subscribed()) << who << " on " << filter << ":\n" << s->log() << "\nbroker:\n" << broker->log();
        return s;
    }
};

TEST_F(BrokerAcl, RetainedReleaseFromCiReachesAnOperatorWhoSubscribesLater) {
    publish("ci", "ota/v1/releases/a/stable", "manifest-a", true);
    EXPECT_EQ(retained("operator", "ota/v1/releases/#", 1), (Messages{{"ota/v1/releases/a/stable", "manifest-a"}}));
    // The controller reads releases too.
    EXPECT_EQ(retained("controller", "ota/v1/releases/a/+", 1), (Messages{{"ota/v1/releases/a/stable", "manifest-a"}}));
}

TEST_F(BrokerAcl, ADeviceCannotPublishARelease) {
    publish("ci", "ota/v1/releases/b/stable", "good", true);
    auto watcher = subscribe("operator", "ota/v1/releases/b/#");
    ASSERT_EQ(watcher->wait(1, 5s).messages.size(), 1u);  // the retained one

    publish("device-001", "ota/v1/releases/b/stable", "evil", true);
    publish("device-001", "ota/v1/releases/b/beta", "evil", true);
    EXPECT_EQ(watcher->wait(2, kNothing).messages, (Messages{{"ota/v1/releases/b/stable", "good"}}));
    // The retained release is the one CI published.
    EXPECT_EQ(retained("operator", "ota/v1/releases/b/#", 0), (Messages{{"ota/v1/releases/b/stable", "good"}}));
}

TEST_F(BrokerAcl, ADeviceWritesOnlyItsOwnStatusInventoryAndOnline) {
    auto controller = subscribe("controller", "ota/v1/devices/#");
    // Denied first: if any of them got through it would arrive before the allowed ones.
    publish("device-001", "ota/v1/devices/device-002/status/app", "forged", true);
    publish("device-001", "ota/v1/devices/device-002/inventory", "forged", true);
    publish("device-001", "ota/v1/devices/device-002/online", "forged", true);
    publish("device-001", "ota/v1/devices/device-001/assignment", "self-assigned", true);
    publish("device-001", "ota/v1/devices/device-001/cmd", "self-command");
    publish("device-001", "ota/v1/devices/device-001/status/app/extra", "too deep", true);
    publish("device-001", "ota/v1/devices/device-001/status/app", "installed", true);
    publish("device-001", "ota/v1/devices/device-001/inventory", "{}", true);
    publish("device-001", "ota/v1/devices/device-001/online", "true", true);
    EXPECT_EQ(controller->wait(4, kNothing).messages, (Messages{{"ota/v1/devices/device-001/status/app", "installed"},
                                                                {"ota/v1/devices/device-001/inventory", "{}"},
                                                                {"ota/v1/devices/device-001/online", "true"}}));
}

TEST_F(BrokerAcl, ADeviceCannotReadAnotherDevicesCommandsOrAssignment) {
    auto own = subscribe("device-002", "ota/v1/devices/device-002/cmd");
    auto other = subscribe("device-001", "ota/v1/devices/device-002/cmd");
    auto wildcard = subscribe("device-001", "ota/v1/#");
    publish("controller", "ota/v1/devices/device-002/cmd", "reboot");
    EXPECT_EQ(own->wait(1, 5s).messages, (Messages{{"ota/v1/devices/device-002/cmd", "reboot"}}));
    EXPECT_TRUE(other->wait(1, kNothing).messages.empty());
    EXPECT_TRUE(wildcard->wait(1, 100ms).messages.empty());

    // Retained: device-001 sees its own assignment and the wave topics, nothing of device-002.
    publish("controller", "ota/v1/devices/device-002/assignment", "fleet-b/canary", true);
    publish("controller", "ota/v1/devices/device-001/assignment", "fleet-a/early", true);
    publish("controller", "ota/v1/fleets/fleet-a/waves/early/app", "manifest", true);
    publish("controller", "ota/v1/rollouts/r1", "state", true);
    auto seen = retained("device-001", "ota/v1/#", 0);
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, (Messages{{"ota/v1/devices/device-001/assignment", "fleet-a/early"},
                              {"ota/v1/fleets/fleet-a/waves/early/app", "manifest"}}));
}

TEST_F(BrokerAcl, AClientWithoutACertificateIsRefused) {
    const auto r = kit::mosquitto_sub(*broker, pki, "", "ota/v1/#", 1, kNothing);
    EXPECT_NE(r.exit_code, 0) << "connected without a client certificate";
    EXPECT_TRUE(r.messages.empty());
}

TEST_F(BrokerAcl, AClientWithACertificateFromAnotherCaIsRefused) {
    kit::TempDir other("ota-other-ca");
    const auto made = kit::run({(kit::source_dir() / "scripts" / "make-dev-certs").string(), other.path().string(),
                                "--devices", "1"});
    ASSERT_EQ(made.exit_code, 0) << made.err;
    // Trusts the right CA for the server, but presents a certificate our CA did not sign,
    // with a CN ("ci") that would otherwise be allowed to write releases.
    auto with_foreign_cert = [&](const std::string& tool) {
        return std::vector<std::string>{tool, "-h", "127.0.0.1", "-p", std::to_string(broker->port()), "--cafile",
                                        pki.ca().string(), "--cert", (other / "ci.pem").string(), "--key",
                                        (other / "ci.key").string()};
    };
    auto sub = with_foreign_cert("mosquitto_sub");
    sub.insert(sub.end(), {"-t", "ota/v1/#", "-C", "1", "-W", "3"});
    const auto r = kit::run(sub, 10s);
    EXPECT_GT(r.exit_code, 0) << "connected with a foreign certificate: " << r.out;

    auto pub = with_foreign_cert("mosquitto_pub");
    pub.insert(pub.end(), {"-t", "ota/v1/releases/f/stable", "-m", "forged", "-r", "-q", "1"});
    EXPECT_NE(kit::run(pub, 10s).exit_code, 0);
    EXPECT_TRUE(retained("operator", "ota/v1/releases/f/#", 0).empty());
}

TEST_F(BrokerAcl, OnlyCiWritesReleasesOnlyTheControllerWritesWavesAndOperatorsWriteControlRequests) {
    auto watcher = subscribe("operator", "ota/v1/#");
    auto controller = subscribe("controller", "ota/v1/control/request/+");
    // Denied.
    publish("controller", "ota/v1/releases/g/stable", "from-controller", true);
    publish("operator", "ota/v1/releases/g/stable", "from-operator", true);
    publish("operator", "ota/v1/fleets/f/waves/canary/g", "from-operator", true);
    publish("operator", "ota/v1/devices/device-001/cmd", "from-operator");
    publish("operator", "ota/v1/devices/device-001/assignment", "from-operator", true);
    publish("operator", "ota/v1/control/reply/operator", "from-operator");
    publish("ci", "ota/v1/fleets/f/waves/canary/g", "from-ci", true);
    publish("device-001", "ota/v1/control/request/device-001", "from-device");
    publish("operator", "ota/v1/control/request/alice", "as-alice");
    publish("device-001", "ota/v1/control/request", "old-topic");
    publish("operator", "ota/v1/control/request", "old-topic");
    publish("device-001", "ota/v1/fleets/f/waves/canary/g", "from-device", true);
    // Allowed.
    publish("controller", "ota/v1/fleets/f/waves/canary/g", "wave", true);
    publish("controller", "ota/v1/control/reply/operator", "reply");
    publish("operator", "ota/v1/control/request/operator", "pause");
    EXPECT_EQ(watcher->wait(4, kNothing).messages, (Messages{{"ota/v1/fleets/f/waves/canary/g", "wave"},
                                                             {"ota/v1/control/reply/operator", "reply"},
                                                             {"ota/v1/control/request/operator", "pause"}}));
    EXPECT_EQ(controller->wait(2, 200ms).messages, (Messages{{"ota/v1/control/request/operator", "pause"}}));
}

TEST_F(BrokerAcl, OnlyTheControllerWritesAFleetsPolicyAndDevicesCannotReadIt) {
    publish("operator", "ota/v1/fleets/f/policy", "from-operator", true);
    publish("ci", "ota/v1/fleets/f/policy", "from-ci", true);
    publish("device-001", "ota/v1/fleets/f/policy", "from-device", true);
    publish("controller", "ota/v1/fleets/f/policy", "policy", true);
    publish("controller", "ota/v1/fleets/f/waves/canary/g", "wave", true);
    EXPECT_EQ(retained("operator", "ota/v1/fleets/f/policy", 1), (Messages{{"ota/v1/fleets/f/policy", "policy"}}));
    // A device sees the wave topics of the fleet, not its policy.
    EXPECT_EQ(retained("device-001", "ota/v1/fleets/#", 0), (Messages{{"ota/v1/fleets/f/waves/canary/g", "wave"}}));
}

TEST_F(BrokerAcl, ServiceIdentitiesCannotPoseAsDevices) {
    // The device patterns apply to every user name; each user block denies its own devices/ subtree.
    auto controller = subscribe("controller", "ota/v1/devices/#");
    for (const std::string who : {"ci", "controller", "operator"}) {
        publish(who, "ota/v1/devices/" + who + "/status/app", "forged", true);
        publish(who, "ota/v1/devices/" + who + "/online", "forged", true);
    }
    EXPECT_TRUE(controller->wait(1, kNothing).messages.empty());
}

TEST_F(BrokerAcl, RetainedMessagesSurviveABrokerRestart) {
    publish("ci", "ota/v1/releases/h/stable", "persisted", true);
    publish("device-003", "ota/v1/devices/device-003/status/app", "installed", true);
    const int port = broker->port();
    broker->restart();
    EXPECT_EQ(broker->port(), port);
    auto seen = retained("operator", "ota/v1/#", 0);
    EXPECT_NE(std::find(seen.begin(), seen.end(), std::pair<std::string, std::string>{"ota/v1/releases/h/stable", "persisted"}),
              seen.end()) << broker->log();
    EXPECT_NE(std::find(seen.begin(), seen.end(),
                        std::pair<std::string, std::string>{"ota/v1/devices/device-003/status/app", "installed"}),
              seen.end());
}

TEST_F(BrokerAcl, TheInstallConfigIsRenderedFromTheSameTemplate) {
    const auto conf = kit::read_file(kit::binary_dir() / "broker-config" / "mosquitto.conf");
    EXPECT_EQ(conf.find("@OTA_"), std::string::npos) << "a placeholder CMake does not fill";
    for (const char* line : {"\nlistener ", "\nrequire_certificate true\n", "\nuse_identity_as_username true\n",
                             "\nallow_anonymous false\n", "\npersistence true\n", "\nacl_file /"})
        EXPECT_NE(conf.find(line), std::string::npos) << line;
}

}  // namespace
