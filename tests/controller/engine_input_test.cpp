// What devices, operators and anyone else can send the controller's engine that is not what the
// protocol says, and what outages and restarts must not do to a rollout: no input stops the engine
// (each is counted and dropped, and the rollout goes on), silence is judged only on what the
// controller could have seen, and a restart republishes the wave messages it had published.
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <string>

#include "engine_rig.hpp"
#include "ota/json.hpp"
#include "ota/log.hpp"

namespace kit = ota::testkit;
using json = nlohmann::json;
using namespace ota::controller;
using namespace ota::controller::testing;
using namespace std::chrono_literals;

namespace {

std::uint64_t counted(const EngineRig& rig, const std::string& result) {
    const auto& m = rig.engine->counters().by_result;
    const auto it = m.find(result);
    return it == m.end() ? 0 : it->second;
}

// The last payload published on each topic (what a retained topic holds afterwards).
std::map<std::string, json> last_by_topic(const std::vector<Outgoing>& out) {
    std::map<std::string, json> last;
    for (const auto& o : out) last[o.topic] = json::parse(o.payload);
    return last;
}

const std::string wave_topic(const std::string& wave) { return "ota/v1/fleets/plant/waves/" + wave + "/app"; }

}  // namespace

// The three payloads a user found (each made the controller exit, and again at every restart since
// the topics are retained), and the rest of their class: numbers out of range, wrong types deep
// inside, invalid UTF-8, nesting, on every topic the controller reads. None may escape
// on_message; each is counted; afterwards the rollout still moves on good statuses.
TEST(EngineInput, HostileMessagesOnEveryTopicAreCountedAndDroppedAndTheRolloutGoesOn) {
    EngineRig rig(json::array({{{"name", "canary"}, {"devices", {dev(1), dev(2)}}, {"max_failures", 1}},
                               {{"name", "broad"}}}));
    for (int i = 1; i <= 3; ++i) rig.device(dev(i), "1.0.0");
    rig.release("1.1.0");
    const std::string id = "plant.app.1.1.0";
    rig.status(dev(1), 1, "downloading", id);  // a member with a known sequence number
    const std::string status = "ota/v1/devices/" + dev(1) + "/status/app";
    const std::string inventory = "ota/v1/devices/" + dev(1) + "/inventory";
    const std::string online = "ota/v1/devices/" + dev(1) + "/online";
    const std::string control = "ota/v1/control/request/op";
    const std::string release = "ota/v1/releases/app/stable";
    const std::string bad_utf8 = std::string("{\"device\":\"") + dev(1) + "\",\"seq\":9,\"stage\":\"fa\xff\xfeiled\"}";
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    const std::vector<std::pair<std::string, std::string>> hostile = {
        // 1. a number that overflows a double
        {status, R"({"device":"device-001","seq":2,"stage":"downloading","progress":1e400,"rollout":"plant.app.1.1.0"})"},
        // 2. error.code that is not a string, from a rollout member
        {status, R"({"device":"device-001","seq":3,"stage":"failed","error":{"code":5},"rollout":"plant.app.1.1.0"})"},
        // 3. bytes that are not UTF-8
        {status, bad_utf8},
        {status, "\xff\xfe\xfd"},
        // the rest of the class
        {status, R"({"device":"device-001","seq":"4","stage":"failed","rollout":"plant.app.1.1.0"})"},
        {status, R"({"device":"device-001","seq":1e19,"stage":"failed","rollout":"plant.app.1.1.0"})"},
        {status, R"({"device":"device-001","seq":18446744073709551615,"stage":"failed","rollout":"plant.app.1.1.0"})"},
        {status, R"({"device":"device-001","seq":-5,"stage":"failed","rollout":"plant.app.1.1.0"})"},
        {status, R"({"device":"device-001","seq":5,"stage":["failed"],"rollout":"plant.app.1.1.0"})"},
        {status, R"({"device":"device-001","seq":6,"stage":"failed","rollout":{"id":1}})"},
        {status, R"({"device":7,"seq":7,"stage":"failed","rollout":"plant.app.1.1.0"})"},
        {status, R"({"device":"device-001","seq":8,"stage":"failed","error":"boom","rollout":"plant.app.1.1.0"})"},
        {status, R"({"device":"device-001","seq":9,"stage":"failed","error":{"code":{"deep":[1,2]}},"rollout":"plant.app.1.1.0"})"},
        {status, R"({"device":"device-001","seq":10,"stage":"downloading","progress":"half","rollout":"plant.app.1.1.0"})"},
        {status, R"([1,2,3])"},
        {status, R"("just a string")"},
        {status, "null"},
        {status, deep},
        {inventory, R"({"components":{"app":1e400}})"},
        {inventory, R"({"components":{"app":{"v":"1"}}})"},
        {inventory, R"({"components":[1]})"},
        {inventory, R"({"labels":{"site":{"deep":1}},"components":{"app":"1.0.0"}})"},
        {inventory, R"({"platform":5,"components":{"app":"1.0.0"}})"},
        {inventory, "{\"platform\":\"\xc0\xaf\",\"components\":{}}"},
        {inventory, deep},
        {online, R"({"online":"yes"})"},
        {online, R"([true])"},
        {online, R"({"online":true,"agent_version":1e400})"},
        {online, R"({"online":true,"agent_version":{"x":1}})"},
        {online, "\xff"},
        {control, R"({"id":1,"cmd":5,"actor":[],"reply_to":7})"},
        {control, R"({"id":"a","cmd":"audit","limit":"many","reply_to":"ota/v1/control/reply/t"})"},
        {control, R"({"id":"b","cmd":"audit","limit":1e300,"reply_to":"ota/v1/control/reply/t"})"},
        {control, R"({"id":"c","cmd":"audit","limit":-99999999999999999999,"reply_to":"ota/v1/control/reply/t"})"},
        {control, R"({"id":"d","cmd":"devices","outdated":"yes","reply_to":"ota/v1/control/reply/t"})"},
        {control, R"({"id":"e","cmd":"pause","rollout":["plant.app.1.1.0"],"reply_to":"ota/v1/control/reply/t"})"},
        {control, R"({"id":"f","cmd":"update","device":{"id":1},"component":2,"reply_to":"ota/v1/control/reply/t"})"},
        {control, "{\"id\":\"g\xff\",\"cmd\":\"rollouts\"}"},
        {control, deep},
        {release, R"({"manifest":{"component":1e400},"signature":{}})"},
        {release, R"({"manifest":[],"signature":[]})"},
        {release, "\xff\xff"},
        {release, deep},
    };
    for (const auto& [topic, payload] : hostile) {
        EXPECT_NO_THROW(rig.msg(topic, payload)) << topic << " " << ota::printable(payload, 200);
        EXPECT_NO_THROW(rig.engine->tick(rig.now));
    }
    EXPECT_EQ(counted(rig, "handler_error"), 0u) << "every case is caught by the handlers themselves";
    EXPECT_EQ(counted(rig, "malformed"), 27u);  // all but the online message with an odd agent_version...
    EXPECT_EQ(counted(rig, "oversize"), 2u);    // ...and the deep ones, larger than max_payload
    EXPECT_EQ(counted(rig, "control_malformed"), 2u);
    EXPECT_GE(counted(rig, "release_rejected"), 4u);
    // nothing a hostile message said was taken: the member is still downloading, no halt
    auto st = rig.state(id);
    EXPECT_EQ(st["state"], "active");
    EXPECT_EQ(st["waves"][0]["in_progress"], 1);
    EXPECT_EQ(st["waves"][0]["failed"], 0);
    // the control requests that named a valid reply_to were answered (with an error or a result)
    bool replied = false;
    for (const auto& o : rig.out()) replied = replied || o.topic == "ota/v1/control/reply/t";
    EXPECT_TRUE(replied);

    // the retained garbage comes back at every restart: still nothing stops the engine
    rig.open();
    for (const auto& [topic, payload] : hostile) EXPECT_NO_THROW(rig.msg(topic, payload));
    // and good statuses still move the rollout
    rig.status(dev(1), 20, "succeeded", id);
    rig.status(dev(2), 20, "succeeded", id);
    st = rig.state(id);
    EXPECT_EQ(st["waves"][0]["succeeded"], 2);
    EXPECT_EQ(st["waves"][0]["state"], "done");
    EXPECT_EQ(st["waves"][1]["state"], "open");
}

// A device chooses its topic names, and each component name becomes state in the controller (a
// seq row, summary counts): past max_components_per_device they are counted and dropped, while
// the names it has keep working.
TEST(EngineInput, ADeviceCannotMakeTheControllerKeepUnboundedComponents) {
    EngineRig rig(json::array({{{"name", "canary"}, {"devices", {dev(1)}}, {"max_failures", 1}}, {{"name", "broad"}}}));
    rig.cfg.max_components_per_device = 4;
    rig.open();
    rig.device(dev(1), "1.0.0");
    rig.release("1.1.0");
    const std::string id = "plant.app.1.1.0";
    rig.status(dev(1), 1, "downloading", id);  // "app": one name
    for (int i = 0; i < 100; ++i)
        rig.msg("ota/v1/devices/" + dev(1) + "/status/junk-" + std::to_string(i),
                json{{"device", dev(1)}, {"seq", 1}, {"stage", "downloading"}});
    EXPECT_EQ(counted(rig, "too_many_components"), 97u) << "app and three junk names are kept";
    json many = json::object();
    for (int i = 0; i < 5; ++i) many["c" + std::to_string(i)] = "1.0";
    rig.msg("ota/v1/devices/" + dev(1) + "/inventory",
            json{{"device", dev(1)}, {"platform", "linux/amd64"}, {"labels", json::object()}, {"components", many}});
    EXPECT_EQ(counted(rig, "too_many_components"), 98u) << "an inventory listing more than the bound";
    // the component it has still works: the rollout moves on
    rig.status(dev(1), 2, "succeeded", id);
    const auto st = rig.state(id);
    EXPECT_EQ(st["waves"][0]["succeeded"], 1);
    EXPECT_EQ(st["waves"][0]["state"], "done");
    // the bound survives a restart (the seq rows are the controller's memory of the names)
    rig.open();
    rig.msg("ota/v1/devices/" + dev(1) + "/status/junk-500", json{{"device", dev(1)}, {"seq", 1}, {"stage", "downloading"}});
    EXPECT_EQ(counted(rig, "too_many_components"), 1u) << "counted again after the restart";
}

// Log lines of hostile input are written (never an exception), valid UTF-8, and bounded.
TEST(EngineInput, LogLinesOfInvalidUtf8AreValidAndBounded) {
    for (const auto format : {ota::log::Format::plain, ota::log::Format::json}) {
        std::string line;
        ASSERT_NO_THROW(line = ota::log::render(format, ota::log::Level::warn, "controller", "bad \xff message",
                                                {{"error", "last read: '\xff\xfe'"}, {"payload", std::string(100000, '\xc3')}}));
        EXPECT_EQ(ota::printable(line, line.size()), line) << "the line is valid UTF-8 without control characters";
        EXPECT_NE(line.find("\\xff"), std::string::npos) << line.substr(0, 200);
        EXPECT_LT(line.size(), 40000u);
    }
    // a flood of one kind of bad message is a few lines, then a count
    ota::log::Limiter limiter(3, 60s);
    std::uint64_t held = 0, allowed = 0;
    for (int i = 0; i < 1000; ++i) allowed += limiter.allow("malformed status", std::chrono::seconds(i / 100), held);
    EXPECT_EQ(allowed, 3u);
    EXPECT_TRUE(limiter.allow("malformed status", 61s, held));
    EXPECT_EQ(held, 997u);
    EXPECT_TRUE(limiter.allow("another kind", 61s, held));
    EXPECT_EQ(held, 0u);
}

// Killed during a wave and back after more than device_timeout_s, while the wave's devices
// reported success: the controller must not judge them silent on start (before it has read what
// they sent while it was down) and halt a healthy wave.
TEST(EngineInput, AnOutageLongerThanTheDeviceTimeoutHaltsNoHealthyWave) {
    EngineRig rig(json::array({{{"name", "canary"}, {"devices", {dev(1), dev(2), dev(3)}}, {"device_timeout_s", 30},
                                {"max_failures", 1}, {"soak_s", 0}},
                               {{"name", "broad"}, {"device_timeout_s", 30}}}));
    for (int i = 1; i <= 5; ++i) rig.device(dev(i), "1.0.0");
    rig.release("1.1.0");
    const std::string id = "plant.app.1.1.0";
    for (int i = 1; i <= 3; ++i) rig.status(dev(i), 1, "downloading", id);
    // the controller goes away for 10 minutes; the devices finish meanwhile (retained statuses)
    rig.now += 10min;
    rig.engine.reset();
    rig.store.reset();
    rig.store = std::move(*Store::open(rig.dir / "c.db"));
    ota::crypto::TrustStore t;
    t.add(rig.key.public_key());
    rig.engine = std::make_unique<Engine>(rig.cfg, *rig.store, t);
    rig.engine->on_connection(false, rig.now);  // as the service starts it
    rig.engine->load(rig.now);
    rig.now += 5s;  // the broker takes a while to come back; ticks go on
    rig.engine->tick(rig.now);
    EXPECT_EQ(rig.state(id)["state"], "active");
    EXPECT_EQ(rig.state(id)["waves"][0]["silent"], 0);
    rig.now += 40s;  // longer than the device timeout, still not connected: nobody is judged
    rig.engine->tick(rig.now);
    EXPECT_EQ(rig.state(id)["waves"][0]["silent"], 0);
    rig.engine->on_connection(true, rig.now);
    for (int i = 1; i <= 3; ++i) rig.status(dev(i), 2, "succeeded", id);  // the retained statuses
    rig.engine->tick(rig.now);
    const auto st = rig.state(id);
    EXPECT_EQ(st["state"], "active");
    EXPECT_EQ(st["waves"][0]["state"], "done");
    EXPECT_EQ(st["waves"][0]["succeeded"], 3);
    EXPECT_EQ(st["waves"][1]["state"], "open");
    for (const auto& o : rig.out()) EXPECT_EQ(o.topic.find("ota/v1/alerts/"), std::string::npos) << o.payload;

    // silence is still judged once connected: a device of the open wave that says nothing for the
    // timeout after the connect goes silent
    rig.now += 31s;
    rig.engine->tick(rig.now);
    EXPECT_EQ(rig.state(id)["waves"][1]["silent"], 2);
}

// A broker outage while the controller runs: no silence is judged while it cannot read statuses,
// and each device gets a fresh timeout from the reconnect.
TEST(EngineInput, DevicesAreNotJudgedSilentWhileTheBrokerIsAway) {
    EngineRig rig(json::array({{{"name", "all"}, {"device_timeout_s", 30}, {"max_failures", 1}}}));
    for (int i = 1; i <= 2; ++i) rig.device(dev(i), "1.0.0");
    rig.release("1.1.0");
    const std::string id = "plant.app.1.1.0";
    rig.engine->on_connection(false, rig.now);
    rig.now += 5min;
    rig.engine->tick(rig.now);
    EXPECT_EQ(rig.state(id)["state"], "active");
    rig.engine->on_connection(true, rig.now);
    rig.now += 29s;
    rig.engine->tick(rig.now);
    EXPECT_EQ(rig.state(id)["state"], "active");
    EXPECT_EQ(rig.state(id)["totals"]["silent"], 0);
    rig.now += 2s;
    rig.engine->tick(rig.now);
    EXPECT_EQ(rig.state(id)["totals"]["silent"], 2);
    EXPECT_EQ(rig.state(id)["state"], "halted");
}

// Pause a rollout, restart the controller, resume: the waves already done stay `open` on their
// retained topics (as docs/controller.md says), the paused one is `paused` and then `open` again.
TEST(EngineInput, DoneWavesStayOpenAcrossAPausedRestart) {
    EngineRig rig(json::array({{{"name", "canary"}, {"devices", {dev(1)}}, {"soak_s", 0}},
                               {{"name", "early"}, {"devices", {dev(2)}}, {"soak_s", 0}},
                               {{"name", "broad"}}}));
    for (int i = 1; i <= 3; ++i) rig.device(dev(i), "1.0.0");
    rig.release("1.1.0");
    const std::string id = "plant.app.1.1.0";
    rig.status(dev(1), 1, "succeeded", id);
    rig.engine->tick(rig.now);
    ASSERT_EQ(rig.state(id)["waves"][1]["state"], "open");
    auto retained = last_by_topic(rig.out());
    rig.msg("ota/v1/control/request/op", json{{"id", "p"}, {"cmd", "pause"}, {"rollout", id},
                                           {"reply_to", "ota/v1/control/reply/t"}});
    for (auto& [t, p] : last_by_topic(rig.out())) retained[t] = p;
    EXPECT_EQ(retained[wave_topic("canary")]["state"], "open");
    EXPECT_EQ(retained[wave_topic("early")]["state"], "paused");
    const auto before = retained;

    rig.open();  // restart: what it republishes must be what it had published
    std::map<std::string, json> republished;
    for (auto& [t, p] : last_by_topic(rig.out()))
        if (t.find("/waves/") != std::string::npos) republished[t] = p;
    ASSERT_EQ(republished.size(), 2u);
    for (const auto& [t, p] : republished) EXPECT_EQ(p, before.at(t)) << t;

    rig.msg("ota/v1/control/request/op", json{{"id", "r"}, {"cmd", "resume"}, {"rollout", id},
                                           {"reply_to", "ota/v1/control/reply/t"}});
    for (auto& [t, p] : last_by_topic(rig.out())) retained[t] = p;
    EXPECT_EQ(retained[wave_topic("canary")]["state"], "open");
    EXPECT_EQ(retained[wave_topic("early")]["state"], "open");
    rig.status(dev(2), 1, "succeeded", id);
    rig.engine->tick(rig.now);
    for (auto& [t, p] : last_by_topic(rig.out())) retained[t] = p;
    EXPECT_EQ(retained[wave_topic("broad")]["state"], "open");
    for (const auto& [t, p] : retained)
        if (t.find("/waves/") != std::string::npos) {
            EXPECT_EQ(p["state"], "open") << t;
        }
}

// Two controllers on one database would both steer its rollouts: the second refuses to open it,
// naming the first; once the first is gone (also after a kill -9: the lock is the kernel's), it opens.
TEST(Store, ASecondControllerOnTheSameDatabaseIsRefused) {
    kit::TempDir dir("ota-store-lock");
    auto first = Store::open(dir / "c.db");
    ASSERT_TRUE(first) << first.error().describe();
    auto second = Store::open(dir / "c.db");
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, ota::ErrorCode::io_error);
    EXPECT_NE(second.error().message.find("in use by another ota-controller (pid " + std::to_string(::getpid()) + ")"),
              std::string::npos) << second.error().message;
    first->reset();
    auto third = Store::open(dir / "c.db");
    EXPECT_TRUE(third) << third.error().describe();
}
