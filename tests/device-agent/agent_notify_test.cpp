// ota-agent under its Type=notify unit, against a stand-in for systemd's notification socket
// (kit::NotifySocket, a documented fake: systemd cannot run as PID 1 here). READY once connected
// and subscribed, STATUS lines that follow the update, watchdog pings while it waits for the
// broker and while it runs, STOPPING at SIGTERM; through ota-agent-launch's guard (a self-update
// awaiting confirmation), where the agent is a child of the launcher, the child still pings.
// And the unit's ExecStartPre=: --check-config.
#include <algorithm>

#include "agent_fixture.hpp"
#include "kit_notify.hpp"

namespace {

class AgentNotify : public AgentTest {
protected:
    std::unique_ptr<kit::Process> start(const kit::NotifySocket& sock, const fs::path& config,
                                        std::map<std::string, std::string> extra = {}) {
        auto env = sock.env(1s);
        env.merge(extra);
        return std::make_unique<kit::Process>(std::vector<std::string>{OTA_AGENT_BIN, "--config", config.string()},
                                              dir / "agent.log", env);
    }
    static std::string lines(const kit::NotifySocket& sock, const std::string& prefix) {
        std::string all;
        for (const auto& d : sock.with(prefix, true)) all += d.text + "\n";
        return all;
    }
};

TEST_F(AgentNotify, ReadyWhenConnectedStatusFollowsTheUpdateStoppingAtTerm) {
    kit::NotifySocket sock(dir / "notify.sock");
    auto rel = make_release("2026-05-01");
    assign();
    offer(rel);
    broker->stop();
    auto agent = start(sock, write_config());
    auto waiting = sock.wait_line("STATUS=waiting for the broker", 15s);
    ASSERT_TRUE(waiting) << agent->log();
    EXPECT_NE(waiting->find(broker->url()), std::string::npos) << *waiting;
    EXPECT_TRUE(sock.with("READY=1").empty()) << "READY before the broker was reached";
    EXPECT_FALSE(sock.with("WATCHDOG=1").empty()) << "no watchdog ping while waiting for the broker";

    broker->restart();
    ASSERT_TRUE(sock.wait_line("READY=1", 30s)) << agent->log();
    ASSERT_EQ(sock.with("READY=1").size(), 1u);
    // The update runs and the STATUS line says how it went: `systemctl status ota-agent`.
    ASSERT_TRUE(sock.wait_line("STATUS=connected; versions detection-model=2026-05-01; last: detection-model succeeded 2026-05-01", 30s))
        << lines(sock, "STATUS=") << agent->log();
    const auto all = lines(sock, "STATUS=");
    EXPECT_NE(all.find("versions detection-model=none; last: detection-model downloading 2026-05-01"), std::string::npos) << all;
    EXPECT_EQ(agent->stop(), 0);
    EXPECT_FALSE(sock.with("STOPPING=1").empty());
}

// A self-update awaiting confirmation: ota-agent-launch runs the agent as its child and watches
// the deadline. systemd's WATCHDOG_PID names the launcher (the unit's main process), which would
// make the child's sd_watchdog_enabled() say "not for me"; the launcher unsets it for the child.
TEST_F(AgentNotify, UnderTheLaunchersGuardTheChildAgentStillPingsTheWatchdog) {
    kit::NotifySocket sock(dir / "notify.sock");
    assign();
    const auto state = dir / "launch-state";
    fs::create_directories(state);
    const auto deadline = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch() + 120s).count();
    kit::write_file(state / "self-update.env", "BIN=" + std::string(OTA_AGENT_BIN) + "\nDEADLINE=" +
                                                   std::to_string(deadline) + "\nMAX_STARTS=3\n");
    auto env = sock.env(1s);
    // As systemd would set it: the PID of the unit's main process, here the launcher's parent
    // stands in (a PID that is not the agent's; the agent must not ignore the watchdog for it).
    env["WATCHDOG_PID"] = std::to_string(::getpid());
    kit::Process launcher({std::string(OTA_SOURCE_DIR) + "/device-agent/ota-agent-launch", "--state-dir",
                           state.string(), "--bin", OTA_AGENT_BIN, "--", "--config", write_config().string()},
                          dir / "agent.log", env);
    ASSERT_TRUE(sock.wait_line("READY=1", 30s)) << launcher.log();
    const auto before = sock.with("WATCHDOG=1").size();
    ASSERT_TRUE(kit::wait_until([&] { return sock.with("WATCHDOG=1").size() >= before + 3; }, 5s))
        << "the child agent sends no watchdog pings: " << launcher.log();
    EXPECT_NE(kit::read_file(state / "self-update.starts").find("start "), std::string::npos) << "the guard ran";
    EXPECT_EQ(launcher.stop(), 0) << launcher.log();
}

// ExecStartPre=ota-agent --check-config: 0 for a config that would start (connecting to
// nothing), 2 and one line naming the file and the cause for one that would not.
TEST_F(AgentNotify, CheckConfigPassesAGoodConfigAndNamesTheCauseOfABadOne) {
    broker->stop();
    const auto good = write_config();
    auto ok = kit::run({OTA_AGENT_BIN, "--config", good.string(), "--check-config"}, 10s);
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_NE(ok.out.find("config OK (device device-001"), std::string::npos) << ok.out;

    const auto no_key = write_config({{"trusted_keys", (dir / "missing.pub").string()}});
    auto bad = kit::run({OTA_AGENT_BIN, "--config", no_key.string(), "--check-config"}, 10s);
    EXPECT_EQ(bad.exit_code, 2);
    EXPECT_NE(bad.err.find(no_key.string()), std::string::npos) << bad.err;
    EXPECT_NE(bad.err.find("missing.pub"), std::string::npos) << bad.err;
    EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << "one line: " << bad.err;

    const auto bad_level = write_config({{"log", {{"level", "loud"}}}});
    auto bad2 = kit::run({OTA_AGENT_BIN, "--config", bad_level.string(), "--check-config"}, 10s);
    EXPECT_EQ(bad2.exit_code, 2);
    EXPECT_NE(bad2.err.find("loud"), std::string::npos) << bad2.err;
}

}  // namespace
