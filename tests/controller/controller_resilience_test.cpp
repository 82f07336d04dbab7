// ota-controller against the real broker when things go wrong: retained garbage from a device
// that replays at every restart, an outage longer than the device timeout, and a restart while a
// rollout is paused.
#include <thread>

#include "controller_fixture.hpp"

namespace {
const std::string R1 = "plant.app.1.1.0";
}  // namespace

// One device certificate used to be able to stop the controller for good: a retained status,
// inventory or online message that made it exit, again at every restart. Now each is counted and
// dropped, the controller stays up (also after a restart that reads them again) and the rollout
// completes.
TEST_F(ControllerTest, RetainedGarbageFromDevicesNeverStopsTheController) {
    start_controller(config(three_waves({{"approval", true}})));
    start_devices(fleet_size);
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_wave(R1, 0u, "waiting_approval"));
    const int seq = (*sims)[dev(1)].next_seq() + 1000;
    const std::string s = std::to_string(seq);
    auto pub = [&](int device, const std::string& suffix, const std::string& payload) {
        auto r = kit::mosquitto_pub(*broker, pki, dev(device), "ota/v1/devices/" + dev(device) + "/" + suffix, payload, true);
        ASSERT_EQ(r.exit_code, 0) << r.err;
    };
    pub(1, "status/app", R"({"device":"device-001","seq":)" + s + R"(,"stage":"failed","error":{"code":5},"rollout":")" + R1 + "\"}");
    pub(2, "status/app", R"({"device":"device-002","seq":)" + s + R"(,"stage":"downloading","progress":1e400,"rollout":")" + R1 + "\"}");
    pub(3, "status/app", "{\"device\":\"device-003\",\"seq\":" + s + ",\"stage\":\"f\xff\xfe\",\"rollout\":\"" + R1 + "\"}");
    pub(4, "inventory", "{\"components\":{\"app\":\"1.0.0\xff\"}}");
    pub(5, "online", "\xff\xfe\xfd");
    pub(6, "inventory", R"({"components":{"app":{"deep":[1e400]}}})");
    // the controller reads them, counts them and goes on
    ASSERT_TRUE(kit::wait_until([&] { return metrics().find("result=\"malformed\"} 6") != std::string::npos; }, 15s))
        << metrics();
    EXPECT_TRUE(controller->running()) << controller->log();
    // restarted, it reads all six again from the broker's retained store: still up
    EXPECT_EQ(controller->stop(), 0);
    start_controller(config(three_waves({{"approval", true}})));
    ASSERT_TRUE(kit::wait_until([&] { return metrics().find("result=\"malformed\"} 6") != std::string::npos; }, 15s))
        << metrics();
    ASSERT_TRUE(controller->running()) << controller->log();
    // nothing the garbage said was counted, and the rollout goes on
    auto st = ctl_json({"status", R1});
    EXPECT_EQ(st["waves"][0]["failed"], 0) << st.dump();
    ASSERT_EQ(ctl({"approve", R1}).exit_code, 0);
    ASSERT_TRUE(wait_state(R1, "completed", 60s)) << ctl({"status", R1}).out << controller->log();
    EXPECT_EQ(ctl_json({"status", R1})["totals"]["succeeded"], fleet_size);
    EXPECT_TRUE(controller->running());
}

// Killed during a wave and back after more than device_timeout_s, while the wave's devices
// reported success: the controller reads their retained statuses and completes the wave; it
// neither halts nor raises an alert.
TEST_F(ControllerTest, AnOutageLongerThanTheDeviceTimeoutHaltsNoHealthyWave) {
    const auto cfg = config(three_waves({{"device_timeout_s", 2}, {"max_failures", 1}}));
    start_controller(cfg);
    start_devices(fleet_size, {kit::SimBehaviour::Outcome::succeed, 1500ms, ""});
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_wave(R1, 0u, "open"));
    controller->kill(SIGKILL);
    // the canary devices finish while the controller is down...
    ASSERT_TRUE(kit::wait_until([&] { return (*sims)[dev(1)].installed("app") == "1.1.0" &&
                                             (*sims)[dev(2)].installed("app") == "1.1.0"; }, 15s));
    // ...and the outage lasts longer than their device timeout
    std::this_thread::sleep_for(3s);
    start_controller(cfg);
    ASSERT_TRUE(wait_state(R1, "completed", 60s)) << ctl({"status", R1}).out << controller->log();
    const auto st = ctl_json({"status", R1});
    EXPECT_EQ(st["totals"]["succeeded"], fleet_size);
    EXPECT_EQ(st["totals"]["silent"], 0);
    EXPECT_FALSE(retained("ota/v1/alerts/" + R1).has_value()) << "no alert was ever raised";
    for (const auto& a : audit_actions(R1)) EXPECT_NE(a.rfind("halted", 0), 0u) << a;
}

// Pause, restart with SIGTERM, resume: the waves that were done are still `open` on their
// retained topics, and the rollout completes with every wave message `open`.
TEST_F(ControllerTest, APausedRestartKeepsDoneWavesOpen) {
    const auto cfg = config(three_waves({}, {{"approval", true}}));
    start_controller(cfg);
    start_devices(fleet_size, {kit::SimBehaviour::Outcome::succeed, 2000ms, ""});  // time to pause the early wave
    publish_release("app", "1.1.0");
    ASSERT_TRUE(wait_wave(R1, 1u, "waiting_approval"));
    ASSERT_EQ(ctl({"approve", R1}).exit_code, 0);
    ASSERT_TRUE(wait_wave(R1, 1u, "open"));
    ASSERT_EQ(ctl({"pause", R1}).exit_code, 0);
    EXPECT_EQ(controller->stop(), 0);
    start_controller(cfg);
    auto wave_state = [&](const std::string& wave) {
        auto m = retained("ota/v1/fleets/plant/waves/" + wave + "/app");
        return m ? json::parse(*m, nullptr, false).value("state", "") : std::string("none");
    };
    EXPECT_EQ(wave_state("canary"), "open");
    ASSERT_EQ(ctl({"resume", R1}).exit_code, 0);
    ASSERT_TRUE(wait_state(R1, "completed", 60s)) << ctl({"status", R1}).out << controller->log();
    for (const char* w : {"canary", "early", "broad"}) EXPECT_EQ(wave_state(w), "open") << w;
}

// A second ota-controller started on the same database exits at once with a one-line error that
// names the database and the first one's pid; the first goes on.
TEST_F(ControllerTest, ASecondControllerOnTheSameDatabaseRefusesToStart) {
    const auto cfg = config(three_waves());
    start_controller(cfg);
    auto other = cfg;
    other["mqtt"]["client_id"] = "controller-2";
    other["metrics_listen"] = "127.0.0.1:" + std::to_string(kit::free_port());
    kit::write_file(dir / "controller-2.json", other.dump(2));
    auto r = kit::run({OTA_CONTROLLER_BIN, "--config", (dir / "controller-2.json").string()}, 20s);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("in use by another ota-controller (pid " + std::to_string(controller->pid()) + ")"), std::string::npos)
        << r.err;
    EXPECT_TRUE(controller->running());
}
