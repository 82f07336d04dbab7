// The controller's policy and engine without a broker: config errors, wave membership by stable
// hash, thresholds, ingest by sequence number, and rebuilding from SQLite.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "engine_rig.hpp"
#include "ota/manifest.hpp"
#include "policy.hpp"
#include "store.hpp"

namespace kit = ota::testkit;
using json = nlohmann::json;
using namespace ota::controller;
using namespace ota::controller::testing;
using namespace std::chrono_literals;


TEST(ControllerConfig, ErrorsNameTheFieldPath) {
    struct Case {
        json waves;
        std::string want;
    } cases[] = {
        {json::array(), "controller.fleets[0].waves: expected a non-empty list"},
        {json::array({{{"name", "a"}, {"percent", 150}}}), "controller.fleets[0].waves[0].percent: expected a percentage"},
        {json::array({{{"name", "a"}, {"percent", 5}, {"devices", {"d"}}}, {{"name", "b"}}}), "give at most one of"},
        {json::array({{{"name", "a"}}, {{"name", "b"}}}), "only the last wave may have no selector"},
        {json::array({{{"name", "a"}, {"soak_s", "10"}}}), "waves[0].soak_s: expected a non-negative integer"},
        {json::array({{{"name", "a"}, {"window", {{"start", "25:00"}, {"end", "01:00"}}}}}), "window.start: expected HH:MM"},
        {json::array({{{"name", "a"}, {"colour", "red"}}}), "waves[0].colour: unknown field"},
        {json::array({{{"name", "a/b"}}}), "is not a valid wave name"},
    };
    {
        auto j = base_config(json::array({{{"name", "a"}}}));
        j["fleets"][0]["components"] = {{"app", {{"waves", {{"a", 5}}}}}};
        auto r = parse_controller_config(j);
        ASSERT_FALSE(r);
        EXPECT_NE(r.error().message.find("components.app.waves.a: expected an object of policy fields"), std::string::npos)
            << r.error().message;
    }
    for (const auto& c : cases) {
        auto r = parse_controller_config(base_config(c.waves));
        ASSERT_FALSE(r) << c.waves.dump();
        EXPECT_EQ(r.error().code, ota::ErrorCode::config_invalid);
        EXPECT_NE(r.error().message.find(c.want), std::string::npos) << r.error().message;
    }
}

TEST(ControllerConfig, ComponentOverridesLayerOnTheWavePolicy) {
    auto j = base_config(json::array({{{"name", "canary"}, {"percent", 5}, {"soak_s", 60}}, {{"name", "broad"}}}));
    j["fleets"][0]["defaults"] = {{"max_failures", 3}, {"device_timeout_s", 600}};
    j["fleets"][0]["components"] = {{"app", {{"defaults", {{"max_failures", 1}}}, {"waves", {{"broad", {{"approval", true}}}}}}}};
    auto c = parse_controller_config(j);
    ASSERT_TRUE(c) << c.error().message;
    const auto& f = c->fleets[0];
    EXPECT_EQ(f.policy(0, "other").max_failures, 3u);
    EXPECT_EQ(f.policy(0, "other").soak, 60s);
    EXPECT_EQ(f.policy(0, "app").max_failures, 1u);
    EXPECT_EQ(f.policy(0, "app").device_timeout, 600s);
    EXPECT_FALSE(f.policy(0, "app").approval);
    EXPECT_TRUE(f.policy(1, "app").approval);
    EXPECT_FALSE(f.policy(1, "other").approval);
}

TEST(WaveMembership, PercentWavesAreStableAndCumulative) {
    auto c = parse_controller_config(base_config(json::array(
        {{{"name", "canary"}, {"percent", 5}}, {{"name", "early"}, {"percent", 25}}, {{"name", "broad"}, {"percent", 100}}})));
    ASSERT_TRUE(c);
    const auto& f = c->fleets[0];
    int n[3] = {0, 0, 0};
    for (int i = 0; i < 10000; ++i) ++n[f.wave_of("dev-" + std::to_string(i), {})];
    EXPECT_NEAR(n[0], 500, 100);
    EXPECT_NEAR(n[1], 2000, 200);
    EXPECT_NEAR(n[2], 7500, 250);
    // the same device lands in the same wave every time, and the bucket is the documented hash
    EXPECT_EQ(f.wave_of("device-042", {}), f.wave_of("device-042", {}));
    EXPECT_EQ(hash_bucket("plant", "device-042"), hash_bucket("plant", "device-042"));
    EXPECT_NE(hash_bucket("plant", "device-042"), hash_bucket("other", "device-042"));
}

TEST(WaveMembership, IdsAndLabelsComeFirstAndTheLastWaveCatchesTheRest) {
    auto c = parse_controller_config(base_config(json::array(
        {{{"name", "canary"}, {"devices", {"d1"}}}, {{"name", "lab"}, {"labels", {{"site", "lab"}}}}, {{"name", "broad"}}})));
    ASSERT_TRUE(c);
    const auto& f = c->fleets[0];
    EXPECT_EQ(f.wave_of("d1", {{"site", "lab"}}), 0u);
    EXPECT_EQ(f.wave_of("d2", {{"site", "lab"}}), 1u);
    EXPECT_EQ(f.wave_of("d3", {{"site", "plant"}}), 2u);
}

TEST(TimeWindow, WrapsPastMidnightAndFindsTheNextOpening) {
    ota::TimeWindow w{.days = {6}, .start_minute = 22 * 60, .end_minute = 4 * 60};  // Saturday 22:00-04:00
    using namespace std::chrono;
    const sys_days sat = 2026y / November / 28;  // a Saturday
    EXPECT_TRUE(w.contains(sat + 23h));
    EXPECT_TRUE(w.contains(sat + days(1) + 3h));   // Sunday 03:00 belongs to Saturday's window
    EXPECT_FALSE(w.contains(sat + 3h));            // Saturday 03:00 belongs to Friday's
    EXPECT_FALSE(w.contains(sat + 12h));
    EXPECT_EQ(w.next_open(sat + 12h), sat + 22h);
}

TEST(Engine, FailureThresholdHaltsAndPublishesHaltedAndAnAlert) {
    EngineRig rig(json::array({{{"name", "canary"}, {"devices", {dev(1), dev(2), dev(3), dev(4)}}, {"max_failures", 2}},
                               {{"name", "broad"}}}));
    for (int i = 1; i <= 10; ++i) rig.device(dev(i), "1.0.0");
    (void)rig.out();
    rig.release("1.1.0");
    const std::string id = "plant.app.1.1.0";
    auto out = rig.out();
    auto opened = std::find_if(out.begin(), out.end(), [](const Outgoing& o) { return o.topic == "ota/v1/fleets/plant/waves/canary/app"; });
    ASSERT_NE(opened, out.end());
    EXPECT_EQ(json::parse(opened->payload)["state"], "open");
    EXPECT_TRUE(opened->retain);
    rig.status(dev(1), 1, "failed", id);
    EXPECT_EQ(rig.state(id)["state"], "active");
    rig.status(dev(1), 1, "failed", id);  // a duplicate does not count twice
    EXPECT_EQ(rig.state(id)["state"], "active");
    EXPECT_EQ(rig.engine->counters().by_result.at("duplicate"), 1u);
    (void)rig.out();
    rig.status(dev(2), 5, "rolled_back", id);
    EXPECT_EQ(rig.state(id)["state"], "halted");
    EXPECT_EQ(rig.state(id)["waves"][0]["failed"], 2);
    out = rig.out();
    bool halted = false, alert = false;
    for (const auto& o : out) {
        if (o.topic == "ota/v1/fleets/plant/waves/canary/app") halted = json::parse(o.payload)["state"] == "halted";
        if (o.topic == "ota/v1/alerts/" + id) alert = o.retain && json::parse(o.payload)["state"] == "firing";
        EXPECT_NE(o.topic, "ota/v1/fleets/plant/waves/broad/app");
    }
    EXPECT_TRUE(halted);
    EXPECT_TRUE(alert);
}

TEST(Engine, PercentThresholdWaitsForTheMinimumFinished) {
    json devices = json::array();
    for (int i = 1; i <= 10; ++i) devices.push_back(dev(i));
    EngineRig rig(json::array({{{"name", "canary"}, {"devices", devices}, {"max_failure_percent", 20}, {"min_finished", 5},
                                {"success_percent", 50}},
                               {{"name", "broad"}}}));
    for (int i = 1; i <= 12; ++i) rig.device(dev(i), "1.0.0");
    rig.release("1.1.0");
    const std::string id = "plant.app.1.1.0";
    rig.status(dev(1), 1, "failed", id);  // 1 of 1 finished failed: below min_finished
    rig.status(dev(2), 1, "succeeded", id);
    rig.status(dev(3), 1, "succeeded", id);
    rig.status(dev(4), 1, "succeeded", id);
    EXPECT_EQ(rig.state(id)["state"], "active");
    rig.status(dev(5), 1, "succeeded", id);  // 1 of 5 = 20 %: halts
    EXPECT_EQ(rig.state(id)["state"], "halted");
}

TEST(Engine, StateSurvivesReopeningTheDatabaseAndRetainedReplaysCountOnce) {
    EngineRig rig(json::array({{{"name", "canary"}, {"devices", {dev(1), dev(2)}}}, {{"name", "broad"}, {"approval", true}}}));
    for (int i = 1; i <= 5; ++i) rig.device(dev(i), "1.0.0");
    rig.release("1.1.0");
    const std::string id = "plant.app.1.1.0";
    rig.status(dev(1), 7, "succeeded", id);
    rig.status(dev(2), 3, "succeeded", id);
    ASSERT_EQ(rig.state(id)["waves"][1]["state"], "waiting_approval");
    const auto before = rig.state(id);
    rig.open();  // as after kill -9: everything comes from SQLite
    auto out = rig.out();
    // the open wave is republished with the same content; nothing new opens
    int canary = 0;
    for (const auto& o : out) {
        if (o.topic == "ota/v1/fleets/plant/waves/canary/app") ++canary;
        EXPECT_NE(o.topic, "ota/v1/fleets/plant/waves/broad/app");
    }
    EXPECT_EQ(canary, 1);
    // retained messages arrive again: release, inventory, status; nothing changes
    rig.release("1.1.0");
    rig.status(dev(1), 7, "succeeded", id);
    rig.status(dev(2), 3, "succeeded", id);
    auto after = rig.state(id);
    after.erase("updated");
    auto b = before;
    b.erase("updated");
    EXPECT_EQ(after, b);
    EXPECT_EQ(rig.store->schema_version(), 2);
}

// The engine keeps its counts per wave as members change instead of recounting every member after
// every batch. Checked against a recount of what SQLite holds (members and wave opening times),
// with silence worked out here from the policy's device_timeout_s, after every step of a seeded
// random run: statuses of every kind, time passing, operator retries and reopening the database
// (which, as a restart, gives every unfinished device a fresh timeout).
TEST(Engine, CountsKeptAsMembersChangeMatchARecountOfTheStore) {
    json canary = json::array();
    for (int i = 0; i < 10; ++i) canary.push_back(dev(i));
    EngineRig rig(json::array({{{"name", "canary"}, {"devices", canary}, {"success_percent", 50}, {"max_failures", 1000},
                                {"device_timeout_s", 30}},
                               {{"name", "broad"}, {"max_failures", 1000}, {"device_timeout_s", 30}}}));
    rig.now = std::chrono::time_point_cast<std::chrono::milliseconds>(rig.now);  // as precise as SQLite keeps it
    const int devices = 40;
    for (int i = 0; i < devices; ++i) rig.device(dev(i), "1.0.0");
    rig.release("2.0.0");
    const std::string id = "plant.app.2.0.0";
    const auto timeout = 30s;
    TimePoint restarted{};

    auto recount = [&](std::size_t wave) {
        std::optional<TimePoint> opened;
        for (const auto& r : rig.store->rollouts())
            if (r.id == id) opened = r.waves.at(wave).opened_at;
        json c{{"devices", 0}, {"succeeded", 0}, {"already", 0}, {"failed", 0}, {"silent", 0}, {"in_progress", 0}, {"pending", 0}};
        auto bump = [&](const char* k) { c[k] = c[k].get<int>() + 1; };
        for (const auto& m : rig.store->members()) {
            if (m.rollout != id || m.wave != wave) continue;
            bump("devices");
            const bool final = to_string(m.state) == "succeeded" || to_string(m.state) == "done" || to_string(m.state) == "failed";
            if (to_string(m.state) == "succeeded") bump("succeeded");
            else if (to_string(m.state) == "done") bump("succeeded"), bump("already");
            else if (to_string(m.state) == "failed") bump("failed");
            else if (!final && opened && rig.now - std::max({*opened, m.updated, restarted}) >= timeout) bump("silent");
            else if (to_string(m.state) == "in_progress") bump("in_progress");
            else bump("pending");
        }
        return c;
    };
    auto check = [&](int step) {
        const auto st = rig.state(id);
        for (std::size_t w = 0; w < 2; ++w) {
            json got;
            for (const char* k : {"devices", "succeeded", "already", "failed", "silent", "in_progress", "pending"})
                got[k] = st["waves"][w][k];
            ASSERT_EQ(got, recount(w)) << "step " << step << ", wave " << w << ", rollout " << st["state"];
        }
    };

    std::mt19937 rng(20261130);
    std::map<std::string, int> seq;
    const char* stages[] = {"downloading", "installing", "health_checking", "succeeded", "failed", "rolled_back", "rejected"};
    int silent_seen = 0, opened_broad = 0;
    for (int step = 0; step < 400; ++step) {
        const auto roll = rng() % 100;
        if (roll < 70) {
            const auto d = dev(static_cast<int>(rng() % (devices - 5)));  // the last 5 never report
            const std::string stage = stages[rng() % std::size(stages)];
            json s{{"device", d}, {"seq", ++seq[d]}, {"stage", stage}, {"rollout", id}};
            if (stage == "rejected") s["error"] = {{"code", rng() % 2 ? "version_not_newer" : "bad_signature"}};
            rig.msg("ota/v1/devices/" + d + "/status/app", s);
        } else if (roll < 90) {
            rig.now += std::chrono::milliseconds(500 + rng() % 15000);
            rig.engine->tick(rig.now);
        } else if (roll < 96) {
            rig.msg("ota/v1/control/request/op", json{{"id", "r" + std::to_string(step)}, {"cmd", "retry"}, {"rollout", id},
                                                   {"actor", "test"}, {"reply_to", "ota/v1/control/reply/t"}});
        } else {
            rig.open();  // as after a restart: counts rebuilt from SQLite
            restarted = rig.now;
        }
        rig.out();
        check(step);
        if (HasFatalFailure()) return;
        const auto st = rig.state(id);
        silent_seen += st["totals"]["silent"].get<int>() > 0;
        opened_broad += st["waves"][1].contains("opened_at");
    }
    // the run went through the cases that matter: silent devices, and the second wave open
    EXPECT_GT(silent_seen, 0);
    EXPECT_GT(opened_broad, 0);
}

// Devices go silent with time alone, also in a wave that opens after everyone else finished (the
// engine scans for silence only when a device can have gone silent: this checks it does not
// miss the moment a new wave starts its devices' clocks).
TEST(Engine, DevicesOfAWaveThatOpensLaterGoSilentOnTime) {
    EngineRig rig(json::array({{{"name", "canary"}, {"devices", {dev(1)}}, {"soak_s", 10}, {"device_timeout_s", 30}},
                               {{"name", "broad"}, {"device_timeout_s", 30}, {"max_failures", 5}}}));
    for (int i = 1; i <= 3; ++i) rig.device(dev(i), "1.0.0");
    rig.release("1.1.0");
    const std::string id = "plant.app.1.1.0";
    rig.status(dev(1), 1, "succeeded", id);
    rig.now += 5s;
    rig.engine->tick(rig.now);  // canary soaking; nobody left who could go silent
    rig.now += 6s;
    rig.engine->tick(rig.now);  // the soak is over: broad opens
    ASSERT_EQ(rig.state(id)["waves"][1]["state"], "open");
    rig.now += 29s;
    rig.engine->tick(rig.now);
    EXPECT_EQ(rig.state(id)["waves"][1]["silent"], 0);
    rig.now += 2s;
    rig.engine->tick(rig.now);
    EXPECT_EQ(rig.state(id)["waves"][1]["silent"], 2);
    EXPECT_EQ(rig.state(id)["waves"][1]["pending"], 0);
}

// Memory follows the live rollouts: a completed or superseded rollout keeps its counts (also after
// a restart) but no members, and a late status for it changes nothing.
TEST(Engine, FinishedRolloutsKeepTheirCountsButNotTheirMembers) {
    EngineRig rig(json::array({{{"name", "all"}}}));
    for (int i = 1; i <= 3; ++i) rig.device(dev(i), "1.0.0");
    rig.release("1.1.0");
    const std::string r1 = "plant.app.1.1.0";
    EXPECT_EQ(rig.engine->member_count(), 3u);
    for (int i = 1; i <= 3; ++i) rig.status(dev(i), 1, "succeeded", r1);
    ASSERT_EQ(rig.state(r1)["state"], "completed");
    EXPECT_EQ(rig.state(r1)["totals"]["succeeded"], 3);
    EXPECT_EQ(rig.engine->member_count(), 0u);
    rig.status(dev(1), 2, "failed", r1);  // late, for a finished rollout
    EXPECT_EQ(rig.engine->counters().by_result.at("other_rollout"), 1u);
    EXPECT_EQ(rig.state(r1)["totals"]["succeeded"], 3);
    EXPECT_EQ(rig.state(r1)["totals"]["failed"], 0);
    rig.open();
    EXPECT_EQ(rig.state(r1)["totals"]["succeeded"], 3);
    EXPECT_EQ(rig.state(r1)["totals"]["devices"], 3);
    EXPECT_EQ(rig.engine->member_count(), 0u);

    rig.release("1.2.0");
    rig.status(dev(1), 3, "downloading", "plant.app.1.2.0");
    rig.release("1.3.0");  // supersedes 1.2.0
    const auto old = rig.state("plant.app.1.2.0");
    EXPECT_EQ(old["state"], "superseded");
    EXPECT_EQ(old["totals"]["in_progress"], 1);
    EXPECT_EQ(old["totals"]["pending"], 2);
    EXPECT_EQ(rig.engine->member_count(), 3u);  // the members of 1.3.0 only
}

// A rollout may complete before every device finished (success_percent < 100): the stragglers
// stay members, and their later reports still count.
TEST(Engine, ACompletedRolloutStillCountsItsStragglers) {
    EngineRig rig(json::array({{{"name", "all"}, {"success_percent", 50}}}));
    for (int i = 1; i <= 4; ++i) rig.device(dev(i), "1.0.0");
    rig.release("1.1.0");
    const std::string id = "plant.app.1.1.0";
    rig.status(dev(1), 1, "succeeded", id);
    rig.status(dev(2), 1, "succeeded", id);
    rig.status(dev(3), 1, "installing", id);
    ASSERT_EQ(rig.state(id)["state"], "completed");
    EXPECT_EQ(rig.engine->member_count(), 2u);  // device-003 (installing) and device-004 (pending)
    rig.status(dev(3), 2, "succeeded", id);
    rig.status(dev(4), 1, "failed", id);
    const auto st = rig.state(id);
    EXPECT_EQ(st["totals"]["succeeded"], 3);
    EXPECT_EQ(st["totals"]["failed"], 1);
    EXPECT_EQ(st["totals"]["in_progress"], 0);
    EXPECT_EQ(rig.engine->member_count(), 2u);
    rig.open();  // after a restart, the same
    EXPECT_EQ(rig.state(id)["totals"]["succeeded"], 3);
    EXPECT_EQ(rig.engine->member_count(), 0u);
    // an operator updates the device that failed; its success now counts, once
    rig.msg("ota/v1/control/request/op", json{{"id", "u"}, {"cmd", "update"}, {"device", dev(4)}, {"component", "app"},
                                           {"actor", "test"}, {"reply_to", "ota/v1/control/reply/t"}});
    bool install_sent = false;
    for (const auto& o : rig.out()) install_sent = install_sent || o.topic == "ota/v1/devices/" + dev(4) + "/cmd";
    EXPECT_TRUE(install_sent);
    rig.status(dev(4), 2, "succeeded", id);
    EXPECT_EQ(rig.state(id)["totals"]["succeeded"], 4);
    EXPECT_EQ(rig.state(id)["totals"]["failed"], 0);
    EXPECT_EQ(rig.state(id)["totals"]["devices"], 4);
}

// A device counted silent when its rollout completed is a straggler too: when it reports at last,
// it leaves the silent count (and nothing else is taken away).
TEST(Engine, ASilentStragglerOfACompletedRolloutLeavesTheSilentCountWhenItReports) {
    EngineRig rig(json::array({{{"name", "all"}, {"success_percent", 50}, {"device_timeout_s", 30}}}));
    for (int i = 1; i <= 3; ++i) rig.device(dev(i), "1.0.0");
    rig.release("1.1.0");
    const std::string id = "plant.app.1.1.0";
    rig.status(dev(1), 1, "succeeded", id);
    rig.now += 20s;
    rig.status(dev(2), 1, "installing", id);
    rig.now += 11s;
    rig.engine->tick(rig.now);
    ASSERT_EQ(rig.state(id)["totals"]["silent"], 1);  // device-003
    rig.status(dev(2), 2, "succeeded", id);
    ASSERT_EQ(rig.state(id)["state"], "completed");
    rig.status(dev(3), 1, "succeeded", id);
    const auto t = rig.state(id)["totals"];
    EXPECT_EQ(t["succeeded"], 3);
    EXPECT_EQ(t["silent"], 0);
    EXPECT_EQ(t["pending"], 0);
    EXPECT_EQ(t["in_progress"], 0);
    EXPECT_EQ(t["devices"], 3);
}

TEST(Engine, BadInventoryReleasesAndControlRequestsAreCountedAndAnsweredClearly) {
    EngineRig rig(json::array({{{"name", "all"}, {"percent", 100}}}));
    rig.msg("ota/v1/devices/device-001/inventory", std::string("{not json"));
    rig.msg("ota/v1/devices/device-001/inventory", json{{"components", {{"app", 5}}}});
    EXPECT_EQ(rig.engine->counters().by_result.at("malformed"), 2u);
    EXPECT_EQ(rig.engine->device_count(), 0u);
    // a release signed by a key the controller does not trust, and one that is not JSON
    ota::Manifest m;
    m.component = "app";
    m.version = "1.0.0";
    m.channel = "stable";
    m.artifact = {.url = "https://x/a", .size = 1, .sha256 = std::string(64, 'a'), .encryption = std::nullopt};
    m.install.target = "/x";
    m.created = ota::now_utc();
    rig.msg("ota/v1/releases/app/stable", ota::make_envelope(m, ota::crypto::PrivateKey::generate()));
    rig.msg("ota/v1/releases/app/stable", std::string("garbage"));
    EXPECT_EQ(rig.engine->counters().by_result.at("release_rejected"), 2u);
    EXPECT_EQ(rig.engine->rollouts_by_state().size(), 0u);
    (void)rig.out();
    // control: not JSON (dropped, no reply possible), an unknown cmd, an unknown rollout
    rig.msg("ota/v1/control/request/op", std::string("{nope"));
    EXPECT_EQ(rig.engine->counters().by_result.at("control_malformed"), 1u);
    EXPECT_TRUE(rig.out().empty());
    const std::string reply_to = "ota/v1/control/reply/ctl-1";
    rig.msg("ota/v1/control/request/op", json{{"id", "a"}, {"cmd", "explode"}, {"reply_to", reply_to}});
    rig.msg("ota/v1/control/request/op", json{{"id", "b"}, {"cmd", "pause"}, {"rollout", "nope"}, {"reply_to", reply_to}});
    rig.msg("ota/v1/control/request/op", json{{"id", "c"}, {"cmd", "pause"}, {"rollout", "nope"}, {"reply_to", "elsewhere/x"}});
    auto out = rig.out();
    ASSERT_EQ(out.size(), 2u);  // the request with a reply_to outside control/reply/ gets no answer
    auto a = json::parse(out[0].payload), b = json::parse(out[1].payload);
    EXPECT_EQ(out[0].topic, reply_to);
    EXPECT_FALSE(out[0].retain);
    EXPECT_EQ(a["id"], "a");
    EXPECT_EQ(a["ok"], false);
    EXPECT_EQ(a["error"]["code"], "request_invalid");
    EXPECT_NE(a["error"]["message"].get<std::string>().find("explode"), std::string::npos);
    EXPECT_EQ(b["error"]["code"], "not_found");
    EXPECT_EQ(b["error"]["message"], "no rollout nope");
}

TEST(Engine, TheActorIsTheRequestTopicsUserNotThePayloadsActorField) {
    EngineRig rig(json::array({{{"name", "canary"}, {"devices", {dev(1)}}}, {{"name", "broad"}}}));
    for (int i = 1; i <= 2; ++i) rig.device(dev(i), "1.0.0");
    rig.release("1.1.0");
    const std::string id = "plant.app.1.1.0";
    (void)rig.out();
    rig.msg("ota/v1/control/request/alice", json{{"id", "p"}, {"cmd", "pause"}, {"rollout", id}, {"actor", "mallory"},
                                                 {"reply_to", "ota/v1/control/reply/t"}});
    EXPECT_EQ(rig.state(id)["state"], "paused");
    // The old topic (no user) is not a control request any more: nothing happens, nothing is answered.
    (void)rig.out();
    rig.msg("ota/v1/control/request", json{{"id", "r"}, {"cmd", "resume"}, {"rollout", id}, {"reply_to", "ota/v1/control/reply/t"}});
    EXPECT_TRUE(rig.out().empty());
    EXPECT_EQ(rig.state(id)["state"], "paused");
    const auto log = rig.store->audit_log(id, 10);
    const auto paused = std::find_if(log.begin(), log.end(), [](const AuditRow& a) { return a.action == "paused"; });
    ASSERT_NE(paused, log.end());
    EXPECT_EQ(paused->actor, "alice");
    for (const auto& a : log) EXPECT_NE(a.actor, "mallory");
}

// control/query/<user> (what a viewer may write) answers the commands that change nothing and
// refuses every other with read_only, carrying out nothing and auditing nothing.
TEST(Engine, AQueryTopicAnswersReadCommandsAndRefusesTheRest) {
    EngineRig rig(json::array({{{"name", "canary"}, {"devices", {dev(1)}}}, {{"name", "broad"}}}));
    for (int i = 1; i <= 2; ++i) rig.device(dev(i), "1.0.0");
    rig.release("1.1.0");
    const std::string id = "plant.app.1.1.0";
    (void)rig.out();
    const std::string reply_to = "ota/v1/control/reply/v-1";
    const auto audit_before = rig.store->audit_log("", 100).size();
    rig.msg("ota/v1/control/query/victor", json{{"id", "q1"}, {"cmd", "audit"}, {"limit", 5}, {"reply_to", reply_to}});
    rig.msg("ota/v1/control/query/victor", json{{"id", "q2"}, {"cmd", "rollouts"}, {"reply_to", reply_to}});
    for (const std::string cmd : {"pause", "abort", "approve", "retry", "resume", "update", "window_delete", "policy_reset"})
        rig.msg("ota/v1/control/query/victor", json{{"id", cmd}, {"cmd", cmd}, {"rollout", id}, {"fleet", "plant"},
                                                    {"wave", "broad"}, {"device", dev(2)}, {"component", "app"}, {"reply_to", reply_to}});
    auto out = rig.out();
    ASSERT_EQ(out.size(), 10u);
    auto audit = json::parse(out[0].payload), rollouts = json::parse(out[1].payload);
    EXPECT_EQ(out[0].topic, reply_to);
    ASSERT_EQ(audit["ok"], true) << audit.dump();
    ASSERT_TRUE(audit["result"].is_array());
    EXPECT_FALSE(audit["result"].empty());
    EXPECT_EQ(audit["result"][0]["rollout"], id);
    ASSERT_EQ(rollouts["ok"], true) << rollouts.dump();
    EXPECT_EQ(rollouts["result"][0]["rollout"], id);
    for (std::size_t i = 2; i < out.size(); ++i) {
        auto r = json::parse(out[i].payload);
        EXPECT_EQ(out[i].topic, reply_to);
        EXPECT_EQ(r["ok"], false) << r.dump();
        EXPECT_EQ(r["error"]["code"], "read_only") << r.dump();
        EXPECT_NE(r["error"]["message"].get<std::string>().find("control/request/victor"), std::string::npos) << r.dump();
    }
    EXPECT_EQ(rig.state(id)["state"], "active");
    EXPECT_EQ(rig.store->audit_log("", 100).size(), audit_before);
}

// The reports the service applies ahead of the rest of a batch: the stages that can halt a wave,
// read from the raw payload however the JSON is spaced; nothing else.
TEST(Ingest, FailureReportsAreToldApartWithoutParsing) {
    using ota::controller::is_failure_report;
    const std::string status = "ota/v1/devices/d1/status/app";
    EXPECT_TRUE(is_failure_report(status, R"({"stage":"failed","seq":3})"));
    EXPECT_TRUE(is_failure_report(status, R"({"seq":3, "stage" : "rolled_back"})"));
    EXPECT_TRUE(is_failure_report(status, "{\"stage\":\n\t\"rejected\",\"error\":{\"code\":\"signature_invalid\"}}"));
    EXPECT_FALSE(is_failure_report(status, R"({"stage":"downloading","progress":50})"));
    EXPECT_FALSE(is_failure_report(status, R"({"stage":"succeeded"})"));
    EXPECT_FALSE(is_failure_report(status, R"({"stage":"failed_over"})")) << "the whole value";
    EXPECT_FALSE(is_failure_report(status, R"({"note":"stage failed","stage":"installing"})"));
    EXPECT_FALSE(is_failure_report(status, R"({"stage":)"));
    EXPECT_FALSE(is_failure_report(status, ""));
    EXPECT_FALSE(is_failure_report("ota/v1/devices/d1/inventory", R"({"stage":"failed"})")) << "not a status topic";
}
