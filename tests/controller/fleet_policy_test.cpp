// Fleet policy commands on the engine alone (functional core: time in, messages out): maintenance
// windows set and deleted by an operator, approval added, the strategy changed under a live
// rollout; validation with the config's parser; persistence over a restart; the audit log.
#include <gtest/gtest.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "engine_rig.hpp"
#include "ota/time.hpp"

using json = nlohmann::json;
using namespace ota::controller;
using namespace ota::controller::testing;
using namespace std::chrono_literals;

namespace {

const std::string reply_to = "ota/v1/control/reply/ctl-1";
const std::string id = "plant.app.1.1.0";

// One control request; its reply (the engine's other publishes stay in `other`).
json control(EngineRig& rig, json req, std::vector<Outgoing>* other = nullptr) {
    req["id"] = "r";
    req["reply_to"] = reply_to;
    rig.msg("ota/v1/control/request/alice", req);
    json reply;
    for (auto& o : rig.out()) {
        if (o.topic == reply_to) reply = json::parse(o.payload);
        else if (other) other->push_back(o);
    }
    return reply;
}

// "HH:MM" of now + offset, UTC.
std::string hhmm(TimePoint t) {
    const auto day = std::chrono::floor<std::chrono::days>(t);
    const auto min = std::chrono::duration_cast<std::chrono::minutes>(t - day).count();
    char b[16];
    std::snprintf(b, sizeof b, "%02d:%02d", static_cast<int>(min / 60), static_cast<int>(min % 60));
    return b;
}

// A window that opens two hours from now for an hour, every day.
json later_window(TimePoint now) { return json{{"start", hhmm(now + 2h)}, {"end", hhmm(now + 3h)}}; }

std::optional<json> retained(const std::vector<Outgoing>& out, const std::string& topic) {
    std::optional<json> last;
    for (const auto& o : out)
        if (o.topic == topic && o.retain) last = json::parse(o.payload);
    return last;
}

json canary_and_broad(json broad_extra = json::object()) {
    json broad{{"name", "broad"}};
    broad.update(broad_extra);
    return json::array({{{"name", "canary"}, {"devices", {dev(1), dev(2)}}}, broad});
}

void start_rollout(EngineRig& rig) {
    for (int i = 1; i <= 4; ++i) rig.device(dev(i), "1.0.0");
    rig.release("1.1.0");
    (void)rig.out();
}

}  // namespace

TEST(FleetPolicy, AWindowSetNowHoldsTheNextWaveUntilItOpensAndSurvivesARestart) {
    EngineRig rig(canary_and_broad());
    start_rollout(rig);
    ASSERT_EQ(rig.state(id)["waves"][0]["state"], "open");
    std::vector<Outgoing> other;
    auto reply = control(rig, {{"cmd", "window_set"}, {"fleet", "plant"}, {"wave", "broad"}, {"window", later_window(rig.now)}}, &other);
    ASSERT_EQ(reply["ok"], true) << reply.dump();
    ASSERT_EQ(reply["result"]["rollouts"].size(), 1u);
    EXPECT_EQ(reply["result"]["rollouts"][0]["applies"], "now");
    // the retained policy topic carries the window, who set it and when
    auto policy = retained(other, "ota/v1/fleets/plant/policy");
    ASSERT_TRUE(policy);
    EXPECT_EQ((*policy)["waves"][1]["policy"]["window"]["start"], hhmm(rig.now + 2h));
    EXPECT_EQ((*policy)["waves"][1]["overrides"]["window"]["set_by"], "alice");
    // the canary succeeds: broad waits for its window instead of opening
    rig.status(dev(1), 1, "succeeded", id);
    rig.status(dev(2), 1, "succeeded", id);
    EXPECT_EQ(rig.state(id)["waves"][1]["state"], "waiting_window");
    rig.open();  // restart: the override comes back from SQLite
    auto out = rig.out();
    policy = retained(out, "ota/v1/fleets/plant/policy");
    ASSERT_TRUE(policy);
    EXPECT_EQ((*policy)["waves"][1]["policy"]["window"]["start"], hhmm(rig.now + 2h));
    EXPECT_FALSE(retained(out, "ota/v1/fleets/plant/waves/broad/app"));
    rig.now += 1h;
    rig.engine->tick(rig.now);
    EXPECT_EQ(rig.state(id)["waves"][1]["state"], "waiting_window");
    rig.now += 1h + 2min;  // inside the window
    rig.engine->tick(rig.now);
    EXPECT_EQ(rig.state(id)["waves"][1]["state"], "open");
    auto wave = retained(rig.out(), "ota/v1/fleets/plant/waves/broad/app");
    ASSERT_TRUE(wave);
    EXPECT_EQ((*wave)["state"], "open");
    // the audit log has the change under the actor
    auto audit = control(rig, {{"cmd", "audit"}});
    bool found = false;
    for (const auto& a : audit["result"])
        found = found || (a["action"] == "window_set" && a["actor"] == "alice" &&
                          a["detail"].get<std::string>().find("fleet plant: wave broad") == 0);
    EXPECT_TRUE(found) << audit.dump();
}

TEST(FleetPolicy, DeletingTheConfigsWindowLetsTheWaitingWaveOpen) {
    EngineRig rig(canary_and_broad({{"window", later_window(Clock::now())}}));
    start_rollout(rig);
    rig.status(dev(1), 1, "succeeded", id);
    rig.status(dev(2), 1, "succeeded", id);
    ASSERT_EQ(rig.state(id)["waves"][1]["state"], "waiting_window");
    std::vector<Outgoing> other;
    auto reply = control(rig, {{"cmd", "window_delete"}, {"fleet", "plant"}, {"wave", "broad"}}, &other);
    ASSERT_EQ(reply["ok"], true) << reply.dump();
    EXPECT_EQ(rig.state(id)["waves"][1]["state"], "open");
    EXPECT_TRUE(retained(other, "ota/v1/fleets/plant/waves/broad/app"));
    auto policy = retained(other, "ota/v1/fleets/plant/policy");
    ASSERT_TRUE(policy);
    EXPECT_FALSE((*policy)["waves"][1]["policy"].contains("window"));
    EXPECT_TRUE((*policy)["waves"][1]["overrides"]["window"]["value"].is_null());  // hides the file's window
    // nothing left to delete
    reply = control(rig, {{"cmd", "window_delete"}, {"fleet", "plant"}, {"wave", "broad"}});
    EXPECT_EQ(reply["error"]["code"], "not_found");
    // policy_reset: back to the config file's window
    reply = control(rig, {{"cmd", "policy_reset"}, {"fleet", "plant"}});
    ASSERT_EQ(reply["ok"], true) << reply.dump();
    EXPECT_TRUE(reply["result"]["policy"]["waves"][1]["policy"].contains("window"));
    EXPECT_TRUE(reply["result"]["policy"]["overrides"].empty());
}

TEST(FleetPolicy, ApprovalAddedHoldsAPendingWaveAndAnOpenWaveKeepsRunning) {
    EngineRig rig(canary_and_broad());
    start_rollout(rig);
    auto reply = control(rig, {{"cmd", "strategy_set"}, {"fleet", "plant"}, {"strategy", "staggered"}, {"approval", {"canary", "broad"}}});
    ASSERT_EQ(reply["ok"], true) << reply.dump();
    // canary is open: it keeps running; broad has not opened: it takes the approval
    EXPECT_EQ(reply["result"]["rollouts"][0]["applies"], "partly");
    const auto why = reply["result"]["rollouts"][0]["why"].get<std::string>();
    EXPECT_NE(why.find("canary (open)"), std::string::npos) << why;
    EXPECT_EQ(rig.state(id)["waves"][0]["state"], "open");
    rig.status(dev(1), 1, "succeeded", id);
    rig.status(dev(2), 1, "succeeded", id);
    EXPECT_EQ(rig.state(id)["waves"][1]["state"], "waiting_approval");
    reply = control(rig, {{"cmd", "approve"}, {"rollout", id}});
    ASSERT_EQ(reply["ok"], true) << reply.dump();
    EXPECT_EQ(rig.state(id)["waves"][1]["state"], "open");
}

TEST(FleetPolicy, AStrategyChangeOnALiveRolloutAppliesToTheNextRolloutAndSaysSo) {
    EngineRig rig(canary_and_broad());
    start_rollout(rig);
    auto reply = control(rig, {{"cmd", "strategy_set"}, {"fleet", "plant"}, {"strategy", "all_at_once"}});
    ASSERT_EQ(reply["ok"], true) << reply.dump();
    ASSERT_EQ(reply["result"]["rollouts"].size(), 1u);
    EXPECT_EQ(reply["result"]["rollouts"][0]["applies"], "next_rollout");
    EXPECT_NE(reply["result"]["rollouts"][0]["why"].get<std::string>().find("applies to the next rollout"), std::string::npos);
    EXPECT_EQ(reply["result"]["policy"]["strategy"], "all_at_once");
    EXPECT_EQ(reply["result"]["policy"]["waves"].size(), 1u);
    // the live rollout keeps its two waves
    rig.status(dev(1), 1, "succeeded", id);
    rig.status(dev(2), 1, "succeeded", id);
    EXPECT_EQ(rig.state(id)["waves"][1]["state"], "open");
    // the next rollout: one wave `all` with every device, published on every wave topic of the
    // config (devices keep their assignment)
    rig.release("1.2.0");
    const std::string next = "plant.app.1.2.0";
    auto s = rig.state(next);
    ASSERT_EQ(s["waves"].size(), 1u);
    EXPECT_EQ(s["waves"][0]["name"], "all");
    EXPECT_EQ(s["waves"][0]["state"], "open");
    EXPECT_EQ(s["waves"][0]["devices"], 4);
    auto out = rig.out();
    for (const auto* t : {"ota/v1/fleets/plant/waves/canary/app", "ota/v1/fleets/plant/waves/broad/app"}) {
        auto w = retained(out, t);
        ASSERT_TRUE(w) << t;
        EXPECT_EQ((*w)["rollout"], next);
    }
    rig.open();  // a restart keeps it one wave
    EXPECT_EQ(rig.state(next)["waves"].size(), 1u);
    for (int i = 1; i <= 4; ++i) rig.status(dev(i), 2, "succeeded", next);
    EXPECT_EQ(rig.state(next)["state"], "completed");
}

TEST(FleetPolicy, InvalidRequestsNameTheFieldAndChangeNothing) {
    EngineRig rig(canary_and_broad());
    start_rollout(rig);
    struct Case {
        json req;
        std::string code, message;
    } cases[] = {
        {{{"cmd", "window_set"}, {"fleet", "plant"}, {"wave", "broad"}, {"window", {{"start", "25:00"}, {"end", "01:00"}}}},
         "request_invalid", "request.window.start: expected HH:MM"},
        {{{"cmd", "window_set"}, {"fleet", "plant"}, {"wave", "broad"}, {"window", {{"start", "01:00"}, {"end", "02:00"}, {"dayz", 1}}}},
         "request_invalid", "request.window"},
        {{{"cmd", "window_set"}, {"fleet", "plant"}, {"wave", "broad"}}, "request_invalid", "request.window: missing"},
        {{{"cmd", "window_set"}, {"fleet", "plant"}, {"wave", "nope"}, {"window", {{"start", "01:00"}, {"end", "02:00"}}}},
         "not_found", "fleet plant has no wave nope"},
        {{{"cmd", "window_set"}, {"fleet", 7}, {"wave", "broad"}}, "request_invalid", "request.fleet"},
        {{{"cmd", "window_delete"}, {"fleet", "nope"}, {"wave", "broad"}}, "not_found", "no fleet nope"},
        {{{"cmd", "strategy_set"}, {"fleet", "plant"}, {"strategy", "sideways"}}, "request_invalid", "request.strategy"},
        {{{"cmd", "strategy_set"}, {"fleet", "plant"}, {"strategy", "all_at_once"}, {"approval", {"canary"}}},
         "request_invalid", "request.approval: \"canary\" is not a wave"},
        {{{"cmd", "strategy_set"}, {"fleet", "plant"}, {"strategy", "staggered"}, {"approval", "broad"}},
         "request_invalid", "request.approval"},
        {{{"cmd", "policy"}, {"fleet", "nope"}}, "not_found", "no fleet nope"},
    };
    for (const auto& c : cases) {
        auto reply = control(rig, c.req);
        EXPECT_EQ(reply["ok"], false) << c.req.dump();
        EXPECT_EQ(reply["error"]["code"], c.code) << c.req.dump();
        EXPECT_EQ(reply["error"]["message"].get<std::string>().rfind(c.message, 0), 0u) << reply.dump();
    }
    auto policy = control(rig, {{"cmd", "policy"}, {"fleet", "plant"}});
    ASSERT_EQ(policy["ok"], true);
    EXPECT_TRUE(policy["result"]["overrides"].empty());
    EXPECT_EQ(policy["result"]["strategy"], "staggered");
    EXPECT_TRUE(rig.store->overrides().empty());
}
