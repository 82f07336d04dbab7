// ota-controller under a Type=notify unit, against a stand-in for systemd's notification socket
// (kit::NotifySocket: systemd cannot run as PID 1 here). READY only once connected and
// subscribed, a STATUS line a person can read, watchdog pings from the main loop that stop when
// the process is stopped (what makes systemd kill and restart a hung controller), STOPPING at
// SIGTERM.
#include <signal.h>
#include <algorithm>
#include <sys/stat.h>

#include "controller_fixture.hpp"
#include "kit_notify.hpp"

namespace {

class ControllerNotify : public ControllerTest {
protected:
    // The canary waits for approval, so a rollout stays live.
    std::unique_ptr<kit::Process> start_notified(const kit::NotifySocket& sock, std::chrono::microseconds watchdog) {
        kit::write_file(dir / "controller.json", config(three_waves({{"approval", true}})).dump(2));
        return std::make_unique<kit::Process>(
            std::vector<std::string>{OTA_CONTROLLER_BIN, "--config", (dir / "controller.json").string()},
            dir / "controller.log", sock.env(watchdog));
    }
    // The largest gap between two consecutive watchdog pings in [from, to].
    static std::chrono::milliseconds largest_gap(const std::vector<kit::NotifySocket::Datagram>& pings,
                                                 std::chrono::steady_clock::time_point from,
                                                 std::chrono::steady_clock::time_point to) {
        std::chrono::milliseconds gap{0};
        auto prev = from;
        for (const auto& p : pings) {
            if (p.at < from || p.at > to) continue;
            gap = std::max(gap, std::chrono::duration_cast<std::chrono::milliseconds>(p.at - prev));
            prev = p.at;
        }
        return std::max(gap, std::chrono::duration_cast<std::chrono::milliseconds>(to - prev));
    }
};

TEST_F(ControllerNotify, ReadyOnlyOnceConnectedAndSubscribedWithAStatusLine) {
    kit::NotifySocket sock(dir / "notify.sock");
    broker->stop();
    controller = start_notified(sock, 2s);
    // While the broker is down: alive (watchdog pings), says why in STATUS, and is not READY.
    auto waiting = sock.wait_line("STATUS=waiting for the broker", 10s);
    ASSERT_TRUE(waiting) << controller->log();
    EXPECT_NE(waiting->find(broker->url()), std::string::npos) << *waiting;
    std::this_thread::sleep_for(1500ms);
    EXPECT_TRUE(sock.with("READY=1").empty());
    EXPECT_FALSE(sock.with("WATCHDOG=1").empty()) << "no watchdog ping while waiting for the broker";

    broker->restart();
    ASSERT_TRUE(sock.wait_line("READY=1", 20s)) << controller->log();
    // READY comes after the subscriptions: by then "controller running" is logged.
    EXPECT_NE(controller->log().find("controller running"), std::string::npos);
    const auto ready = sock.with("READY=1");
    ASSERT_EQ(ready.size(), 1u);
    EXPECT_NE(ready[0].text.find("STATUS=connected; 0 live rollouts"), std::string::npos) << ready[0].text;

    // A release: the STATUS line follows within a second or two.
    start_devices();
    publish_release("app", "1.1.0");
    ASSERT_TRUE(sock.wait_line("STATUS=connected; 1 live rollouts, " + std::to_string(fleet_size) + " devices", 10s))
        << [&] {
               std::string all;
               for (const auto& d : sock.with("STATUS=", true)) all += d.text + "\n";
               return all + controller->log();
           }();

    EXPECT_EQ(controller->stop(), 0);
    EXPECT_FALSE(sock.with("STOPPING=1").empty());
}

TEST_F(ControllerNotify, WatchdogPingsStopWhileTheProcessIsStoppedAndResumeAfter) {
    kit::NotifySocket sock(dir / "notify.sock");
    const auto interval = 800ms;  // WatchdogSec=0.8: pings every quarter (200 ms)
    controller = start_notified(sock, interval);
    ASSERT_TRUE(sock.wait_line("READY=1", 20s)) << controller->log();
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(2s);
    const auto t1 = std::chrono::steady_clock::now();
    // Running: never a gap systemd would take for a hang.
    EXPECT_LT(largest_gap(sock.with("WATCHDOG=1"), t0, t1), interval);

    // kill -STOP: no ping for longer than WatchdogSec (systemd would now kill it: SIGABRT, restart).
    ::kill(controller->pid(), SIGSTOP);  // Process::kill would wait for an exit
    const auto s0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(3 * interval);
    const auto s1 = std::chrono::steady_clock::now();
    for (const auto& p : sock.with("WATCHDOG=1")) EXPECT_FALSE(p.at > s0 + 50ms && p.at < s1) << "a ping while stopped";
    ::kill(controller->pid(), SIGCONT);
    const auto before = sock.with("WATCHDOG=1").size();
    ASSERT_TRUE(kit::wait_until([&] { return sock.with("WATCHDOG=1").size() > before; }, 3s));
}

// Under systemd, stderr is the journal (JOURNAL_STREAM=<dev>:<inode> of it): lines carry a
// syslog priority prefix the journal reads as the level, and no timestamp (the journal has one).
// Here the "journal" is the log file itself, named in JOURNAL_STREAM.
TEST_F(ControllerNotify, LinesForTheJournalCarryAPriorityAndNoTimestamp) {
    const auto log = dir / "journal.log";
    kit::write_file(log, "");
    struct stat st {};
    ASSERT_EQ(::stat(log.c_str(), &st), 0);
    broker->stop();  // a warning right away: the broker is not reachable
    kit::write_file(dir / "controller.json", config(three_waves()).dump(2));
    controller = std::make_unique<kit::Process>(
        std::vector<std::string>{OTA_CONTROLLER_BIN, "--config", (dir / "controller.json").string()}, log,
        std::map<std::string, std::string>{{"JOURNAL_STREAM", std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino)}});
    ASSERT_TRUE(kit::wait_until([&] { return controller->log().find("broker not reachable") != std::string::npos; }, 10s))
        << controller->log();
    const auto text = controller->log();
    EXPECT_NE(text.find("<6>info [controller] state loaded"), std::string::npos) << text;
    EXPECT_NE(text.find("<4>warn [controller] broker not reachable; retrying"), std::string::npos) << text;
    EXPECT_EQ(text.find("Z info"), std::string::npos) << "a timestamp in a journal line: " << text;
    // Not the journal (another file's inode): timestamps as before.
    controller.reset();
    kit::write_file(dir / "plain.log", "");
    controller = std::make_unique<kit::Process>(
        std::vector<std::string>{OTA_CONTROLLER_BIN, "--config", (dir / "controller.json").string()}, dir / "plain.log",
        std::map<std::string, std::string>{{"JOURNAL_STREAM", std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino)}});
    ASSERT_TRUE(kit::wait_until([&] { return controller->log().find("broker not reachable") != std::string::npos; }, 10s));
    EXPECT_NE(controller->log().find("Z warn [controller] broker not reachable"), std::string::npos) << controller->log();
    EXPECT_EQ(controller->log().find("<4>"), std::string::npos);
}

}  // namespace

namespace {
// The unit's ExecStartPre=: `--check-config` exits 0 for a config that would start and 2 with
// one line naming the file and the cause for one that would not, connecting to nothing.
TEST_F(ControllerNotify, CheckConfigPassesAGoodConfigAndNamesTheCauseOfABadOne) {
    const auto file = dir / "controller.json";
    kit::write_file(file, config(three_waves()).dump(2));
    broker->stop();  // it connects to nothing
    auto ok = kit::run({OTA_CONTROLLER_BIN, "--config", file.string(), "--check-config"}, 10s);
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_NE(ok.out.find("config OK"), std::string::npos) << ok.out;

    auto no_keys = config(three_waves());
    no_keys["trusted_keys"] = (dir / "missing-keys").string();
    kit::write_file(file, no_keys.dump(2));
    auto bad = kit::run({OTA_CONTROLLER_BIN, "--config", file.string(), "--check-config"}, 10s);
    EXPECT_EQ(bad.exit_code, 2);
    EXPECT_NE(bad.err.find(file.string()), std::string::npos) << bad.err;
    EXPECT_NE(bad.err.find("missing-keys"), std::string::npos) << bad.err;
    EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << "one line: " << bad.err;

    auto typo = config(three_waves());
    typo["fleets"][0]["waves"][0]["max_failure_percent"] = "ten";
    kit::write_file(file, typo.dump(2));
    auto bad2 = kit::run({OTA_CONTROLLER_BIN, "--config", file.string(), "--check-config"}, 10s);
    EXPECT_EQ(bad2.exit_code, 2);
    EXPECT_NE(bad2.err.find("config_invalid"), std::string::npos) << bad2.err;
}
}  // namespace
