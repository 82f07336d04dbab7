// Fleet policy end to end: ota-ctl against the real controller and broker. A maintenance window
// set with ota-ctl holds the next wave, is audited, and survives a controller restart (the
// retained policy topic and the behaviour both); an invalid window is refused naming the field;
// the all_at_once strategy reaches devices of every wave through their own wave topics.
#include <algorithm>

#include "controller_fixture.hpp"

namespace {

const std::string R1 = "plant.app.1.1.0";
const std::string policy_topic = "ota/v1/fleets/plant/policy";

std::string hhmm(long h) {
    char b[16];
    std::snprintf(b, sizeof b, "%02ld:00", h % 24);
    return b;
}

long hour_now() {
    const auto now = std::chrono::system_clock::now();
    return std::chrono::duration_cast<std::chrono::hours>(now - std::chrono::floor<std::chrono::days>(now)).count();
}

bool saw_open(kit::SimDevice& d, const std::string& rollout) {
    const auto w = d.waves();
    return std::any_of(w.begin(), w.end(), [&](const kit::WaveSeen& s) { return s.rollout == rollout && s.state == "open"; });
}

}  // namespace

TEST_F(ControllerTest, AWindowSetWithOtaCtlHoldsTheNextWaveAndSurvivesARestart) {
    const auto cfg = config(three_waves());
    start_controller(cfg);
    start_devices(fleet_size);
    // a window that opens in two hours, on the early wave
    const auto start = hhmm(hour_now() + 2), end = hhmm(hour_now() + 3);
    auto set = ctl({"window-set", "plant", "early", "--start", start, "--end", end});
    ASSERT_EQ(set.exit_code, 0) << set.err;
    EXPECT_NE(set.out.find("fleet plant: window of wave early set"), std::string::npos) << set.out;
    auto policy = json::parse(retained(policy_topic).value_or("{}"), nullptr, false);
    ASSERT_TRUE(policy.contains("waves")) << policy.dump();
    EXPECT_EQ(policy["waves"][1]["policy"]["window"]["start"], start);
    EXPECT_EQ(policy["waves"][1]["overrides"]["window"]["set_by"], "operator");

    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_wave(R1, 1u, "waiting_window")) << ctl({"status", R1}).out << controller->log();
    for (int i = 3; i <= 8; ++i) EXPECT_FALSE(saw_open((*sims)[dev(i)], R1)) << dev(i);

    // restart, with the retained policy cleared first: the controller writes it again from SQLite
    ASSERT_EQ(controller->stop(), 0);
    ASSERT_EQ(kit::mosquitto_pub(*broker, pki, "controller", policy_topic, "", true).exit_code, 0);
    ASSERT_FALSE(retained(policy_topic));
    start_controller(cfg);
    ASSERT_TRUE(kit::wait_until([&] { return retained(policy_topic).has_value(); }, 15s)) << controller->log();
    policy = json::parse(*retained(policy_topic), nullptr, false);
    EXPECT_EQ(policy["waves"][1]["policy"]["window"]["start"], start);
    auto status = ctl_json({"status", R1});
    EXPECT_EQ(status["waves"][1]["state"], "waiting_window") << status.dump();
    auto table = ctl({"policy", "plant"});
    ASSERT_EQ(table.exit_code, 0) << table.err;
    EXPECT_NE(table.out.find("daily " + start + "-" + end), std::string::npos) << table.out;
    EXPECT_NE(table.out.find("window by operator"), std::string::npos) << table.out;

    // the audit log has the change under the operator
    bool audited = false;
    for (const auto& a : ctl_json({"audit", "--limit", "1000"}))
        audited = audited || (a.value("action", "") == "window_set" && a.value("actor", "") == "operator" &&
                              a.value("detail", "").starts_with("fleet plant: wave early"));
    EXPECT_TRUE(audited);

    // deleting the window lets the early wave open at once
    auto del = ctl({"window-delete", "plant", "early"});
    ASSERT_EQ(del.exit_code, 0) << del.err;
    EXPECT_NE(del.out.find("rollout " + R1 + ": now"), std::string::npos) << del.out;
    ASSERT_TRUE(kit::wait_until([&] { return saw_open((*sims)[dev(3)], R1); }, 30s)) << ctl({"status", R1}).out;
    ASSERT_TRUE(wait_state(R1, "completed", 60s)) << ctl({"status", R1}).out;
}

TEST_F(ControllerTest, AnInvalidWindowIsRefusedNamingTheFieldAndChangesNothing) {
    start_controller(config(three_waves()));
    auto bad = ctl({"window-set", "plant", "early", "--start", "25:00", "--end", "01:00"});
    EXPECT_EQ(bad.exit_code, 1);
    EXPECT_EQ(bad.err, "ota-ctl: request_invalid: request.window.start: expected HH:MM (UTC), got \"25:00\"\n");
    auto days = ctl({"window-set", "plant", "early", "--start", "01:00", "--end", "02:00", "--days", "sat,someday"});
    EXPECT_EQ(days.exit_code, 1);
    EXPECT_NE(days.err.find("request_invalid: request.window.days: \"someday\""), std::string::npos) << days.err;
    auto fleet = ctl({"window-set", "nope", "early", "--start", "01:00", "--end", "02:00"});
    EXPECT_EQ(fleet.err, "ota-ctl: not_found: no fleet nope\n");
    auto strategy = ctl({"strategy-set", "plant", "sideways"});
    EXPECT_NE(strategy.err.find("request_invalid: request.strategy"), std::string::npos) << strategy.err;
    auto policy = ctl_json({"policy", "plant"});
    EXPECT_EQ(policy["strategy"], "staggered") << policy.dump();
    EXPECT_TRUE(policy["overrides"].empty()) << policy.dump();
    EXPECT_FALSE(policy["waves"][1]["policy"].contains("window"));
}

TEST_F(ControllerTest, AllAtOnceOpensOneWaveForEveryDeviceOnTheirOwnWaveTopics) {
    start_controller(config(three_waves({{"approval", true}})));
    start_devices(fleet_size);
    auto set = ctl({"strategy-set", "plant", "all_at_once"});
    ASSERT_EQ(set.exit_code, 0) << set.err;
    EXPECT_NE(set.out.find("fleet plant: strategy all_at_once"), std::string::npos) << set.out;
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_state(R1, "completed", 60s)) << ctl({"status", R1}).out << controller->log();
    auto s = ctl_json({"status", R1});
    ASSERT_EQ(s["waves"].size(), 1u) << s.dump();
    EXPECT_EQ(s["waves"][0]["name"], "all");
    EXPECT_EQ(s["totals"]["succeeded"], fleet_size);
    for (auto* d : sims->all()) EXPECT_EQ(d->installed("app"), "1.1.0") << d->id();
}
