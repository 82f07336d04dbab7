// ota-agent end to end: the file install type, release checks, duplicates, halts, config.
#include "agent_fixture.hpp"
#include "ota/files.hpp"
#include "ota/manifest.hpp"

TEST_F(AgentTest, FileReleaseFromARetainedWaveMessageIsInstalled) {
    auto rel = make_release("2026-03-10");
    assign();
    offer(rel);
    auto r = run_once(write_config());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"}) << r.err;
    EXPECT_EQ(kit::read_file(target() / "model-2026-03-10.trt"), rel.content);
    auto s = status();
    ASSERT_FALSE(s.is_null()) << r.err;
    EXPECT_EQ(s["stage"], "succeeded");
    EXPECT_EQ(s["version"], "2026-03-10");
    EXPECT_EQ(s["rollout"], "r-2026-03-10");
    auto inv = kit::mosquitto_sub(*broker, pki, "operator", "ota/v1/devices/" + device + "/inventory", 1, 1500ms);
    ASSERT_EQ(inv.messages.size(), 1u);
    EXPECT_EQ(json::parse(inv.messages[0].second)["components"]["detection-model"], "2026-03-10");
}

TEST_F(AgentTest, BadReleasesAreRejectedAndNothingIsInstalled) {
    struct Case {
        std::string name;
        Release release;
        std::string code;
    };
    kit::write_file(target() / "model-2026-03-10.trt", "installed");  // the working version
    auto tampered = make_release("2026-04-01");
    {
        auto env = json::parse(tampered.envelope);
        env["manifest"]["artifact"]["url"] = "https://evil.example/model.trt";
        tampered.envelope = env.dump();
    }
    std::vector<Case> cases;
    cases.push_back({"bad signature", tampered, "signature_invalid"});
    cases.push_back({"unknown key", make_release("2026-04-02", "untrusted"), "unknown_key"});
    cases.push_back({"older version (replay)", make_release("2026-03-01"), "version_not_newer"});
    cases.push_back({"wrong platform", make_release("2026-04-03", "release", {"--platform", "linux/riscv64"}), "platform_incompatible"});
    cases.push_back({"agent too old", make_release("2026-04-04", "release", {"--min-agent-version", "99.0.0"}), "agent_too_old"});
    {
        // Expired: the same release re-signed (with the trusted key) with an expiry in the past.
        auto rel = make_release("2026-04-05");
        auto m = ota::Manifest::from_json(json::parse(rel.envelope)["manifest"]);
        ASSERT_TRUE(m) << m.error().message;
        m->created = ota::now_utc() - std::chrono::days{30};
        m->expires = ota::now_utc() - std::chrono::days{1};
        auto key = ota::crypto::PrivateKey::load(keys->path() / "release.key");
        ASSERT_TRUE(key);
        rel.envelope = ota::make_envelope(*m, *key);
        cases.push_back({"expired manifest", rel, "manifest_expired"});
    }
    const auto config = write_config();
    assign();
    for (const auto& c : cases) {
        offer(c.release);
        auto r = run_once(config);
        EXPECT_EQ(r.exit_code, 0) << c.name << ": " << r.err;
        auto s = status();
        ASSERT_FALSE(s.is_null()) << c.name;
        EXPECT_EQ(s["stage"], "rejected") << c.name;
        EXPECT_EQ(s["error"]["code"], c.code) << c.name << ": " << s.dump();
        EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"}) << c.name;
        EXPECT_EQ(kit::read_file(target() / "model-2026-03-10.trt"), "installed") << c.name;
    }
}

// Every status report is a retained message the broker stores and the controller handles, for
// each device: a quick update is four of them (no progress stream, no health_checking without a
// health check), five with a health check.
TEST_F(AgentTest, AQuickUpdateIsFourStatusReports) {
    assign();
    const auto stages_of = [&](const json& extra, const std::string& version) {
        // (the retained report of the update before comes first: counted by version below)
        kit::Subscriber live(*broker, pki, "operator", "ota/v1/devices/" + device + "/status/detection-model");
        EXPECT_TRUE(live.subscribed()) << live.log();
        offer(make_release(version, "release", {}, 2'000'000));
        auto r = run_once(write_config(extra));
        EXPECT_EQ(r.exit_code, 0) << r.err;
        std::vector<std::string> stages;
        for (const auto& [topic, payload] : live.wait(20, 1500ms).messages) {
            auto s = json::parse(payload);
            if (s.value("version", "") == version) stages.push_back(s.value("stage", ""));
        }
        return stages;
    };
    using V = std::vector<std::string>;
    EXPECT_EQ(stages_of(json::object(), "2026-03-10"), (V{"downloading", "verifying", "installing", "succeeded"}));
    const json with_check{{"components", {{"detection-model", {{"health", {{"command", {"true"}}}}}}}}};
    EXPECT_EQ(stages_of(with_check, "2026-03-11"),
              (V{"downloading", "verifying", "installing", "health_checking", "succeeded"}));
}

// The device's owner pins what the component is and where it goes (components.<name>.type and
// .target, which also open the systemd sandbox): a validly signed release for another target or
// as another type is rejected before any download, and the pinned one installs.
TEST_F(AgentTest, AReleaseForAnotherTargetThanTheConfigPinsIsRejected) {
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    const auto elsewhere = dir / "elsewhere";
    fs::create_directories(elsewhere);
    const auto config = write_config(
        {{"components", {{"detection-model", {{"type", "file"}, {"target", target().string() + "/"}}}}}});
    assign();
    struct Case {
        std::string name;
        Release release;
        std::string message;
    };
    const std::vector<Case> cases{
        {"another directory",
         sign_release("2026-04-01", "model", "model-2026-04-01.trt", {"--install", "file", "--target", elsewhere.string()}),
         "to " + elsewhere.string() + "; this device allows only " + target().string() + "/ (components.detection-model.target)"},
        {"another type",
         sign_release("2026-04-02", "#!/bin/sh\n", "model-2026-04-02.trt",
                      {"--install", "binary", "--target", (target() / "model-2026-04-02.trt").string()}),
         "as binary; this device allows only file (components.detection-model.type)"}};
    for (const auto& c : cases) {
        offer(c.release);
        auto r = run_once(config);
        EXPECT_EQ(r.exit_code, 0) << c.name << ": " << r.err;
        auto s = status();
        EXPECT_EQ(s["stage"], "rejected") << c.name << ": " << s.dump();
        EXPECT_EQ(s["error"]["code"], "target_not_allowed") << c.name << ": " << s.dump();
        EXPECT_NE(s["error"]["message"].get<std::string>().find(c.message), std::string::npos) << s.dump();
        EXPECT_TRUE(fs::is_empty(elsewhere)) << c.name;
        EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"}) << c.name;
    }
    offer(make_release("2026-04-03"));
    auto r = run_once(config);
    EXPECT_EQ(status()["stage"], "succeeded") << r.err;
    EXPECT_TRUE(fs::exists(target() / "model-2026-04-03.trt")) << r.err;
}

TEST_F(AgentTest, TamperedArtifactFailsWithHashMismatchAndKeepsTheWorkingVersion) {
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    auto rel = make_release("2026-05-01");
    // Same size, different bytes on the server.
    auto served = server->root() / "models" / fleet / "model-2026-05-01.trt";
    auto bytes = kit::read_file(served);
    bytes[1000] ^= 1;
    kit::write_file(served, bytes);
    assign();
    offer(rel);
    auto r = run_once(write_config());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto s = status();
    ASSERT_FALSE(s.is_null()) << r.err;
    EXPECT_EQ(s["stage"], "failed");
    EXPECT_EQ(s["error"]["code"], "hash_mismatch") << s.dump();
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"});
}

TEST_F(AgentTest, FailingHealthCheckRollsBack) {
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    auto rel = make_release("2026-06-01");
    assign();
    offer(rel);
    auto r = run_once(write_config({{"components", {{"detection-model", {{"health", {{"command", {"/bin/false"}}, {"retries", 1}, {"interval_ms", 100}}}}}}}}));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto s = status();
    ASSERT_FALSE(s.is_null()) << r.err;
    EXPECT_EQ(s["stage"], "rolled_back");
    EXPECT_EQ(s["error"]["code"], "health_check_failed") << s.dump();
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"});
    EXPECT_EQ(kit::read_file(target() / "model-2026-03-10.trt"), "installed");
}

TEST_F(AgentTest, TheSameReleaseDelivered50TimesInstallsOnce) {
    auto rel = make_release("2026-07-01");
    const auto config = write_config();
    kit::Subscriber statuses(*broker, pki, "operator", "ota/v1/devices/" + device + "/status/detection-model");
    ASSERT_TRUE(statuses.subscribed());
    kit::Process agent({OTA_AGENT_BIN, "--config", config.string()}, dir / "agent.log");
    assign();
    offer(rel);
    for (int i = 0; i < 49; ++i) offer(rel, "open", false);
    ASSERT_TRUE(kit::wait_until([&] { return fs::exists(target() / "model-2026-07-01.trt"); }, 20s)) << agent.log();
    // Let every duplicate arrive and be handled.
    std::this_thread::sleep_for(2s);
    EXPECT_EQ(agent.stop(), 0) << agent.log();
    auto got = statuses.stop();
    int succeeded = 0;
    for (const auto& [topic, payload] : got.messages)
        if (!payload.empty() && json::parse(payload)["stage"] == "succeeded") ++succeeded;
    EXPECT_EQ(succeeded, 1) << agent.log();
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-07-01.trt"});
}

TEST_F(AgentTest, HaltedWaveStartsNothing) {
    auto rel = make_release("2026-08-01");
    assign();
    offer(rel, "halted");
    auto r = run_once(write_config());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(installed_files().empty());
    EXPECT_TRUE(status().is_null());
}

TEST_F(AgentTest, NoAutoUpdateDownloadsNothing) {
    auto rel = make_release("2026-09-01");
    assign();
    offer(rel);
    auto r = kit::run({OTA_AGENT_BIN, "--config", write_config().string(), "--once", "--once-wait", "15", "--no-auto-update"}, 45s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(installed_files().empty());
    EXPECT_NE(r.err.find("auto-update is off"), std::string::npos) << r.err;
}

TEST_F(AgentTest, ConfigErrorsAreOneLineAndNamed) {
    kit::write_file(dir / "bad.json", R"({"device_id": "d", "mqtt": {"broker": 5}})");
    auto r = kit::run({OTA_AGENT_BIN, "--config", (dir / "bad.json").string(), "--once"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("agent.mqtt.broker: expected a string"), std::string::npos) << r.err;
    auto p = kit::run({OTA_AGENT_BIN, "--config", write_config().string(), "--print-config"});
    EXPECT_EQ(p.exit_code, 0) << p.err;
    EXPECT_EQ(json::parse(p.out)["device_id"], device);
}

// Kill -9 at every journal step (a fault point makes the agent SIGKILL itself there), then start
// it again: the component is entirely old or entirely new, and exactly one final status
// (one sequence number) is reported.
struct CrashCase {
    const char* fault;
    bool health_fails;
    const char* final_stage;
};

void PrintTo(const CrashCase& c, std::ostream* os) { *os << c.fault << (c.health_fails ? " (health fails)" : ""); }

class AgentCrashTest : public AgentTest, public ::testing::WithParamInterface<CrashCase> {};

TEST_P(AgentCrashTest, KilledAtAJournalStepEndsOldOrNewWithOneFinalReport) {
    const auto& c = GetParam();
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    auto rel = make_release("2026-10-01");
    json extra = json::object();
    if (c.health_fails)
        extra = {{"components", {{"detection-model", {{"health", {{"command", {"/bin/false"}}, {"retries", 0}}}}}}}};
    const auto config = write_config(extra);
    kit::Subscriber statuses(*broker, pki, "operator", "ota/v1/devices/" + device + "/status/detection-model");
    ASSERT_TRUE(statuses.subscribed());
    assign();
    offer(rel);

    auto crashed = kit::run({OTA_AGENT_BIN, "--config", config.string(), "--once", "--once-wait", "15"}, 45s,
                            {{"OTA_FAULT_POINT", c.fault}});
    ASSERT_EQ(crashed.exit_code, 128 + SIGKILL) << "the fault point " << c.fault << " was not reached:\n" << crashed.err;
    // Whatever the crash left, the live file set is old or new, never a partial file.
    const auto after_crash = installed_files();
    EXPECT_TRUE(after_crash == std::vector<std::string>{"model-2026-03-10.trt"} ||
                after_crash == (std::vector<std::string>{"model-2026-03-10.trt", "model-2026-10-01.trt"}))
        << ::testing::PrintToString(after_crash);

    auto resumed = run_once(config);
    ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
    std::this_thread::sleep_for(500ms);
    auto got = statuses.stop();
    std::set<long> final_seqs;
    std::string last_final;
    for (const auto& [topic, payload] : got.messages) {
        if (payload.empty()) continue;
        auto s = json::parse(payload);
        const auto stage = s["stage"].get<std::string>();
        if (stage == "succeeded" || stage == "failed" || stage == "rolled_back") {
            final_seqs.insert(s["seq"].get<long>());
            last_final = stage;
        }
    }
    EXPECT_EQ(final_seqs.size(), 1u) << resumed.err;
    EXPECT_EQ(last_final, c.final_stage);
    if (std::string(c.final_stage) == "succeeded") {
        EXPECT_EQ(kit::read_file(target() / "model-2026-10-01.trt"), rel.content);
    } else {
        EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"});
    }
    EXPECT_EQ(kit::read_file(target() / "model-2026-03-10.trt"), "installed");
}

INSTANTIATE_TEST_SUITE_P(
    EveryStep, AgentCrashTest,
    ::testing::Values(CrashCase{"before:downloading", false, "succeeded"}, CrashCase{"after:downloading", false, "succeeded"},
                      CrashCase{"before:verifying", false, "succeeded"}, CrashCase{"before:preparing", false, "succeeded"},
                      CrashCase{"after:preparing", false, "succeeded"}, CrashCase{"before:activating", false, "succeeded"},
                      CrashCase{"after:activating", false, "succeeded"}, CrashCase{"before:health_checking", false, "succeeded"},
                      CrashCase{"before:committing", false, "succeeded"}, CrashCase{"after:committing", false, "succeeded"},
                      CrashCase{"after:health_checking", true, "rolled_back"}, CrashCase{"before:rolling_back", true, "rolled_back"}),
    [](const ::testing::TestParamInfo<CrashCase>& param) {
        std::string name = param.param.fault;
        for (auto& ch : name)
            if (ch == ':') ch = '_';
        return name;
    });

// A crash that happens every time in the same step (here: activating) is a crash loop: after
// max_step_restarts restarts in that step the agent gives up, rolls back and says so.
TEST_F(AgentTest, ACrashLoopEndsInACleanRollback) {
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    auto rel = make_release("2026-11-01");
    const auto config = write_config({{"max_step_restarts", 2}});
    assign();
    offer(rel);
    int kills = 0;
    kit::RunResult r;
    for (int start = 0; start < 8; ++start) {  // systemd's Restart=always, bounded
        r = kit::run({OTA_AGENT_BIN, "--config", config.string(), "--once", "--once-wait", "15"}, 45s,
                     {{"OTA_FAULT_POINT", "before:activating"}});
        if (r.exit_code != 128 + SIGKILL) break;
        ++kills;
    }
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(kills, 3);  // entered 3 times (1 + 2 restarts); the 4th entry gives up
    auto s = status();
    ASSERT_FALSE(s.is_null());
    EXPECT_EQ(s["stage"], "rolled_back");
    EXPECT_EQ(s["error"]["code"], "crash_loop") << s.dump();
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"});
}

// cmd "rollback" from the controller undoes the last finished install.
TEST_F(AgentTest, AnOperatorRollbackRestoresThePreviousVersion) {
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    auto rel = make_release("2026-12-01");
    const auto config = write_config();
    assign();
    offer(rel);
    auto first = run_once(config);
    ASSERT_EQ(first.exit_code, 0) << first.err;
    ASSERT_EQ(status()["stage"], "succeeded");
    // Queued for the device's persistent session while it is offline.
    command({{"cmd", "rollback"}, {"component", "detection-model"}});
    auto second = run_once(config);
    ASSERT_EQ(second.exit_code, 0) << second.err;
    auto s = status();
    EXPECT_EQ(s["stage"], "rolled_back") << second.err;
    EXPECT_EQ(s["error"]["code"], "rollback_requested");
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"});
    EXPECT_EQ(inventory_version(), "2026-03-10");
    // The retained offer is not re-applied by itself after the rollback.
    auto third = run_once(config);
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"}) << third.err;
}

// cmd "install" (ota-ctl update <device> <component>): the release in the command is applied
// outside any wave and outside the update window, after the same checks as a wave's offer.
TEST_F(AgentTest, AnInstallCommandAppliesItsReleaseOutsideAnyWave) {
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    const auto config = write_config({{"update_window", {{"start", "00:00"}, {"end", "00:01"}}}});
    // Assigned to a wave that offers nothing: the release comes only from the command, and
    // --once ends 1.5 s after the last event instead of waiting out --once-wait.
    assign();
    auto first = run_once(config, 3);  // the persistent session exists from now on
    ASSERT_EQ(first.exit_code, 0) << first.err;
    auto rel = make_release("2026-12-01");
    command({{"cmd", "install"}, {"component", "detection-model"}, {"rollout", "plant.detection-model.2026-12-01"},
             {"release", json::parse(rel.envelope)}});
    auto second = run_once(config);
    ASSERT_EQ(second.exit_code, 0) << second.err;
    auto s = status();
    EXPECT_EQ(s["stage"], "succeeded") << second.err;
    EXPECT_EQ(s["rollout"], "plant.detection-model.2026-12-01");
    EXPECT_EQ(installed_files(), (std::vector<std::string>{"model-2026-03-10.trt", "model-2026-12-01.trt"}));
}

TEST_F(AgentTest, AnInstallCommandWithABadSignatureIsRejected) {
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    const auto config = write_config();
    // Assigned to a wave that offers nothing: the release comes only from the command, and
    // --once ends 1.5 s after the last event instead of waiting out --once-wait.
    assign();
    auto first = run_once(config, 3);
    ASSERT_EQ(first.exit_code, 0) << first.err;
    auto rel = make_release("2026-12-01", "untrusted");
    command({{"cmd", "install"}, {"component", "detection-model"}, {"rollout", "r-x"}, {"release", json::parse(rel.envelope)}});
    auto second = run_once(config);
    ASSERT_EQ(second.exit_code, 0) << second.err;
    auto s = status();
    EXPECT_EQ(s["stage"], "rejected") << second.err;
    EXPECT_EQ(s["error"]["code"], "unknown_key");
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"});
}

// The inventory follows the device: a version that appears in a watched directory by other
// means is published without waiting for the inventory interval.
TEST_F(AgentTest, InventoryIsRepublishedWhenTheInstalledVersionChanges) {
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    const auto config = write_config();
    kit::Process agent({OTA_AGENT_BIN, "--config", config.string()}, dir / "agent.log");
    auto version = [&] {
        auto inv = kit::mosquitto_sub(*broker, pki, "operator", "ota/v1/devices/" + device + "/inventory", 1, 1000ms);
        if (inv.messages.empty() || inv.messages[0].second.empty()) return json(nullptr);
        return json::parse(inv.messages[0].second)["components"]["detection-model"];
    };
    ASSERT_TRUE(kit::wait_until([&] { return version() == "2026-03-10"; }, 15s)) << agent.log();
    kit::write_file(target() / "model-2026-03-20.trt", "placed by hand");
    EXPECT_TRUE(kit::wait_until([&] { return version() == "2026-03-20"; }, 20s)) << agent.log();
    EXPECT_EQ(agent.stop(), 0);
}

// An update window that excludes now keeps the offer waiting; --force-update applies it anyway.
TEST_F(AgentTest, UpdateWindowDefersAndForceUpdateApplies) {
    const auto now = std::chrono::system_clock::now();
    const auto hour = std::chrono::duration_cast<std::chrono::hours>(now - std::chrono::floor<std::chrono::days>(now)).count();
    auto hhmm = [](long h) { return (h % 24 < 10 ? "0" : "") + std::to_string(h % 24) + ":00"; };
    auto rel = make_release("2026-12-10");
    const auto config = write_config({{"update_window", {{"start", hhmm(hour + 2)}, {"end", hhmm(hour + 3)}}}});
    assign();
    offer(rel);
    auto waiting = run_once(config);
    EXPECT_EQ(waiting.exit_code, 0) << waiting.err;
    EXPECT_TRUE(installed_files().empty());
    EXPECT_NE(waiting.err.find("waiting for the update window"), std::string::npos) << waiting.err;
    auto forced = kit::run({OTA_AGENT_BIN, "--config", config.string(), "--once", "--once-wait", "15", "--force-update"}, 45s);
    EXPECT_EQ(forced.exit_code, 0) << forced.err;
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-12-10.trt"}) << forced.err;
    EXPECT_EQ(status()["stage"], "succeeded");
}

TEST_F(AgentTest, AutoUpdateZeroInTheEnvironmentDownloadsNothing) {
    auto rel = make_release("2026-12-11");
    assign();
    offer(rel);
    auto r = kit::run({OTA_AGENT_BIN, "--config", write_config().string(), "--once", "--once-wait", "15"}, 45s,
                      {{"AUTO_UPDATE", "0"}});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(installed_files().empty());
    EXPECT_NE(r.err.find("auto-update is off"), std::string::npos) << r.err;
}
