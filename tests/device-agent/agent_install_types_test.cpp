// Each install type end to end through the agent: from a retained wave message to `succeeded`
// (or a health-check rollback), with the files, symlinks or recorded docker calls checked.
// docker-image uses the stand-in tests/device-agent/install/fake-docker on PATH (a fake: no
// engine runs here in unit tests; the `container` test in install/ uses Podman).
#include "agent_fixture.hpp"

namespace {

// A .tar.gz holding app/VERSION with `text`, made with the tar CLI.
std::string make_tarball(const fs::path& work, const std::string& text) {
    const auto src = work / ("src-" + text);
    fs::create_directories(src / "app");
    kit::write_file(src / "app" / "VERSION", text);
    const auto tgz = work / ("app-" + text + ".tar.gz");
    auto r = kit::run({"tar", "-C", src.string(), "-czf", tgz.string(), "app"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return kit::read_file(tgz);
}

}  // namespace

class AgentInstallTypesTest : public AgentTest {
protected:
    fs::path app() const { return dir / "app"; }
};

TEST_F(AgentInstallTypesTest, ArchiveFlipsCurrentAndKeepsThePreviousRelease) {
    const auto config = write_config({{"components", {{"detection-model", {{"version_source", nullptr}}}}}});
    assign();
    auto v1 = sign_release("1.0.0", make_tarball(dir.path(), "1.0.0"), "app-1.0.0.tar.gz",
                           {"--install", "archive", "--target", app().string()});
    offer(v1);
    auto r1 = run_once(config);
    ASSERT_EQ(r1.exit_code, 0) << r1.err;
    ASSERT_EQ(status()["stage"], "succeeded") << r1.err;
    EXPECT_EQ(kit::read_file(app() / "current" / "app" / "VERSION"), "1.0.0");

    auto v2 = sign_release("1.1.0", make_tarball(dir.path(), "1.1.0"), "app-1.1.0.tar.gz",
                           {"--install", "archive", "--target", app().string()});
    offer(v2);
    auto r2 = run_once(config);
    ASSERT_EQ(r2.exit_code, 0) << r2.err;
    ASSERT_EQ(status()["stage"], "succeeded") << r2.err;
    EXPECT_EQ(fs::read_symlink(app() / "current").filename(), "1.1.0");
    EXPECT_EQ(kit::read_file(app() / "current" / "app" / "VERSION"), "1.1.0");
    EXPECT_TRUE(fs::exists(app() / "releases" / "1.0.0" / "app" / "VERSION")) << "the previous release is kept";
}

TEST_F(AgentInstallTypesTest, ArchiveHealthFailurePointsCurrentBackAtTheOldRelease) {
    json health{{"command", {"sh", "-c", "grep -q 1.0.0 " + (app() / "current" / "app" / "VERSION").string()}},
                {"retries", 0}};
    const auto config = write_config({{"components", {{"detection-model", {{"version_source", nullptr}, {"health", health}}}}}});
    assign();
    offer(sign_release("1.0.0", make_tarball(dir.path(), "1.0.0"), "app-1.0.0.tar.gz",
                       {"--install", "archive", "--target", app().string()}));
    ASSERT_EQ(run_once(config).exit_code, 0);
    ASSERT_EQ(status()["stage"], "succeeded");
    offer(sign_release("2.0.0", make_tarball(dir.path(), "2.0.0"), "app-2.0.0.tar.gz",
                       {"--install", "archive", "--target", app().string()}));
    auto r = run_once(config);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto s = status();
    EXPECT_EQ(s["stage"], "rolled_back") << r.err;
    EXPECT_EQ(s["error"]["code"], "health_check_failed");
    EXPECT_EQ(fs::read_symlink(app() / "current").filename(), "1.0.0");
    EXPECT_FALSE(fs::exists(app() / "releases" / "2.0.0"));
}

TEST_F(AgentInstallTypesTest, BinaryIsReplacedAndTheOldOneKept) {
    const auto bin = dir / "bin" / "tool";
    fs::create_directories(bin.parent_path());
    kit::write_file(bin, "#!/bin/sh\necho old\n");
    fs::permissions(bin, fs::perms::owner_all);
    const auto config = write_config({{"components", {{"detection-model", {{"version_source", nullptr}}}}}});
    assign();
    offer(sign_release("2.0.0", "#!/bin/sh\necho new\n", "tool-2.0.0", {"--install", "binary", "--target", bin.string()}));
    auto r = run_once(config);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(status()["stage"], "succeeded") << r.err;
    EXPECT_EQ(kit::run({bin.string()}).out, "new\n");
    EXPECT_EQ(kit::read_file(bin.string() + ".old"), "#!/bin/sh\necho old\n");
}

class AgentDockerTest : public AgentInstallTypesTest {
protected:
    void SetUp() override {
        AgentInstallTypesTest::SetUp();
        fs::create_directories(fake_bin());
        fs::create_directories(fake_state());
        for (const char* name : {"docker", "docker-compose"}) {
            fs::copy_file(kit::source_dir() / "tests" / "device-agent" / "install" / "fake-docker", fake_bin() / name);
            fs::permissions(fake_bin() / name, fs::perms::owner_all);
        }
        kit::write_file(dir / "compose.yml", "services:\n  annotations:\n    image: ${OTA_IMAGE}\n");
    }
    fs::path fake_bin() const { return dir / "fake-bin"; }
    fs::path fake_state() const { return dir / "fake-state"; }
    std::map<std::string, std::string> env() const {
        return {{"PATH", fake_bin().string() + ":" + std::getenv("PATH")},
                {"FAKE_DOCKER_DIR", fake_state().string()},
                {"FAKE_DOCKER_LOAD_OUTPUT", "Loaded image: azaion/annotations:arm64_2026-03-01"}};
    }
    fs::path config(json health = nullptr) {
        json c{{"version_source", nullptr}, {"compose_file", (dir / "compose.yml").string()},
               {"compose_command", "docker-compose"}, {"docker_command", "docker"}};
        if (!health.is_null()) c["health"] = health;
        return write_config({{"components", {{"detection-model", c}}}});
    }
    kit::RunResult run_agent(const fs::path& cfg, const std::map<std::string, std::string>& extra_env = {}) {
        auto e = env();
        for (const auto& [k, v] : extra_env) e[k] = v;
        return kit::run({OTA_AGENT_BIN, "--config", cfg.string(), "--once", "--once-wait", "15"}, 45s, e);
    }
    std::string calls() const {
        return fs::exists(fake_state() / "calls.log") ? kit::read_file(fake_state() / "calls.log") : std::string();
    }
    // Offer azaion/annotations:<tag> and let the agent install it (the stand-in `docker load`
    // reports that image).
    void install_image(const fs::path& cfg, const std::string& tag) {
        offer(sign_release(tag, "image tarball " + tag, "annotations-" + tag + ".tar",
                           {"--install", "docker-image", "--service", "annotations"}));
        auto r = run_agent(cfg, {{"FAKE_DOCKER_LOAD_OUTPUT", "Loaded image: azaion/annotations:" + tag}});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        ASSERT_EQ(status()["stage"], "succeeded") << r.err << calls();
        ASSERT_EQ(kit::read_file(fake_state() / "running"), "azaion/annotations:" + tag + "\n" + tag + "\n");
    }
    // The stand-in's image ID of an image reference (fake-docker's `inspect`).
    static std::string image_id(const std::string& ref) { return "sha256:" + ota::crypto::sha256_hex(ref); }
    std::string compose_up(const std::string& image, const std::string& version) const {
        return "docker-compose -f " + (dir / "compose.yml").string() + " up -d annotations | OTA_IMAGE=" + image +
               " OTA_VERSION=" + version + "\n";
    }
    // Assigned, and the agent installed arm64_2026-02-01 and then arm64_2026-03-01: the config.
    fs::path two_images_installed() {
        const auto cfg = config();
        assign();
        install_image(cfg, "arm64_2026-02-01");
        install_image(cfg, "arm64_2026-03-01");
        return cfg;
    }
    // cmd "rollback" for detection-model, then one agent run; the docker calls it made.
    std::string operator_rollback(const fs::path& cfg, const std::map<std::string, std::string>& extra_env = {}) {
        const auto before = calls().size();
        command({{"cmd", "rollback"}, {"component", "detection-model"}});
        auto r = run_agent(cfg, extra_env);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return calls().substr(before);
    }
};

TEST_F(AgentDockerTest, ImageIsLoadedAndTheServiceRecreated) {
    const auto cfg = config();
    assign();
    offer(sign_release("arm64_2026-03-01", "image tarball bytes", "annotations.tar",
                       {"--install", "docker-image", "--service", "annotations"}));
    auto r = run_agent(cfg);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(status()["stage"], "succeeded") << r.err << calls();
    const auto log = calls();
    EXPECT_NE(log.find("docker load -i "), std::string::npos) << log;
    EXPECT_NE(log.find("docker-compose -f " + (dir / "compose.yml").string() + " up -d annotations | OTA_IMAGE=azaion/annotations:arm64_2026-03-01 OTA_VERSION=arm64_2026-03-01"),
              std::string::npos)
        << log;
}

TEST_F(AgentDockerTest, HealthFailureStartsThePreviousImageAgain) {
    // The service runs v1 (as installed before), v2's health check fails.
    kit::write_file(fake_state() / "running", "azaion/annotations:arm64_2026-02-01\narm64_2026-02-01\n");
    const auto cfg = config({{"command", {"/bin/false"}}, {"retries", 0}});
    assign();
    offer(sign_release("arm64_2026-03-01", "image tarball bytes", "annotations.tar",
                       {"--install", "docker-image", "--service", "annotations"}));
    auto r = run_agent(cfg);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto s = status();
    EXPECT_EQ(s["stage"], "rolled_back") << r.err << calls();
    const auto log = calls();
    const auto up_new = log.find("up -d annotations | OTA_IMAGE=azaion/annotations:arm64_2026-03-01");
    ASSERT_NE(up_new, std::string::npos) << log;
    // After it, compose up again with the previous image (recorded by image ID).
    const auto up_old = log.find("up -d annotations | OTA_IMAGE=sha256:", up_new);
    EXPECT_NE(up_old, std::string::npos) << log;
    EXPECT_NE(kit::read_file(fake_state() / "running").find("sha256:"), std::string::npos);
}

// cmd "rollback" after a committed docker-image install: compose recreates the service with the
// image that ran before (by image ID, with its OTA_VERSION), reported `rolled_back` /
// `rollback_requested`; the installed version is the previous one and the retained offer is not
// applied again.
TEST_F(AgentDockerTest, OperatorRollbackAfterCommitStartsThePreviousImageAgain) {
    const auto cfg = two_images_installed();
    ASSERT_FALSE(HasFatalFailure());
    const auto old_id = image_id("azaion/annotations:arm64_2026-02-01");

    EXPECT_EQ(operator_rollback(cfg), compose_up(old_id, "arm64_2026-02-01")) << "exactly one docker call";
    auto s = status();
    EXPECT_EQ(s["stage"], "rolled_back") << s.dump();
    EXPECT_EQ(s["version"], "arm64_2026-03-01");
    EXPECT_EQ(s["error"]["code"], "rollback_requested");
    EXPECT_EQ(kit::read_file(fake_state() / "running"), old_id + "\narm64_2026-02-01\n");
    EXPECT_EQ(inventory_version(), "arm64_2026-02-01");

    // The retained offer of arm64_2026-03-01 stays handled: nothing runs again.
    const auto before = calls().size();
    auto again = run_agent(cfg);
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(calls().substr(before), "") << again.err;
    EXPECT_EQ(kit::read_file(fake_state() / "running"), old_id + "\narm64_2026-02-01\n");
}

// Rolling back the first image the agent started (nothing ran before it) removes the service.
TEST_F(AgentDockerTest, OperatorRollbackOfTheFirstImageRemovesTheService) {
    const auto cfg = config();
    assign();
    install_image(cfg, "arm64_2026-02-01");
    EXPECT_EQ(operator_rollback(cfg), "docker-compose -f " + (dir / "compose.yml").string() +
                                          " rm -s -f annotations | OTA_IMAGE=azaion/annotations:arm64_2026-02-01 "
                                          "OTA_VERSION=<unset>\n");
    EXPECT_EQ(status()["stage"], "rolled_back");
    EXPECT_FALSE(fs::exists(fake_state() / "running"));
}

// A rollback that compose cannot carry out is reported `failed` (the new image keeps running)
// and may be asked for again.
TEST_F(AgentDockerTest, AFailedOperatorRollbackIsReportedAndCanBeAskedForAgain) {
    const auto cfg = two_images_installed();
    ASSERT_FALSE(HasFatalFailure());
    const auto old_id = image_id("azaion/annotations:arm64_2026-02-01");

    EXPECT_EQ(operator_rollback(cfg, {{"FAKE_DOCKER_FAIL", "up"}}), compose_up(old_id, "arm64_2026-02-01"));
    auto s = status();
    EXPECT_EQ(s["stage"], "failed") << s.dump();
    EXPECT_EQ(s["error"]["code"], "install_failed");
    EXPECT_NE(s["error"]["message"].get<std::string>().find("the rollback an operator asked for failed: `docker-compose"),
              std::string::npos)
        << s.dump();
    EXPECT_EQ(kit::read_file(fake_state() / "running"), "azaion/annotations:arm64_2026-03-01\narm64_2026-03-01\n");
    EXPECT_EQ(inventory_version(), "arm64_2026-03-01");

    EXPECT_EQ(operator_rollback(cfg), compose_up(old_id, "arm64_2026-02-01"));
    EXPECT_EQ(status()["stage"], "rolled_back");
    EXPECT_EQ(kit::read_file(fake_state() / "running"), old_id + "\narm64_2026-02-01\n");
    EXPECT_EQ(inventory_version(), "arm64_2026-02-01");
}

// Self-update guarded by device-agent/ota-agent-launch. systemd's Restart=always is simulated by
// starting the launcher again (bounded); each start is one `--once` run of the agent.
class AgentSelfUpdateTest : public AgentInstallTypesTest {
protected:
    struct Starts {
        std::vector<int> exits;
        std::string logs;
    };

    // Publishes `artifact` as ota-agent 99.0.0 (install self) on the device's wave.
    void offer_agent(const std::string& artifact) {
        auto signed_release = kit::run({OTA_PUBLISH_BIN, "publish", "--dry-run", "--signing-key",
                                        (keys->path() / "release.key").string(), "--component", "ota-agent", "--version",
                                        "99.0.0", "--artifact", artifact, "--url",
                                        server->url("models/" + fleet + "/ota-agent-99.0.0"), "--copy-to",
                                        server->root().string(), "--install", "self"});
        ASSERT_EQ(signed_release.exit_code, 0) << signed_release.err;
        assign();
        json msg{{"rollout", "r-self"}, {"state", "open"}, {"release", json::parse(signed_release.out)}};
        ASSERT_EQ(kit::mosquitto_pub(*broker, pki, "controller", "ota/v1/fleets/" + fleet + "/waves/canary/ota-agent",
                                     msg.dump(), true)
                      .exit_code,
                  0);
    }

    // Starts the launcher (with `launcher_args` before `--`) until the agent exits 0, at most `max` times.
    Starts run_launcher(const std::vector<std::string>& launcher_args, const fs::path& cfg, int max) {
        std::vector<std::string> argv{(kit::source_dir() / "device-agent" / "ota-agent-launch").string(), "--state-dir",
                                      (dir / "state").string()};
        argv.insert(argv.end(), launcher_args.begin(), launcher_args.end());
        for (const auto& a : {"--", "--config", "", "--once", "--once-wait", "15"}) argv.emplace_back(a);
        argv[argv.size() - 4] = cfg.string();
        Starts starts;
        for (int start = 0; start < max; ++start) {
            auto r = kit::run(argv, 60s);
            starts.exits.push_back(r.exit_code);
            starts.logs += r.err;
            if (r.exit_code == 0) break;
        }
        return starts;
    }

    json agent_status() {
        auto st = kit::mosquitto_sub(*broker, pki, "operator", "ota/v1/devices/" + device + "/status/ota-agent", 1, 1500ms);
        return st.messages.size() == 1 ? json::parse(st.messages[0].second) : json();
    }
    std::string inventory_agent_version() {
        auto inv = kit::mosquitto_sub(*broker, pki, "operator", "ota/v1/devices/" + device + "/inventory", 1, 1500ms);
        return inv.messages.size() == 1 ? json::parse(inv.messages[0].second).value("agent_version", "") : "";
    }
    fs::path write_broken_agent() {
        kit::write_file(dir / "broken-agent", "#!/bin/sh\necho 'broken agent' >&2\nexit 1\n");
        return dir / "broken-agent";
    }
    // A copy of the built agent at `bin`, the installed agent; returns its bytes.
    static std::string install_agent_copy(const fs::path& bin) {
        fs::create_directories(bin.parent_path());
        fs::copy_file(OTA_AGENT_BIN, bin);
        return kit::read_file(bin);
    }
    fs::path packaged_bin() const { return dir / "usr-bin" / "ota-agent"; }   // dpkg's, in the unit
    fs::path self_bin() const { return dir / "state" / "bin" / "ota-agent"; }  // the unit's --self-bin
    static json agent_components() {
        return {{"detection-model", nullptr}, {"ota-agent", {{"version_source", {{"type", "agent"}}}}}};
    }
};

// A new agent binary that cannot start is replaced by the previous one after the start budget,
// and the old agent reports `rolled_back`.
TEST_F(AgentSelfUpdateTest, SelfUpdateWithABrokenNewBinaryRestoresTheOldOne) {
    const auto bin = dir / "bin" / "ota-agent";
    const auto original = install_agent_copy(bin);
    const auto cfg = write_config({{"binary_path", bin.string()}, {"self_update_max_starts", 2}, {"components", agent_components()}});
    offer_agent(write_broken_agent().string());
    const auto run = run_launcher({"--bin", bin.string()}, cfg, 8);
    // old agent applies (3: restart), the new one fails twice (1, 1), the launcher restores the
    // old one, which reports the rollback (0).
    EXPECT_EQ(run.exits, (std::vector<int>{3, 1, 1, 0})) << run.logs;
    EXPECT_TRUE(kit::read_file(bin) == original) << "the original agent binary is back";
    EXPECT_NE(run.logs.find("restored the previous agent binary"), std::string::npos) << run.logs;
    const auto s = agent_status();
    EXPECT_EQ(s.value("stage", ""), "rolled_back") << s.dump() << run.logs;
    EXPECT_EQ(s.value("version", ""), "99.0.0");
    EXPECT_FALSE(fs::exists(dir / "state" / "self-update.env"));
}

// A good self-update: the agent (0.1.0) installs a newer agent binary (ota-agent-next, which
// reports 99.0.0), exits 3, the launcher starts the new binary under its guard, and the new agent
// confirms itself: `succeeded`, the guard removed, <bin>.old kept, the inventory says 99.0.0.
TEST_F(AgentSelfUpdateTest, SelfUpdateToAWorkingNewBinaryIsConfirmed) {
    const auto bin = dir / "bin" / "ota-agent";
    const auto original = install_agent_copy(bin);
    const auto cfg = write_config({{"binary_path", bin.string()}, {"components", agent_components()}});
    offer_agent(OTA_AGENT_NEXT_BIN);
    const auto run = run_launcher({"--bin", bin.string()}, cfg, 4);
    EXPECT_EQ(run.exits, (std::vector<int>{3, 0})) << run.logs;
    EXPECT_TRUE(kit::read_file(bin) == kit::read_file(OTA_AGENT_NEXT_BIN)) << "the new agent binary is in place";
    EXPECT_TRUE(kit::read_file(bin.string() + ".old") == original) << "the previous binary is kept";
    EXPECT_FALSE(fs::exists(dir / "state" / "self-update.env")) << run.logs;
    EXPECT_EQ(agent_status().value("stage", ""), "succeeded") << run.logs;
    EXPECT_EQ(inventory_agent_version(), "99.0.0");
}

// Installed from a package (the unit's --self-bin): the packaged binary (--bin, dpkg's) is never
// written; the self-update goes to the state directory and runs from there.
TEST_F(AgentSelfUpdateTest, SelfUpdateFromAPackagedAgentGoesToTheStateDirectory) {
    const auto packaged = packaged_bin();
    const auto original = install_agent_copy(packaged);
    const auto cfg = write_config({{"components", agent_components()}});  // no binary_path: the launcher says it
    offer_agent(OTA_AGENT_NEXT_BIN);
    const auto run = run_launcher({"--bin", packaged.string(), "--self-bin", self_bin().string()}, cfg, 4);
    EXPECT_EQ(run.exits, (std::vector<int>{3, 0})) << run.logs;
    EXPECT_TRUE(kit::read_file(self_bin()) == kit::read_file(OTA_AGENT_NEXT_BIN)) << "the new agent is in the state directory";
    EXPECT_TRUE(kit::read_file(packaged) == original) << "the packaged binary is untouched";
    EXPECT_EQ(std::vector<fs::path>(fs::directory_iterator(packaged.parent_path()), {}), std::vector<fs::path>{packaged})
        << "no .new or .old beside the packaged binary";
    EXPECT_FALSE(fs::exists(self_bin().string() + ".old")) << "there was no self-updated binary before";
    EXPECT_EQ(agent_status().value("stage", ""), "succeeded") << run.logs;
    EXPECT_EQ(inventory_agent_version(), "99.0.0") << run.logs;
    // The next start runs the self-updated binary again (it exists), still without touching dpkg's.
    const auto again = run_launcher({"--bin", packaged.string(), "--self-bin", self_bin().string()}, cfg, 1);
    EXPECT_EQ(again.exits, std::vector<int>{0}) << again.logs;
    EXPECT_NE(again.logs.find("99.0.0"), std::string::npos) << again.logs;
}

// The first self-update of a packaged agent fails: there is no previous binary in the state
// directory to restore, so the launcher removes the broken one and the packaged agent runs again.
TEST_F(AgentSelfUpdateTest, ABrokenSelfUpdateOfAPackagedAgentFallsBackToThePackagedBinary) {
    const auto packaged = packaged_bin();
    const auto original = install_agent_copy(packaged);
    const auto cfg = write_config({{"self_update_max_starts", 2}, {"components", agent_components()}});
    offer_agent(write_broken_agent().string());
    const auto run = run_launcher({"--bin", packaged.string(), "--self-bin", self_bin().string()}, cfg, 8);
    EXPECT_EQ(run.exits, (std::vector<int>{3, 1, 1, 0})) << run.logs;
    EXPECT_FALSE(fs::exists(self_bin())) << "the broken self-update is removed";
    EXPECT_TRUE(kit::read_file(packaged) == original);
    EXPECT_NE(run.logs.find("the previous agent " + packaged.string() + " runs again"), std::string::npos) << run.logs;
    const auto s = agent_status();
    EXPECT_EQ(s.value("stage", ""), "rolled_back") << s.dump() << run.logs;
    EXPECT_FALSE(fs::exists(dir / "state" / "self-update.env"));
}
