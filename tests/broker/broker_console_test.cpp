// The console listener (render-broker-config --console-listener) and the console users' ACL blocks
// (scripts/console-user) against a real Mosquitto: user name + password logins on a plain-TCP
// loopback listener; operators write only control/request/<own name>, viewers nothing; the TLS
// listener still takes the user name from the certificate and ignores any password. Refusals are
// seen as the broker's MQTT 5 answers (CONNACK 0x86, PUBACK 0x87) through ota::mqtt, deliveries by
// what a subscriber receives.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "kit.hpp"
#include "ota/mqtt.hpp"

namespace {

namespace kit = ota::testkit;
using namespace std::chrono_literals;
using Messages = std::vector<std::pair<std::string, std::string>>;

constexpr auto kNothing = 1s;  // how long a subscriber that must receive nothing listens

class BrokerConsole : public ::testing::Test {
protected:
    static inline std::unique_ptr<kit::TempDir> sim_dir;
    static inline std::unique_ptr<kit::Broker> broker;
    static inline std::string setup_error;

    static void SetUpTestSuite() {
        try {
            // A simulated device in the sim listener's password file: the kit merges it with the
            // console users into one file (password_file is global).
            sim_dir = std::make_unique<kit::TempDir>("ota-console-sim");
            auto made = kit::run({"mosquitto_passwd", "-c", "-b", (*sim_dir / "passwd").string(), "device-00001", "sim-pw"}, 10s);
            if (made.exit_code != 0) throw std::runtime_error("mosquitto_passwd: " + made.err);
            broker = std::make_unique<kit::Broker>(
                kit::shared_pki(3), kit::BrokerOptions{.password_file = *sim_dir / "passwd",
                                                       .console_users = {{"alice", "pw-a", kit::ConsoleRole::operator_},
                                                                         {"bob", "pw-b", kit::ConsoleRole::operator_},
                                                                         {"victor", "pw-v", kit::ConsoleRole::viewer}}});
        } catch (const std::exception& e) {
            setup_error = e.what();
        }
    }
    static void TearDownTestSuite() {
        broker.reset();
        sim_dir.reset();
    }
    void SetUp() override { ASSERT_TRUE(broker) << setup_error; }

    const kit::Pki& pki = kit::shared_pki(3);

    // A connected ota::mqtt client: a console login (url = console_url()), or a certificate
    // identity over TLS (`cert_of` non-empty), optionally also sending a user name and password.
    struct Client {
        std::unique_ptr<ota::mqtt::Client> mqtt;
        std::mutex mu;
        Messages received;
        Messages messages() {
            std::lock_guard lock(mu);
            return received;
        }
    };
    std::unique_ptr<Client> client(const std::string& url, const std::string& user, const std::string& password,
                                   const std::string& cert_of = "") {
        static std::atomic<int> n{0};
        ota::mqtt::Options o;
        o.broker = url;
        o.client_id = "console-test-" + std::to_string(++n);
        o.username = user;
        o.password = password;
        if (!cert_of.empty()) {
            o.cafile = pki.ca().string();
            o.certfile = pki.cert(cert_of).string();
            o.keyfile = pki.key(cert_of).string();
        }
        o.connect_timeout = 5s;
        auto c = std::make_unique<Client>();
        c->mqtt = std::make_unique<ota::mqtt::Client>(o);
        c->mqtt->on_message([p = c.get()](const ota::mqtt::Message& m) {
            std::lock_guard lock(p->mu);
            p->received.emplace_back(m.topic, m.payload);
        });
        return c;
    }
    std::unique_ptr<Client> login(const std::string& user, const std::string& password) {
        auto c = client(broker->console_url(), user, password);
        auto r = c->mqtt->connect();
        EXPECT_TRUE(r) << user << ": " << (r ? "" : r.error().describe()) << "\n" << broker->log();
        return c;
    }
    // The broker's answer to a QoS 1 publish: "" when accepted, else the error code's name.
    static std::string publish(Client& c, const std::string& topic, const std::string& payload = "x") {
        auto r = c.mqtt->publish(topic, payload, 1, false, 5s);
        if (r) return "";
        EXPECT_NE(r.error().message.find("Not authorized"), std::string::npos) << r.error().describe();
        return std::string(ota::to_string(r.error().code));
    }
    std::unique_ptr<kit::Subscriber> subscribe(const std::string& who, const std::string& filter) {
        auto s = std::make_unique<kit::Subscriber>(*broker, pki, who, filter);
        EXPECT_TRUE(s->subscribed()) << who << " on " << filter << ":\n" << s->log();
        return s;
    }
};

TEST_F(BrokerConsole, AWrongOrMissingPasswordIsRefusedOnTheConsoleListener) {
    for (const auto& [user, password] : std::vector<std::pair<std::string, std::string>>{
             {"alice", "wrong"}, {"alice", ""}, {"mallory", "pw-a"}, {"operator", "x"}}) {
        auto c = client(broker->console_url(), user, password);
        auto r = c->mqtt->connect();
        ASSERT_FALSE(r) << user << " / '" << password << "' was let in";
        EXPECT_EQ(r.error().code, ota::ErrorCode::mqtt_connect_failed);
        EXPECT_NE(r.error().message.find("the broker refused the connection: Not authorized (0x87) (check the user name and password)"),
                  std::string::npos)
            << r.error().describe();
    }
    // The right password gets in, and so does the simulated device of the merged password file.
    auto alice = login("alice", "pw-a");
    EXPECT_TRUE(alice->mqtt->connected());
    auto device = client("tcp://127.0.0.1:" + std::to_string(broker->sim_port()), "device-00001", "sim-pw");
    auto r = device->mqtt->connect();
    EXPECT_TRUE(r) << (r ? "" : r.error().describe());
}

TEST_F(BrokerConsole, TheConsoleListenerIsBoundToLoopbackOnly) {
    const auto conf = kit::run({(kit::source_dir() / "scripts" / "render-broker-config").string(), "--port", "8883", "--certs", "/c",
                                "--data", "/d", "--acl", "/a", "--bind", "0.0.0.0", "--console-listener", "1884",
                                "--password-file", "/p"},
                               10s);
    ASSERT_EQ(conf.exit_code, 0) << conf.err;
    EXPECT_NE(conf.out.find("\nlistener 1884 127.0.0.1\n"), std::string::npos) << conf.out;
    EXPECT_NE(conf.out.find("\npassword_file /p\n"), std::string::npos);
    // Without a password file there is no console listener to render.
    const auto bad = kit::run({(kit::source_dir() / "scripts" / "render-broker-config").string(), "--port", "1", "--certs", "/c",
                               "--data", "/d", "--acl", "/a", "--console-listener", "1884"},
                              10s);
    EXPECT_EQ(bad.exit_code, 2);
    EXPECT_NE(bad.err.find("--password-file"), std::string::npos) << bad.err;
}

TEST_F(BrokerConsole, AViewerReadsRetainedStateButCannotWriteAnyControlRequest) {
    auto set = kit::mosquitto_pub(*broker, pki, "controller", "ota/v1/rollouts/r-view", "{\"state\":\"active\"}", true);
    ASSERT_EQ(set.exit_code, 0) << set.err;
    auto controller = subscribe("controller", "ota/v1/control/request/#");
    auto victor = login("victor", "pw-v");
    ASSERT_TRUE(victor->mqtt->subscribe("ota/v1/rollouts/#", 1));
    ASSERT_TRUE(kit::wait_until([&] { return !victor->messages().empty(); }, 5s));
    EXPECT_EQ(victor->messages(), (Messages{{"ota/v1/rollouts/r-view", "{\"state\":\"active\"}"}}));
    for (const std::string user : {"victor", "alice", "operator"})
        EXPECT_EQ(publish(*victor, "ota/v1/control/request/" + user), "mqtt_publish_failed") << user;
    EXPECT_EQ(publish(*victor, "ota/v1/control/request"), "mqtt_publish_failed");
    EXPECT_EQ(publish(*victor, "ota/v1/rollouts/r-view", "forged"), "mqtt_publish_failed");
    EXPECT_TRUE(controller->wait(1, kNothing).messages.empty());
}

// Read-only requests (the audit log of History) go on control/query/<user>: a viewer may write
// its own and no other's; a device none.
TEST_F(BrokerConsole, EachConsoleUserWritesOnlyItsOwnQueryTopic) {
    auto controller = subscribe("controller", "ota/v1/control/query/#");
    auto victor = login("victor", "pw-v");
    auto alice = login("alice", "pw-a");
    EXPECT_EQ(publish(*victor, "ota/v1/control/query/victor", "from-victor"), "");
    EXPECT_EQ(publish(*alice, "ota/v1/control/query/alice", "from-alice"), "");
    for (const std::string user : {"alice", "operator", "controller"})
        EXPECT_EQ(publish(*victor, "ota/v1/control/query/" + user), "mqtt_publish_failed") << user;
    EXPECT_EQ(publish(*alice, "ota/v1/control/query/victor"), "mqtt_publish_failed");
    auto device = client(broker->url(), "", "", "device-001");
    ASSERT_TRUE(device->mqtt->connect());
    EXPECT_EQ(publish(*device, "ota/v1/control/query/device-001"), "mqtt_publish_failed");
    auto got = controller->wait(3, kNothing).messages;
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, (Messages{{"ota/v1/control/query/alice", "from-alice"}, {"ota/v1/control/query/victor", "from-victor"}}));
}

TEST_F(BrokerConsole, AnOperatorWritesOnlyItsOwnControlRequestTopic) {
    auto controller = subscribe("controller", "ota/v1/control/request/#");
    auto alice = login("alice", "pw-a");
    EXPECT_EQ(publish(*alice, "ota/v1/control/request/alice", "from-alice"), "");
    EXPECT_EQ(publish(*alice, "ota/v1/control/request/bob", "as-bob"), "mqtt_publish_failed");
    EXPECT_EQ(publish(*alice, "ota/v1/control/request/operator", "as-operator"), "mqtt_publish_failed");
    EXPECT_EQ(publish(*alice, "ota/v1/control/request", "old-topic"), "mqtt_publish_failed");
    EXPECT_EQ(publish(*alice, "ota/v1/devices/device-001/cmd", "cmd"), "mqtt_publish_failed");
    EXPECT_EQ(publish(*alice, "ota/v1/control/reply/x", "reply"), "mqtt_publish_failed");
    EXPECT_EQ(controller->wait(2, kNothing).messages, (Messages{{"ota/v1/control/request/alice", "from-alice"}}));
}

TEST_F(BrokerConsole, AConsoleUserCannotPoseAsADeviceOfItsName) {
    auto watcher = subscribe("operator", "ota/v1/devices/#");
    for (const auto& [user, password] : std::vector<std::pair<std::string, std::string>>{{"alice", "pw-a"}, {"victor", "pw-v"}}) {
        auto c = login(user, password);
        for (const std::string leaf : {"status/x", "inventory", "online"})
            EXPECT_EQ(publish(*c, "ota/v1/devices/" + user + "/" + leaf), "mqtt_publish_failed") << user << " " << leaf;
    }
    EXPECT_TRUE(watcher->wait(1, kNothing).messages.empty());
}

TEST_F(BrokerConsole, ADeviceCannotWriteAControlRequestTopicOfItsName) {
    auto controller = subscribe("controller", "ota/v1/control/request/#");
    // A real device over TLS (certificate CN device-001) ...
    auto device = client(broker->url(), "", "", "device-001");
    ASSERT_TRUE(device->mqtt->connect());
    EXPECT_EQ(publish(*device, "ota/v1/control/request/device-001"), "mqtt_publish_failed");
    EXPECT_EQ(publish(*device, "ota/v1/devices/device-001/status/x", "{}"), "");  // its own subtree still works
    // ... and a simulated one on the sim listener (password).
    auto sim = client("tcp://127.0.0.1:" + std::to_string(broker->sim_port()), "device-00001", "sim-pw");
    ASSERT_TRUE(sim->mqtt->connect());
    EXPECT_EQ(publish(*sim, "ota/v1/control/request/device-00001"), "mqtt_publish_failed");
    EXPECT_TRUE(controller->wait(1, kNothing).messages.empty());
}

TEST_F(BrokerConsole, TheTlsListenerTakesTheCertificatesIdentityAndIgnoresAUserNameAndPassword) {
    auto controller = subscribe("controller", "ota/v1/control/request/#");
    // device-001's certificate claiming to be alice with a wrong password: let in, as device-001.
    auto c = client(broker->url(), "alice", "wrong", "device-001");
    auto r = c->mqtt->connect();
    ASSERT_TRUE(r) << (r ? "" : r.error().describe());
    EXPECT_EQ(publish(*c, "ota/v1/control/request/alice"), "mqtt_publish_failed");
    EXPECT_EQ(publish(*c, "ota/v1/devices/device-001/status/x", "{}"), "");
    // A console login cannot reach the TLS listener without a certificate.
    auto plain = client(broker->url(), "alice", "pw-a");
    EXPECT_FALSE(plain->mqtt->connect());
    EXPECT_TRUE(controller->wait(1, kNothing).messages.empty());
}

// What broker-config/README.md tells operators to do: console-user, render again, SIGHUP.
TEST_F(BrokerConsole, UsersAddedOrRemovedTakeEffectAtTheReload) {
    kit::Broker own(pki, kit::BrokerOptions{.console_users = {{"alice", "pw-a", kit::ConsoleRole::operator_},
                                                             {"victor", "pw-v", kit::ConsoleRole::viewer}}});
    const auto can_login = [&](const std::string& user, const std::string& password) {
        return static_cast<bool>(client(own.console_url(), user, password)->mqtt->connect());
    };
    ASSERT_TRUE(can_login("victor", "pw-v"));
    ASSERT_FALSE(can_login("carol", "pw-c"));
    // victor removed, carol added as an operator, alice's password changed; the broker is not restarted.
    const int pid = own.pid();
    own.set_console_users({{"alice", "pw-a2", kit::ConsoleRole::operator_}, {"carol", "pw-c", kit::ConsoleRole::operator_}});
    EXPECT_EQ(own.pid(), pid);
    EXPECT_FALSE(can_login("victor", "pw-v"));
    EXPECT_FALSE(can_login("alice", "pw-a"));
    EXPECT_TRUE(can_login("alice", "pw-a2"));
    auto carol = client(own.console_url(), "carol", "pw-c");
    ASSERT_TRUE(carol->mqtt->connect());
    EXPECT_EQ(publish(*carol, "ota/v1/control/request/carol"), "");
    EXPECT_EQ(publish(*carol, "ota/v1/control/request/alice"), "mqtt_publish_failed");
}

// scripts/console-user on its own files: the names it refuses, and the blocks it writes.
TEST(ConsoleUserScript, RefusesBadNamesServiceIdentitiesAndDevicesOfThePasswordFile) {
    kit::TempDir dir("ota-console-user");
    const auto tool = (kit::source_dir() / "scripts" / "console-user").string();
    const auto run = [&](std::vector<std::string> args, const std::string& password = "pw") {
        std::vector<std::string> argv{tool, "--password-file", (dir / "passwd").string(), "--acl-fragment", (dir / "console.acl").string()};
        argv.insert(argv.end(), args.begin(), args.end());
        return kit::run(argv, 30s, {}, password + "\n");
    };
    ASSERT_EQ(kit::run({"mosquitto_passwd", "-c", "-b", (dir / "passwd").string(), "device-007", "x"}, 10s).exit_code, 0);
    for (const std::string& name : std::vector<std::string>{"ci", "controller", "operator", "a/b", "a+", "#", "", std::string(65, 'a'), "device-007"}) {
        auto r = run({"add", name, "--role", "viewer"});
        EXPECT_NE(r.exit_code, 0) << "'" << name << "' accepted";
        EXPECT_NE(r.err.find("console-user: "), std::string::npos) << r.err;
    }
    EXPECT_EQ(run({"add", "carol", "--role", "admin"}).exit_code, 2);
    EXPECT_NE(run({"add", "carol", "--role", "viewer"}, "").exit_code, 0);  // empty password
    ASSERT_EQ(run({"add", "carol", "--role", "operator"}).exit_code, 0);
    ASSERT_EQ(run({"add", "dave.x", "--role", "viewer"}).exit_code, 0);
    EXPECT_EQ(run({"list"}).out, "carol operator\ndave.x viewer\n");
    const auto acl = kit::read_file(dir / "console.acl");
    EXPECT_NE(acl.find("user carol\ntopic read ota/v1/#\ntopic write ota/v1/control/request/carol\n"
                       "topic write ota/v1/control/query/carol\ntopic deny ota/v1/devices/carol/#\n"),
              std::string::npos) << acl;
    EXPECT_NE(acl.find("user dave.x\ntopic read ota/v1/#\ntopic write ota/v1/control/query/dave.x\n"
                       "topic deny ota/v1/devices/dave.x/#\n"),
              std::string::npos) << acl;
    // Re-adding changes the role; removing takes the block and the password away.
    ASSERT_EQ(run({"add", "carol", "--role", "viewer"}).exit_code, 0);
    EXPECT_EQ(kit::read_file(dir / "console.acl").find("control/request/carol"), std::string::npos);
    ASSERT_EQ(run({"remove", "dave.x"}).exit_code, 0);
    EXPECT_EQ(run({"list"}).out, "carol viewer\n");
    const auto passwd = kit::read_file(dir / "passwd");
    EXPECT_EQ(passwd.find("dave.x:"), std::string::npos);
    EXPECT_NE(passwd.find("carol:$7$"), std::string::npos);  // hashed, never the password itself
    EXPECT_NE(passwd.find("device-007:"), std::string::npos);
    EXPECT_NE(run({"remove", "nobody"}).exit_code, 0);
}

}  // namespace
