// ota-controller end to end against the real broker, with simulated devices and ota-ctl.
#include <algorithm>

#include "controller_fixture.hpp"

namespace {

const std::string R1 = "plant.app.1.1.0";

std::vector<kit::WaveSeen> opens(kit::SimDevice& d, const std::string& rollout) {
    std::vector<kit::WaveSeen> out;
    for (const auto& w : d.waves())
        if (w.rollout == rollout && w.state == "open") out.push_back(w);
    return out;
}

}  // namespace

TEST_F(ControllerTest, ThreeWavesCompleteInOrderWithSoak) {
    start_controller(config(three_waves({{"soak_s", 1}}, {{"soak_s", 1}}), {{"device_timeout_s", 60}}));
    start_devices();
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_state(R1, "completed", 60s)) << ctl({"status", R1}).out << controller->log();

    auto s = ctl_json({"status", R1});
    EXPECT_EQ(s["totals"]["devices"], fleet_size);
    EXPECT_EQ(s["totals"]["succeeded"], fleet_size);
    EXPECT_EQ(s["totals"]["failed"], 0);
    ASSERT_EQ(s["waves"].size(), 3u);
    EXPECT_EQ(s["waves"][0]["devices"], 2);
    EXPECT_EQ(s["waves"][1]["devices"], 6);
    EXPECT_EQ(s["waves"][2]["devices"], 12);
    for (auto* d : sims->all()) {
        EXPECT_EQ(d->installed("app"), "1.1.0") << d->id();
        EXPECT_EQ(d->starts(), 1) << d->id();
    }
    // Wave N+1 opened only after every device of wave N succeeded (work 100 ms) and the soak (1 s).
    auto wave_times = [&](int from, int to) {
        std::vector<std::chrono::steady_clock::time_point> t;
        for (int i = from; i <= to; ++i)
            for (const auto& w : opens((*sims)[dev(i)], R1)) t.push_back(w.at);
        return t;
    };
    const auto canary = wave_times(1, 2), early = wave_times(3, 8), broad = wave_times(9, 20);
    ASSERT_EQ(canary.size(), 2u);
    ASSERT_EQ(early.size(), 6u);
    ASSERT_EQ(broad.size(), 12u);
    EXPECT_GE(*std::min_element(early.begin(), early.end()) - *std::max_element(canary.begin(), canary.end()), 1000ms);
    EXPECT_GE(*std::min_element(broad.begin(), broad.end()) - *std::max_element(early.begin(), early.end()), 1000ms);
    const std::vector<std::string> want{"created", "wave_opened canary", "wave_succeeded canary", "wave_done canary",
                                        "wave_opened early", "wave_succeeded early", "wave_done early",
                                        "wave_opened broad", "wave_succeeded broad", "wave_done broad", "completed"};
    EXPECT_EQ(audit_actions(R1), want);
    // The retained state shows the same to anyone with mosquitto_sub.
    auto retained_state = state(R1);
    EXPECT_EQ(retained_state["state"], "completed");
    EXPECT_EQ(retained_state["totals"]["succeeded"], fleet_size);
}

TEST_F(ControllerTest, CanaryFailuresHaltTheWaveAndLaterWavesNeverReceiveIt) {
    start_controller(config(three_waves({{"max_failures", 1}})));
    start_devices(fleet_size);
    (*sims)[dev(2)].set_behaviour({kit::SimBehaviour::Outcome::fail, 50ms, "health_check_failed"});
    // device-002's failure arrives after device-001 set its behaviour: set before the release.
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_state(R1, "halted", 30s)) << controller->log();

    auto wave = json::parse(retained("ota/v1/fleets/plant/waves/canary/app").value_or("{}"));
    EXPECT_EQ(wave["state"], "halted");
    EXPECT_EQ(wave["rollout"], R1);
    auto alert = json::parse(retained("ota/v1/alerts/" + R1).value_or("{}"));
    EXPECT_EQ(alert["state"], "firing");
    EXPECT_EQ(alert["wave"], "canary");
    EXPECT_NE(alert.value("reason", "").find("max_failures 1"), std::string::npos) << alert.dump();
    EXPECT_FALSE(retained("ota/v1/fleets/plant/waves/early/app").has_value());
    std::this_thread::sleep_for(500ms);
    for (int i = 3; i <= fleet_size; ++i) EXPECT_TRUE((*sims)[dev(i)].waves().empty()) << dev(i);
    auto s = ctl_json({"status", R1});
    EXPECT_EQ(s["waves"][0]["failed"], 1);
    EXPECT_EQ(s["waves"][0]["succeeded"], 1);
    EXPECT_EQ(s["waves"][1]["state"], "pending");
    // ota-ctl watch ends on the halt with status 4 and says why.
    auto w = ctl({"watch", R1});
    EXPECT_EQ(w.exit_code, 4) << w.out << w.err;
    EXPECT_NE(w.out.find("halted"), std::string::npos);
    EXPECT_NE(metrics().find("ota_controller_halts_total 1"), std::string::npos);
}

TEST_F(ControllerTest, ResumeAcceptsTheFailuresAndTheRolloutCompletes) {
    start_controller(config(three_waves({{"max_failures", 1}, {"success_percent", 50}})));
    start_devices(fleet_size);
    (*sims)[dev(2)].set_behaviour({kit::SimBehaviour::Outcome::fail, 50ms, "install_failed"});
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_state(R1, "halted", 30s)) << controller->log();
    auto r = ctl({"resume", R1});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(wait_state(R1, "completed", 60s)) << ctl({"status", R1}).out << controller->log();
    auto alert = json::parse(retained("ota/v1/alerts/" + R1).value_or("{}"));
    EXPECT_EQ(alert["state"], "resolved");
    EXPECT_EQ(alert["resolved_by"], "operator");  // the CN of ota-ctl's certificate
    for (int i = 3; i <= fleet_size; ++i) EXPECT_EQ((*sims)[dev(i)].installed("app"), "1.1.0") << dev(i);
    auto actions = audit_actions(R1);
    EXPECT_NE(std::find(actions.begin(), actions.end(), "resumed"), actions.end());
    // resume of a completed rollout is a state conflict, with a clear error
    auto again = ctl({"resume", R1});
    EXPECT_EQ(again.exit_code, 1);
    EXPECT_NE(again.err.find("state_conflict"), std::string::npos) << again.err;
}

TEST_F(ControllerTest, AbortAfterAHaltKeepsEveryLaterDeviceOnItsVersion) {
    start_controller(config(three_waves({{"max_failures", 1}})));
    start_devices(fleet_size);
    (*sims)[dev(1)].set_behaviour({kit::SimBehaviour::Outcome::fail, 50ms, "health_check_failed"});
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_state(R1, "halted", 30s)) << controller->log();
    auto r = ctl({"abort", R1});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(wait_state(R1, "aborted", 10s));
    auto wave = json::parse(retained("ota/v1/fleets/plant/waves/canary/app").value_or("{}"));
    EXPECT_EQ(wave["state"], "aborted");
    std::this_thread::sleep_for(500ms);
    for (int i = 3; i <= fleet_size; ++i) {
        EXPECT_EQ((*sims)[dev(i)].installed("app"), "1.0.0") << dev(i);
        EXPECT_EQ((*sims)[dev(i)].starts(), 0) << dev(i);
    }
    auto a = ctl({"audit", "--rollout", R1});
    EXPECT_NE(a.out.find("operator"), std::string::npos) << a.out;
    EXPECT_NE(a.out.find("aborted"), std::string::npos) << a.out;
}

TEST_F(ControllerTest, ASilentDeviceCountsAsFailedAfterTheDeviceTimeout) {
    start_controller(config(three_waves({{"max_failures", 1}, {"device_timeout_s", 2}})));
    start_devices(fleet_size);
    (*sims)[dev(2)].set_behaviour({kit::SimBehaviour::Outcome::silent, 0ms, ""});
    const auto t0 = std::chrono::steady_clock::now();
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_state(R1, "halted", 30s)) << controller->log();
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 2s);
    auto s = ctl_json({"status", R1});
    EXPECT_EQ(s["waves"][0]["silent"], 1);
    EXPECT_EQ(s["waves"][0]["succeeded"], 1);
    auto alert = json::parse(retained("ota/v1/alerts/" + R1).value_or("{}"));
    EXPECT_EQ(alert["counts"]["silent"], 1);
}

TEST_F(ControllerTest, ApprovalGateWaitsForOtaCtlApprove) {
    start_controller(config(three_waves({}, {{"approval", true}})));
    start_devices(fleet_size);
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_wave(R1, 1u, "waiting_approval")) << ctl({"status", R1}).out;
    std::this_thread::sleep_for(1s);
    for (int i = 3; i <= 8; ++i) EXPECT_TRUE(opens((*sims)[dev(i)], R1).empty()) << dev(i);
    auto a = ctl({"approve", R1});
    ASSERT_EQ(a.exit_code, 0) << a.err;
    EXPECT_NE(a.out.find("wave early approved"), std::string::npos) << a.out;
    ASSERT_TRUE(wait_state(R1, "completed", 60s)) << ctl({"status", R1}).out;
    for (auto* d : sims->all()) EXPECT_EQ(d->installed("app"), "1.1.0") << d->id();
    auto again = ctl({"approve", R1});
    EXPECT_EQ(again.exit_code, 1);
    EXPECT_NE(again.err.find("state_conflict"), std::string::npos) << again.err;
}

TEST_F(ControllerTest, AMaintenanceWindowKeepsTheWaveClosedOutsideIt) {
    const auto now = std::chrono::system_clock::now();
    const auto hour = std::chrono::duration_cast<std::chrono::hours>(now - std::chrono::floor<std::chrono::days>(now)).count();
    auto hhmm = [](long h) {
        char b[8];
        std::snprintf(b, sizeof b, "%02ld:00", h % 24);
        return std::string(b);
    };
    // canary: a window that contains now; early: one that starts in two hours
    start_controller(config(three_waves({{"window", {{"start", hhmm(hour)}, {"end", hhmm(hour + 1)}}}},
                                        {{"window", {{"start", hhmm(hour + 2)}, {"end", hhmm(hour + 3)}}}})));
    start_devices(fleet_size);
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_wave(R1, 1u, "waiting_window")) << ctl({"status", R1}).out;
    EXPECT_EQ((*sims)[dev(1)].installed("app"), "1.1.0");
    std::this_thread::sleep_for(1s);
    for (int i = 3; i <= fleet_size; ++i) EXPECT_TRUE((*sims)[dev(i)].waves().empty()) << dev(i);
}

TEST_F(ControllerTest, ANewerReleaseSupersedesAndDevicesAtTargetAreNotReupdated) {
    start_controller(config(three_waves({}, {{"approval", true}})));
    sims = std::make_unique<kit::SimFleet>(*broker, pki);
    // device-002 and the broad devices 15..20 already run 1.2.0
    for (int i = 1; i <= fleet_size; ++i) {
        std::map<std::string, std::string> labels;
        if (i >= 3 && i <= 8) labels["ring"] = "early";
        sims->add(dev(i), labels, {{"app", (i == 2 || i >= 15) ? "1.2.0" : "1.0.0"}});
    }
    ASSERT_TRUE(kit::wait_until([&] {
        for (auto* d : sims->all())
            if (d->assignment().empty()) return false;
        return true;
    }, 15s));
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_wave(R1, 1u, "waiting_approval")) << ctl({"status", R1}).out;
    const std::string R2 = "plant.app.1.2.0";
    publish_release("app", "1.2.0");
    ASSERT_TRUE(wait_state(R1, "superseded", 20s)) << controller->log();
    auto wave = json::parse(retained("ota/v1/fleets/plant/waves/canary/app").value_or("{}"));
    ASSERT_TRUE(kit::wait_until([&] { return ctl_json({"status", R2}).contains("waves"); }, 20s, 200ms));
    ASSERT_TRUE(wait_wave(R2, 1u, "waiting_approval")) << ctl({"status", R2}).out;
    auto s2 = ctl_json({"status", R2});
    EXPECT_EQ(s2["waves"][0]["already"], 1);     // device-002
    EXPECT_EQ(s2["waves"][0]["succeeded"], 2);   // device-001 updated, device-002 already there
    EXPECT_EQ(s2["waves"][2]["already"], 6);     // 15..20
    EXPECT_EQ((*sims)[dev(2)].starts(), 0);      // never re-updated
    EXPECT_EQ((*sims)[dev(1)].installed("app"), "1.2.0");
    wave = json::parse(retained("ota/v1/fleets/plant/waves/canary/app").value_or("{}"));
    EXPECT_EQ(wave["rollout"], R2);
    EXPECT_EQ(wave["state"], "open");
    auto r1 = ctl_json({"status", R1});
    EXPECT_EQ(r1["reason"], "superseded by 1.2.0");
    // an older release than the latest rollout is not rolled out again
    publish_release("app", "1.1.5");
    std::this_thread::sleep_for(500ms);
    EXPECT_EQ(ctl_json({"status", "plant.app.1.1.5"}).count("waves"), 0u);
}

TEST_F(ControllerTest, KillNineMidRolloutThenRestartKeepsStateAndCountsExact) {
    start_controller(config(three_waves({{"soak_s", 2}}, {{"soak_s", 2}})));
    start_devices(fleet_size, {kit::SimBehaviour::Outcome::succeed, 300ms, ""});
    publish_release("app", "1.1.0");
    // kill while the early wave is open or soaking
    ASSERT_TRUE(kit::wait_until([&] {
        for (int i = 3; i <= 8; ++i)
            if (!opens((*sims)[dev(i)], R1).empty()) return true;
        return false;
    }, 30s, 20ms));
    controller->kill(SIGKILL);
    std::this_thread::sleep_for(500ms);
    start_controller(config(three_waves({{"soak_s", 2}}, {{"soak_s", 2}})));
    ASSERT_TRUE(wait_state(R1, "completed", 60s)) << ctl({"status", R1}).out << controller->log();
    auto s = ctl_json({"status", R1});
    EXPECT_EQ(s["totals"]["devices"], fleet_size);
    EXPECT_EQ(s["totals"]["succeeded"], fleet_size);
    auto actions = audit_actions(R1);
    for (const char* w : {"wave_opened canary", "wave_opened early", "wave_opened broad"})
        EXPECT_EQ(std::count(actions.begin(), actions.end(), w), 1) << w;
    for (auto* d : sims->all()) EXPECT_EQ(d->starts(), 1) << d->id();
    // no broad device was offered the release before the early wave finished its soak
    std::chrono::steady_clock::time_point early_last{}, broad_first = std::chrono::steady_clock::time_point::max();
    for (int i = 3; i <= 8; ++i)
        for (const auto& w : opens((*sims)[dev(i)], R1)) early_last = std::max(early_last, w.at);
    for (int i = 9; i <= fleet_size; ++i)
        for (const auto& w : opens((*sims)[dev(i)], R1)) broad_first = std::min(broad_first, w.at);
    EXPECT_GE(broad_first - early_last, 2000ms);
}

TEST_F(ControllerTest, MalformedDuplicateAndOutOfOrderStatusChangeNoCount) {
    start_controller(config(three_waves({}, {{"approval", true}})));
    start_devices(fleet_size - 1);  // device-020 stays unknown to the controller
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_wave(R1, 1u, "waiting_approval"));
    const auto before = ctl_json({"status", R1})["waves"];
    auto& d1 = (*sims)[dev(1)];
    const std::string topic = "ota/v1/devices/" + dev(1) + "/status/app";
    const int last = d1.next_seq();  // newer than anything device-001 sent
    for (int i = 0; i < 1000; ++i) {
        std::string p;
        switch (i % 8) {
            case 0: p = "{not json"; break;
            case 1: p = R"({"stage":"failed"})"; break;                                   // no seq
            case 2: p = json{{"seq", "x"}, {"stage", "failed"}}.dump(); break;            // bad seq
            case 3: p = json{{"seq", 1}, {"stage", "failed"}, {"rollout", R1}}.dump(); break;  // out of order
            case 4: p = json{{"seq", last - 1}, {"stage", "failed"}, {"rollout", R1}}.dump(); break;
            case 5: p = json{{"seq", last + 1 + i}, {"stage", "failed"}, {"rollout", "plant.app.9.9.9"}}.dump(); break;
            case 6: p = json{{"seq", last + 1 + i}, {"stage", "failed"}, {"rollout", R1}, {"device", dev(2)}}.dump(); break;
            case 7: p = "[1,2,3]"; break;
        }
        d1.publish(topic, p, false);
    }
    d1.publish(topic, std::string(70 * 1024, 'x'), false);  // oversize
    // a device the controller never saw (no online, no inventory)
    auto unknown = kit::mosquitto_pub(*broker, pki, dev(20), "ota/v1/devices/" + dev(20) + "/status/app",
                                      json{{"seq", 99}, {"stage", "failed"}, {"rollout", R1}}.dump());
    EXPECT_EQ(unknown.exit_code, 0);
    ASSERT_TRUE(kit::wait_until([&] {
        const auto m = metrics();
        return m.find("ota_controller_messages_total{result=\"oversize\"} 1") != std::string::npos &&
               m.find("ota_controller_messages_total{result=\"unknown_device\"} 1") != std::string::npos;
    }, 20s, 200ms)) << metrics();
    EXPECT_TRUE(controller->running());
    EXPECT_EQ(ctl_json({"status", R1})["waves"], before);
    EXPECT_EQ(ctl_json({"status", R1})["state"], "active");
    // device-001 sent seq 1 (downloading) and 2 (succeeded); `last` is 3. Cases 0, 1, 2, 6, 7 are
    // malformed (625); case 5 raises the seq each round but names another rollout (125); cases 3
    // and 4 are then older than the last seq (249), except case 4 of the first round, which
    // repeats seq 2 (1 duplicate).
    const auto m = metrics();
    EXPECT_NE(m.find("result=\"malformed\"} 625"), std::string::npos) << m;
    EXPECT_NE(m.find("result=\"out_of_order\"} 249"), std::string::npos) << m;
    EXPECT_NE(m.find("result=\"duplicate\"} 1\n"), std::string::npos) << m;
    EXPECT_NE(m.find("result=\"other_rollout\"} 125"), std::string::npos) << m;
    EXPECT_NE(m.find("result=\"unknown_device\"} 1\n"), std::string::npos) << m;
}

TEST_F(ControllerTest, OtaCtlListsRolloutsAndDevicesWithVersionSkew) {
    start_controller(config(three_waves({}, {{"approval", true}})));
    start_devices(fleet_size);
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_wave(R1, 1u, "waiting_approval"));
    auto list = ctl({"rollouts"});
    ASSERT_EQ(list.exit_code, 0) << list.err;
    EXPECT_NE(list.out.find(R1), std::string::npos);
    EXPECT_NE(list.out.find("active"), std::string::npos);
    auto devices = ctl_json({"devices", "--outdated"});
    EXPECT_EQ(devices["devices"].size(), 18u);  // all but the two canary devices
    EXPECT_EQ(devices["skew"]["app"]["1.1.0"], 2);
    EXPECT_EQ(devices["skew"]["app"]["1.0.0"], 18);
    auto text = ctl({"devices"});
    EXPECT_NE(text.out.find("up_to_date"), std::string::npos);
    EXPECT_NE(text.out.find("outdated"), std::string::npos);
    for (const char* cmd : {"rollouts", "status", "watch", "approve", "pause", "resume", "abort", "retry", "update",
                            "devices", "audit"}) {
        auto h = kit::run({OTA_CTL_BIN, cmd, "--help"});
        EXPECT_EQ(h.exit_code, 0) << cmd;
        EXPECT_NE(h.out.find("Usage"), std::string::npos) << cmd;
    }
    auto missing = ctl({"status", "no-such-rollout"});
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_NE(missing.err.find("not_found"), std::string::npos) << missing.err;
}

TEST_F(ControllerTest, PauseKeepsTheNextWaveClosedUntilResume) {
    start_controller(config(three_waves({{"soak_s", 2}})));
    start_devices(fleet_size);
    publish_release("app", "1.1.0");
    ASSERT_TRUE(kit::wait_until([&] { return ctl_json({"status", R1})["waves"][0].value("state", "") == "soaking"; },
                                30s, 100ms)) << ctl({"status", R1}).out;
    auto p = ctl({"pause", R1});
    ASSERT_EQ(p.exit_code, 0) << p.err;
    EXPECT_NE(p.out.find("paused"), std::string::npos);
    std::this_thread::sleep_for(3s);  // longer than the soak
    auto s = ctl_json({"status", R1});
    EXPECT_EQ(s["state"], "paused");
    EXPECT_EQ(s["waves"][1]["state"], "pending");
    for (int i = 3; i <= fleet_size; ++i) EXPECT_TRUE((*sims)[dev(i)].waves().empty()) << dev(i);
    auto again = ctl({"pause", R1});
    EXPECT_EQ(again.exit_code, 1);
    EXPECT_NE(again.err.find("state_conflict"), std::string::npos);
    ASSERT_EQ(ctl({"resume", R1}).exit_code, 0);
    ASSERT_TRUE(wait_state(R1, "completed", 60s)) << ctl({"status", R1}).out;
    for (auto* d : sims->all()) EXPECT_EQ(d->installed("app"), "1.1.0") << d->id();
}

TEST_F(ControllerTest, RetryReinstallsTheFailedDevicesAndTheRolloutGoesOn) {
    start_controller(config(three_waves({{"max_failures", 1}})));
    start_devices(fleet_size);
    (*sims)[dev(2)].set_behaviour({kit::SimBehaviour::Outcome::fail, 50ms, "download_failed"});
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_state(R1, "halted", 30s)) << controller->log();
    (*sims)[dev(2)].set_behaviour({});  // the cause is fixed (say the artifact server is back)
    auto r = ctl({"retry", R1});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("1 devices retried"), std::string::npos) << r.out;
    ASSERT_TRUE(wait_state(R1, "completed", 60s)) << ctl({"status", R1}).out << controller->log();
    EXPECT_EQ((*sims)[dev(2)].starts(), 2);
    EXPECT_EQ((*sims)[dev(2)].installed("app"), "1.1.0");
    auto s = ctl_json({"status", R1});
    EXPECT_EQ(s["totals"]["succeeded"], fleet_size);
    EXPECT_EQ(s["totals"]["failed"], 0);
}

TEST_F(ControllerTest, UpdateOneDeviceNowOutsideItsWave) {
    start_controller(config(three_waves({}, {{"approval", true}})));
    start_devices(fleet_size);
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_wave(R1, 1u, "waiting_approval"));
    auto u = ctl({"update", dev(12), "app"});
    ASSERT_EQ(u.exit_code, 0) << u.err;
    EXPECT_NE(u.out.find("install of app 1.1.0 requested"), std::string::npos) << u.out;
    ASSERT_TRUE(kit::wait_until([&] { return (*sims)[dev(12)].installed("app") == "1.1.0"; }, 20s));
    ASSERT_TRUE(kit::wait_until([&] { return ctl_json({"status", R1})["waves"][2].value("succeeded", 0) == 1; }, 20s, 200ms));
    EXPECT_EQ((*sims)[dev(13)].installed("app"), "1.0.0");
    auto missing = ctl({"update", "device-999", "app"});
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_NE(missing.err.find("not_found"), std::string::npos) << missing.err;
}
