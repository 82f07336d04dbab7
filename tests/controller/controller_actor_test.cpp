// Who did it: the actor of a control request is the broker-authenticated identity, read by the
// controller from the request topic control/request/<user> (the ACL lets each identity write only
// its own). Console logins (alice: operator, victor: viewer) on the broker's console listener,
// ota-ctl over TLS with its certificate, a device; the audit log as ota-ctl shows it.
#include <atomic>
#include <mutex>

#include "controller_fixture.hpp"
#include "ota/mqtt.hpp"

namespace {

const std::string R1 = "plant.app.1.1.0";
constexpr auto kNothing = 1s;  // how long a client that must receive nothing listens

// An ota::mqtt client that keeps what it receives.
struct Client {
    std::unique_ptr<ota::mqtt::Client> mqtt;
    std::mutex mu;
    std::vector<json> received;
    std::vector<json> messages() {
        std::lock_guard lock(mu);
        return received;
    }
};

std::unique_ptr<Client> connect(ota::mqtt::Options o) {
    static std::atomic<int> n{0};
    o.client_id = "actor-test-" + std::to_string(++n);
    o.connect_timeout = 5s;
    auto c = std::make_unique<Client>();
    c->mqtt = std::make_unique<ota::mqtt::Client>(o);
    c->mqtt->on_message([p = c.get()](const ota::mqtt::Message& m) {
        std::lock_guard lock(p->mu);
        p->received.push_back(json::parse(m.payload, nullptr, false));
    });
    auto r = c->mqtt->connect();
    EXPECT_TRUE(r) << o.broker << " as " << o.username << ": " << (r ? "" : r.error().describe());
    return c;
}

}  // namespace

class ControllerActorTest : public ControllerTest {
protected:
    std::unique_ptr<Client> login(const std::string& user, const std::string& password) {
        ota::mqtt::Options o;
        o.broker = broker->console_url();
        o.username = user;
        o.password = password;
        return connect(o);
    }
    // A rollout waiting for approval of its second wave (nothing changes until someone acts).
    void waiting_rollout() {
        start_controller(config(three_waves({}, {{"approval", true}})));
        start_devices(4);
        publish_release("app", "1.1.0");
        ASSERT_TRUE(wait_wave(R1, 1u, "waiting_approval")) << controller->log();
    }
    json audit() const { return ctl_json({"audit", "--rollout", R1, "--limit", "1000"}); }
    static std::vector<std::string> actors(const json& log, const std::string& action) {
        std::vector<std::string> out;
        for (const auto& a : log)
            if (a.value("action", "") == action) out.push_back(a.value("actor", ""));
        return out;
    }
    // Send a request as `c` on control/request/<topic_user>; the broker's answer ("" = accepted).
    static std::string request(Client& c, const std::string& topic_user, const json& req) {
        auto r = c.mqtt->publish("ota/v1/control/request/" + topic_user, req.dump(), 1, false, 5s);
        return r ? "" : std::string(ota::to_string(r.error().code));
    }
};

TEST_F(ControllerActorTest, TheAuditLogShowsTheTopicsUserEvenWhenThePayloadClaimsAnother) {
    waiting_rollout();
    auto alice = login("alice", alice_password);
    ASSERT_TRUE(alice->mqtt->subscribe("ota/v1/control/reply/alice-1", 1));
    ASSERT_EQ(request(*alice, "alice", {{"id", "p1"}, {"cmd", "pause"}, {"rollout", R1}, {"actor", "mallory"},
                                        {"reply_to", "ota/v1/control/reply/alice-1"}}),
              "");
    ASSERT_TRUE(kit::wait_until([&] { return !alice->messages().empty(); }, 10s)) << controller->log();
    const auto reply = alice->messages().front();
    EXPECT_EQ(reply["id"], "p1");
    EXPECT_EQ(reply["ok"], true) << reply.dump();
    EXPECT_EQ(ctl_json({"status", R1})["state"], "paused");
    const auto log = audit();
    EXPECT_EQ(actors(log, "paused"), std::vector<std::string>{"alice"}) << log.dump();
    for (const auto& a : log) EXPECT_NE(a.value("actor", ""), "mallory");
    // ota-ctl's table shows it in the ACTOR column as well.
    const auto table = ctl({"audit", "--rollout", R1});
    ASSERT_EQ(table.exit_code, 0) << table.err;
    EXPECT_NE(table.out.find("alice"), std::string::npos) << table.out;
    EXPECT_EQ(table.out.find("mallory"), std::string::npos) << table.out;
}

TEST_F(ControllerActorTest, AViewersRequestIsRefusedByTheBrokerAndTheControllerCarriesNothingOut) {
    waiting_rollout();
    auto victor = login("victor", victor_password);
    ASSERT_TRUE(victor->mqtt->subscribe("ota/v1/control/reply/victor-1", 1));
    const json abort{{"id", "v1"}, {"cmd", "abort"}, {"rollout", R1}, {"reply_to", "ota/v1/control/reply/victor-1"}};
    for (const std::string topic_user : {"victor", "alice", "operator"})
        EXPECT_EQ(request(*victor, topic_user, abort), "mqtt_publish_failed") << topic_user;
    // The old topic is refused as well (and no longer read by the controller).
    auto old = victor->mqtt->publish("ota/v1/control/request", abort.dump(), 1, false, 5s);
    EXPECT_FALSE(old);
    EXPECT_FALSE(kit::wait_until([&] { return !victor->messages().empty(); }, kNothing));
    EXPECT_EQ(ctl_json({"status", R1})["state"], "active");
    EXPECT_TRUE(actors(audit(), "aborted").empty());
    // The same request from alice is carried out, and recorded as hers.
    auto alice = login("alice", alice_password);
    ASSERT_EQ(request(*alice, "alice", abort), "");
    EXPECT_TRUE(wait_state(R1, "aborted", 10s));
    EXPECT_EQ(actors(audit(), "aborted"), std::vector<std::string>{"alice"});
}

TEST_F(ControllerActorTest, ARequestFromADeviceCertificateIsRefusedByTheBroker) {
    waiting_rollout();
    ota::mqtt::Options o;
    o.broker = broker->url();
    o.cafile = pki.ca().string();
    o.certfile = pki.cert(dev(1)).string();
    o.keyfile = pki.key(dev(1)).string();
    auto device = connect(o);
    const json abort{{"id", "d1"}, {"cmd", "abort"}, {"rollout", R1}, {"actor", "operator"},
                     {"reply_to", "ota/v1/control/reply/d1"}};
    EXPECT_EQ(request(*device, dev(1), abort), "mqtt_publish_failed");
    EXPECT_EQ(request(*device, "operator", abort), "mqtt_publish_failed");
    EXPECT_EQ(ctl_json({"status", R1})["state"], "active");
    // ota-ctl with a device's certificate publishes on control/request/<device id>: refused, and
    // ota-ctl says so.
    auto as_device = ctl({"abort", R1}, dev(1));
    EXPECT_EQ(as_device.exit_code, 1);
    EXPECT_NE(as_device.err.find("mqtt_publish_failed"), std::string::npos) << as_device.err;
    EXPECT_NE(as_device.err.find("control/request/" + dev(1)), std::string::npos) << as_device.err;
    EXPECT_EQ(ctl_json({"status", R1})["state"], "active");
}

TEST_F(ControllerActorTest, OtaCtlOverTlsIsRecordedAsItsCertificatesCn) {
    waiting_rollout();
    // An old settings file with "actor" still works: the setting is ignored, with a warning.
    kit::write_file(dir / "ctl.json", json{{"actor", "mallory"}}.dump());
    auto r = ctl_as(pki.cert("operator"), pki.key("operator"), {"--config", (dir / "ctl.json").string(), "approve", R1});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("warning: setting \"actor\" ignored"), std::string::npos) << r.err;
    const auto log = audit();
    EXPECT_EQ(actors(log, "approved"), std::vector<std::string>{"operator"}) << log.dump();
    for (const auto& a : log) EXPECT_NE(a.value("actor", ""), "mallory");
    // --actor is gone (a usage error), and a certificate that cannot be read is named.
    auto flag = ctl({"--actor", "alice", "pause", R1});
    EXPECT_EQ(flag.exit_code, 2);
    auto missing = ctl_as(dir / "nope.pem", pki.key("operator"), {"pause", R1});
    EXPECT_EQ(missing.exit_code, 2);
    EXPECT_NE(missing.err.find("ota-ctl: io_error: --cert: certificate " + (dir / "nope.pem").string()), std::string::npos)
        << missing.err;
    kit::write_file(dir / "garbage.pem", "not a certificate\n");
    auto garbage = ctl_as(dir / "garbage.pem", pki.key("operator"), {"pause", R1});
    EXPECT_EQ(garbage.exit_code, 2);
    EXPECT_NE(garbage.err.find("no PEM certificate"), std::string::npos) << garbage.err;
    EXPECT_TRUE(actors(audit(), "paused").empty());
}
