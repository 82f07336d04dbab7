// ota::mqtt::Client against a real Mosquitto with the project's TLS listener and ACL (test kit).
// Each test starts its own broker, so retained messages and sessions never leak between tests.
// Identities and topics follow docs/protocol.md: the controller writes devices/<id>/cmd and
// reads devices/+/status/+; a device writes its own status/online topics and reads its cmd.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kit.hpp"
#include "ota/mqtt.hpp"

namespace {

namespace kit = ota::testkit;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ota::ErrorCode;
using ota::mqtt::Client;
using ota::mqtt::Message;
using ota::mqtt::Options;
using Clock = std::chrono::steady_clock;

const std::string kPrefix = "ota/v1";
std::string cmd_topic(const std::string& device) { return kPrefix + "/devices/" + device + "/cmd"; }
std::string status_topic(const std::string& device, const std::string& component) {
    return kPrefix + "/devices/" + device + "/status/" + component;
}
std::string online_topic(const std::string& device) { return kPrefix + "/devices/" + device + "/online"; }

Options options_for(const kit::Broker& broker, const kit::Pki& pki, const std::string& who) {
    Options o;
    o.broker = broker.url();
    o.client_id = who;
    o.cafile = pki.ca().string();
    o.certfile = pki.cert(who).string();
    o.keyfile = pki.key(who).string();
    o.connect_timeout = 3s;
    o.reconnect_min = 50ms;
    o.reconnect_max = 400ms;
    return o;
}

// Collects what a client's handlers see, and on which threads.
class Inbox {
public:
    void attach(Client& client) {
        client.on_message([this](const Message& m) {
            std::lock_guard lock(mu_);
            messages_.push_back(m);
            threads_.insert(std::this_thread::get_id());
            cv_.notify_all();
        });
        client.on_connection([this](bool up) {
            std::lock_guard lock(mu_);
            connection_.push_back(up);
            cv_.notify_all();
        });
    }
    bool wait_messages(std::size_t n, std::chrono::milliseconds timeout = 5s) {
        std::unique_lock lock(mu_);
        return cv_.wait_for(lock, timeout, [&] { return messages_.size() >= n; });
    }
    // Wait until the connection handler has seen exactly this sequence (as a prefix).
    bool wait_connection(const std::vector<bool>& expected, std::chrono::milliseconds timeout = 5s) {
        std::unique_lock lock(mu_);
        return cv_.wait_for(lock, timeout, [&] { return connection_.size() >= expected.size(); }) &&
               std::equal(expected.begin(), expected.end(), connection_.begin());
    }
    std::vector<Message> messages() {
        std::lock_guard lock(mu_);
        return messages_;
    }
    std::vector<bool> connection() {
        std::lock_guard lock(mu_);
        return connection_;
    }
    std::set<std::thread::id> threads() {
        std::lock_guard lock(mu_);
        return threads_;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<Message> messages_;
    std::vector<bool> connection_;
    std::set<std::thread::id> threads_;
};

// paho C 1.3.12 runs one receive thread per process that polls the open sockets with a 1 s
// timeout; a socket opened while it waits is only noticed at the next round, so connecting a
// client while another one in the process is already connected costs ~2 s (TCP, then CONNACK).
// Connecting the test's clients at the same time avoids that wait.
ota::Expected<void> connect_together(Client& a, Client& b) {
    ota::Expected<void> rb;
    std::thread t([&] { rb = b.connect(); });
    auto ra = a.connect();
    t.join();
    if (!ra) return ra;
    return rb;
}

class MqttClientTest : public ::testing::Test {
protected:
    const kit::Pki& pki_ = kit::shared_pki(3);
    kit::Broker broker_{pki_};
};

#define ASSERT_OK(expr)                                                           \
    do {                                                                          \
        auto ota_result_ = (expr);                                                \
        ASSERT_TRUE(ota_result_.has_value()) << ota_result_.error().describe();   \
    } while (false)

TEST_F(MqttClientTest, DeviceStatusReachesControllerAndHandlerMayPublish) {
    // Everything a handler touches is declared before the client, so it outlives the client.
    std::atomic<bool> replied{false};
    Client controller(options_for(broker_, pki_, "controller"));
    // The handler publishes from the dispatch thread and waits for the PUBACK: must not deadlock.
    controller.on_message([&](const Message& m) {
        auto r = controller.publish(cmd_topic("device-001"), "ack:" + m.payload);
        replied = r.has_value();
    });
    Inbox device_inbox;
    Client device(options_for(broker_, pki_, "device-001"));
    device_inbox.attach(device);
    ASSERT_OK(connect_together(controller, device));
    EXPECT_TRUE(controller.connected());
    ASSERT_OK(controller.subscribe(kPrefix + "/devices/+/status/+"));
    ASSERT_OK(device.subscribe(cmd_topic("device-001")));
    ASSERT_TRUE(device_inbox.wait_connection({true}));

    ASSERT_OK(device.publish(status_topic("device-001", "app"), "installed", 1, false));
    ASSERT_TRUE(device_inbox.wait_messages(1)) << "the controller's reply never arrived";
    // The device can see the reply before the controller's publish() has its PUBACK.
    EXPECT_TRUE(kit::wait_until([&] { return replied.load(); }, 5s));
    auto got = device_inbox.messages();
    EXPECT_EQ(got[0].topic, cmd_topic("device-001"));
    EXPECT_EQ(got[0].payload, "ack:installed");
    EXPECT_EQ(got[0].qos, 1);
    EXPECT_FALSE(got[0].retained);
    auto threads = device_inbox.threads();
    ASSERT_EQ(threads.size(), 1u);
    EXPECT_NE(*threads.begin(), std::this_thread::get_id());
}

TEST_F(MqttClientTest, ThousandQos1MessagesArriveInOrderOnOneThread) {
    Inbox inbox;
    Client device(options_for(broker_, pki_, "device-001"));
    inbox.attach(device);
    Client controller(options_for(broker_, pki_, "controller"));
    ASSERT_OK(connect_together(device, controller));
    ASSERT_OK(device.subscribe(cmd_topic("device-001")));
    constexpr int n = 1000;
    for (int i = 0; i < n; ++i) {
        ASSERT_OK(controller.publish(cmd_topic("device-001"), std::to_string(i)));
    }
    ASSERT_TRUE(inbox.wait_messages(n, 10s)) << "received " << inbox.messages().size() << " of " << n;
    auto got = inbox.messages();
    ASSERT_EQ(got.size(), static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) ASSERT_EQ(got[static_cast<std::size_t>(i)].payload, std::to_string(i));
    auto threads = inbox.threads();
    ASSERT_EQ(threads.size(), 1u);
    EXPECT_NE(*threads.begin(), std::this_thread::get_id());
}

TEST_F(MqttClientTest, PublishAsyncDeliversEverything) {
    Inbox inbox;
    Client device(options_for(broker_, pki_, "device-001"));
    inbox.attach(device);
    Options o = options_for(broker_, pki_, "controller");
    o.max_buffered = 1000;  // paho refuses more than 100 outstanding publishes by default
    Client controller(o);
    ASSERT_OK(connect_together(device, controller));
    ASSERT_OK(device.subscribe(cmd_topic("device-001")));
    // More than paho's default buffer, but not many more than the broker's Receive Maximum
    // (max_inflight_messages): beyond it paho C 1.3.12 sends about one window per second.
    constexpr int n = 250;
    for (int i = 0; i < n; ++i) ASSERT_OK(controller.publish_async(cmd_topic("device-001"), std::to_string(i)));
    ASSERT_TRUE(inbox.wait_messages(n, 10s)) << "received " << inbox.messages().size() << " of " << n;
    auto got = inbox.messages();
    for (int i = 0; i < n; ++i) ASSERT_EQ(got[static_cast<std::size_t>(i)].payload, std::to_string(i));
}

TEST_F(MqttClientTest, RetainedMessageReachesLateSubscriber) {
    {
        Client controller(options_for(broker_, pki_, "controller"));
        ASSERT_OK(controller.connect());
        ASSERT_OK(controller.publish(kPrefix + "/devices/device-002/assignment", R"({"fleet":"plant-a"})", 1, true));
        ASSERT_OK(controller.disconnect());
    }
    Inbox inbox;
    Client device(options_for(broker_, pki_, "device-002"));
    inbox.attach(device);
    ASSERT_OK(device.connect());
    ASSERT_OK(device.subscribe(kPrefix + "/devices/device-002/assignment"));
    ASSERT_TRUE(inbox.wait_messages(1));
    auto got = inbox.messages();
    EXPECT_EQ(got[0].payload, R"({"fleet":"plant-a"})");
    EXPECT_TRUE(got[0].retained);
}

TEST_F(MqttClientTest, PersistentSessionKeepsMessagesWhileOffline) {
    Options o = options_for(broker_, pki_, "device-001");
    o.session_expiry = 60s;
    {
        Client device(o);
        ASSERT_OK(device.connect());
        ASSERT_OK(device.subscribe(cmd_topic("device-001")));
        ASSERT_OK(device.disconnect());
    }
    {
        Client controller(options_for(broker_, pki_, "controller"));
        ASSERT_OK(controller.connect());
        for (int i = 0; i < 3; ++i) {
            ASSERT_OK(controller.publish(cmd_topic("device-001"), "queued-" + std::to_string(i)));
        }
    }

    // Same client id, no subscribe() call: the broker's session holds the subscription.
    Inbox inbox;
    Client device(o);
    inbox.attach(device);
    ASSERT_OK(device.connect());
    ASSERT_TRUE(inbox.wait_messages(3)) << "received " << inbox.messages().size() << " of 3";
    auto got = inbox.messages();
    EXPECT_EQ(got[0].payload, "queued-0");
    EXPECT_EQ(got[2].payload, "queued-2");
}

TEST_F(MqttClientTest, CleanSessionDropsMessagesWhileOffline) {
    Options o = options_for(broker_, pki_, "device-001");  // session_expiry 0
    {
        Client device(o);
        ASSERT_OK(device.connect());
        ASSERT_OK(device.subscribe(cmd_topic("device-001")));
    }  // destructor disconnects
    {
        Client controller(options_for(broker_, pki_, "controller"));
        ASSERT_OK(controller.connect());
        ASSERT_OK(controller.publish(cmd_topic("device-001"), "lost"));
    }
    Inbox inbox;
    Client device(o);
    inbox.attach(device);
    ASSERT_OK(device.connect());
    EXPECT_FALSE(inbox.wait_messages(1, 300ms));
}

TEST_F(MqttClientTest, WillIsPublishedWhenTheProcessDiesButNotOnCleanDisconnect) {
    Inbox inbox;
    Client controller(options_for(broker_, pki_, "controller"));
    inbox.attach(controller);
    // A clean disconnect discards the will.
    {
        Options o = options_for(broker_, pki_, "device-003");
        o.will = ota::mqtt::Will{.topic = online_topic("device-003"), .payload = "offline"};
        Client device(o);
        ASSERT_OK(connect_together(controller, device));
        ASSERT_OK(controller.subscribe(online_topic("device-003")));
    }
    EXPECT_FALSE(inbox.wait_messages(1, 300ms)) << "a will was published after a clean disconnect";

    // A killed process: the broker sees the socket close without DISCONNECT.
    kit::TempDir tmp("mqtt-will");
    kit::Process helper({OTA_MQTT_WILL_HELPER, broker_.url(), "device-003", pki_.ca().string(),
                         pki_.cert("device-003").string(), pki_.key("device-003").string(),
                         online_topic("device-003")},
                        tmp / "helper.log");
    ASSERT_TRUE(inbox.wait_messages(1)) << helper.log();
    EXPECT_EQ(inbox.messages()[0].payload, "online");
    helper.kill(SIGKILL);
    ASSERT_TRUE(inbox.wait_messages(2)) << "no will after SIGKILL";
    auto got = inbox.messages();
    EXPECT_EQ(got[1].topic, online_topic("device-003"));
    EXPECT_EQ(got[1].payload, "offline");
}

TEST_F(MqttClientTest, ReconnectsAndResubscribesAfterBrokerRestart) {
    Inbox inbox;
    Client device(options_for(broker_, pki_, "device-001"));  // clean session: nothing kept
    inbox.attach(device);
    Inbox controller_inbox;
    Client controller(options_for(broker_, pki_, "controller"));
    controller_inbox.attach(controller);
    ASSERT_OK(connect_together(device, controller));
    ASSERT_OK(device.subscribe(cmd_topic("device-001")));
    ASSERT_TRUE(inbox.wait_connection({true}));

    broker_.restart();
    ASSERT_TRUE(inbox.wait_connection({true, false, true}, 10s))
        << "connection events: " << ::testing::PrintToString(inbox.connection());
    EXPECT_TRUE(device.connected());
    ASSERT_TRUE(controller_inbox.wait_connection({true, false, true}, 10s));

    ASSERT_OK(controller.publish(cmd_topic("device-001"), "after-restart"));
    ASSERT_TRUE(inbox.wait_messages(1)) << "the subscription was not renewed";
    EXPECT_EQ(inbox.messages()[0].payload, "after-restart");
    // And publishing from the reconnected client works.
    ASSERT_OK(device.publish(status_topic("device-001", "app"), "back"));
}

TEST_F(MqttClientTest, PersistentSessionSurvivesBrokerRestartWithoutRetainedRepeats) {
    const std::string topic = kPrefix + "/devices/device-002/assignment";
    Options o = options_for(broker_, pki_, "device-002");
    o.session_expiry = 60s;
    Inbox inbox;
    Client device(o);
    inbox.attach(device);
    Inbox controller_inbox;
    Client controller(options_for(broker_, pki_, "controller"));
    controller_inbox.attach(controller);
    ASSERT_OK(connect_together(device, controller));
    ASSERT_OK(controller.publish(topic, "A1", 1, true));
    ASSERT_OK(device.subscribe(topic));
    ASSERT_TRUE(inbox.wait_messages(1));
    EXPECT_TRUE(inbox.messages()[0].retained);
    // QoS 1 may deliver A1 again if the broker restarts before it has the device's PUBACK. The
    // broker handles a client's packets in order, so once a later publish of the device is
    // acknowledged, the PUBACK for A1 has been processed.
    ASSERT_OK(device.publish(kPrefix + "/devices/device-002/status/probe", "ping", 1, false));

    broker_.restart();  // the broker keeps the session (persistence) and the retained message
    ASSERT_TRUE(inbox.wait_connection({true, false, true}, 10s));
    ASSERT_TRUE(controller_inbox.wait_connection({true, false, true}, 10s));
    // The renewed subscription asks for retained messages only if it is new: no second A1.
    ASSERT_OK(controller.publish(topic, "A2", 1, true));
    ASSERT_TRUE(inbox.wait_messages(2));
    EXPECT_FALSE(inbox.wait_messages(3, 300ms));
    auto got = inbox.messages();
    EXPECT_EQ(got[0].payload, "A1");
    EXPECT_EQ(got[1].payload, "A2");
}

TEST_F(MqttClientTest, SubscribeBeforeConnectIsRememberedAndMadeOnConnect) {
    Inbox inbox;
    Client device(options_for(broker_, pki_, "device-001"));
    inbox.attach(device);
    auto early = device.subscribe(cmd_topic("device-001"));
    ASSERT_FALSE(early.has_value());
    EXPECT_EQ(early.error().code, ErrorCode::mqtt_subscribe_failed);
    EXPECT_NE(early.error().message.find("not connected"), std::string::npos) << early.error().message;

    Client controller(options_for(broker_, pki_, "controller"));
    ASSERT_OK(connect_together(device, controller));
    ASSERT_OK(controller.publish(cmd_topic("device-001"), "hello"));
    ASSERT_TRUE(inbox.wait_messages(1));
    EXPECT_EQ(inbox.messages()[0].payload, "hello");
}

TEST_F(MqttClientTest, DestructorDoesNotHangWhileReconnecting) {
    Inbox inbox;
    auto device = std::make_unique<Client>(options_for(broker_, pki_, "device-001"));
    inbox.attach(*device);
    ASSERT_OK(device->connect());
    broker_.stop();
    ASSERT_TRUE(inbox.wait_connection({true, false}));
    std::this_thread::sleep_for(200ms);  // a few failed attempts
    auto start = Clock::now();
    device.reset();
    EXPECT_LT(Clock::now() - start, 2s);
}

TEST_F(MqttClientTest, AclDeniedPublishIsReportedAndNotDelivered) {
    Inbox inbox;
    Client controller(options_for(broker_, pki_, "controller"));
    inbox.attach(controller);
    Client device(options_for(broker_, pki_, "device-001"));
    ASSERT_OK(connect_together(controller, device));
    ASSERT_OK(controller.subscribe(kPrefix + "/releases/#"));
    // Mosquitto 2.0.11 answers an ACL-denied QoS 1 publish over MQTT 5 with PUBACK 0x87.
    auto r = device.publish(kPrefix + "/releases/x/stable", "{}");
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, ErrorCode::mqtt_publish_failed);
    EXPECT_NE(r.error().message.find("Not authorized"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("ota/v1/releases/x/stable"), std::string::npos) << r.error().message;
    EXPECT_FALSE(inbox.wait_messages(1, 300ms));
}

TEST_F(MqttClientTest, ConnectToPortWithoutBrokerFailsReadably) {
    Options o = options_for(broker_, pki_, "device-001");
    o.broker = "mqtts://127.0.0.1:" + std::to_string(kit::free_port());
    o.connect_timeout = 2s;
    Client device(o);
    auto start = Clock::now();
    auto r = device.connect();
    EXPECT_LT(Clock::now() - start, 3s);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, ErrorCode::mqtt_connect_failed);
    EXPECT_NE(r.error().message.find(o.broker), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("connection refused"), std::string::npos) << r.error().message;
    EXPECT_FALSE(device.connected());
}

TEST_F(MqttClientTest, ConnectWithWrongCaFailsReadably) {
    kit::TempDir tmp("mqtt-wrong-ca");
    auto made = kit::run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                          "-nodes", "-keyout", (tmp / "other-ca.key").string(), "-out",
                          (tmp / "other-ca.pem").string(), "-days", "2", "-subj", "/CN=Some Other CA"});
    ASSERT_EQ(made.exit_code, 0) << made.err;
    Options o = options_for(broker_, pki_, "device-001");
    o.cafile = (tmp / "other-ca.pem").string();
    Client device(o);
    auto r = device.connect();
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, ErrorCode::mqtt_connect_failed);
    EXPECT_NE(r.error().message.find("TLS handshake failed"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("check the CA file"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(o.broker), std::string::npos) << r.error().message;
}

TEST_F(MqttClientTest, MissingKeyFileIsNamed) {
    Options o = options_for(broker_, pki_, "device-001");
    o.keyfile = "/nonexistent/device-001.key";
    Client device(o);
    auto r = device.connect();
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, ErrorCode::mqtt_connect_failed);
    EXPECT_NE(r.error().message.find("/nonexistent/device-001.key"), std::string::npos) << r.error().message;
}

TEST_F(MqttClientTest, WritesNoFilesIntoTheWorkingDirectory) {
    kit::TempDir tmp("mqtt-cwd");
    struct RestoreCwd {
        fs::path dir = fs::current_path();
        ~RestoreCwd() { fs::current_path(dir); }
    } restore;
    fs::current_path(tmp.path());
    {
        Options o = options_for(broker_, pki_, "device-001");
        o.session_expiry = 10s;
        Client device(o);
        ASSERT_OK(device.connect());
        ASSERT_OK(device.subscribe(cmd_topic("device-001")));
        ASSERT_OK(device.publish(status_topic("device-001", "app"), "x"));
        ASSERT_OK(device.disconnect());
    }
    EXPECT_TRUE(fs::is_empty(tmp.path()));
}

}  // namespace
