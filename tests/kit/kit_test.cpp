// The test kit's own building blocks: temporary directories, free ports, run(), Process, waits.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <thread>

#include "kit.hpp"

namespace {

namespace kit = ota::testkit;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(TempDir, IsFreshPrivateAndRemovedWithItsContents) {
    fs::path kept;
    {
        kit::TempDir a("kit-test");
        kit::TempDir b("kit-test");
        EXPECT_NE(a.path(), b.path());
        ASSERT_TRUE(fs::is_directory(a.path()));
        EXPECT_TRUE(fs::is_empty(a.path()));
        EXPECT_EQ(a.path().filename().string().rfind("kit-test-", 0), 0u) << a.path();
        struct stat st {};
        ASSERT_EQ(::stat(a.path().c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0700u);
        fs::create_directories(a / "sub" / "deeper");
        kit::write_file(a / "sub" / "deeper" / "f", "x");
        kept = a.path();
    }
    EXPECT_FALSE(fs::exists(kept));
}

TEST(Files, WriteThenReadIsByteExactAndMissingFileThrows) {
    kit::TempDir d;
    const std::string data("a\0b\nc", 5);
    kit::write_file(d / "f", data);
    EXPECT_EQ(kit::read_file(d / "f"), data);
    EXPECT_THROW((void)kit::read_file(d / "missing"), std::runtime_error);
    EXPECT_THROW(kit::write_file(d / "no" / "dir" / "f", "x"), std::runtime_error);
}

TEST(FreePort, IsBindableOnLoopbackAndVaries) {
    const int a = kit::free_port();
    const int b = kit::free_port();
    EXPECT_GT(a, 0);
    EXPECT_LT(a, 65536);
    EXPECT_NE(a, b);
}

TEST(WaitUntil, ReturnsAsSoonAsTrueAndFalseAfterTheTimeout) {
    std::atomic<int> calls{0};
    auto t0 = Clock::now();
    EXPECT_TRUE(kit::wait_until([&] { return ++calls >= 3; }, 5s, 1ms));
    EXPECT_LT(Clock::now() - t0, 1s);
    EXPECT_EQ(calls, 3);

    t0 = Clock::now();
    EXPECT_FALSE(kit::wait_until([] { return false; }, 150ms, 10ms));
    const auto took = Clock::now() - t0;
    EXPECT_GE(took, 150ms);
    EXPECT_LT(took, 1s);
}

TEST(Run, CapturesStdoutStderrAndTheExitCode) {
    const auto r = kit::run({"sh", "-c", "echo out; echo err >&2; exit 3"});
    EXPECT_EQ(r.exit_code, 3);
    EXPECT_EQ(r.out, "out\n");
    EXPECT_EQ(r.err, "err\n");
}

TEST(Run, PassesArgumentsWithoutAShellAndAddsEnvironment) {
    const auto r = kit::run({"sh", "-c", "printf '%s|%s|%s' \"$1\" \"$KIT_X\" \"${HOME:+home}\"", "sh", "a b;$c"}, 5s,
                            {{"KIT_X", "y z"}});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "a b;$c|y z|home");  // the rest of the environment is kept
}

TEST(Run, FeedsStdinAndLargeOutputsDoNotDeadlock) {
    const std::string big(1 << 20, 'x');  // larger than a pipe buffer, both ways
    const auto r = kit::run({"cat"}, 10s, {}, big);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.out.size(), big.size());
    EXPECT_EQ(r.out, big);
    // Without stdin_data, stdin is /dev/null.
    EXPECT_EQ(kit::run({"cat"}, 5s).out, "");
}

TEST(Run, AChildThatIgnoresStdinDoesNotKillTheTestWithSigpipe) {
    const auto r = kit::run({"true"}, 5s, {}, std::string(1 << 20, 'x'));
    EXPECT_EQ(r.exit_code, 0);
}

TEST(Run, KillsTheCommandAndItsChildrenAtTheTimeout) {
    const auto t0 = Clock::now();
    const auto r = kit::run({"sh", "-c", "echo started; sleep 30 & sleep 30"}, 300ms);
    EXPECT_LT(Clock::now() - t0, 3s);
    EXPECT_EQ(r.exit_code, -1);
    EXPECT_EQ(r.out, "started\n");
    EXPECT_NE(r.err.find("killed after 300 ms"), std::string::npos) << r.err;
}

TEST(Run, ReportsSignalsAs128PlusTheSignal) {
    EXPECT_EQ(kit::run({"sh", "-c", "kill -TERM $$"}).exit_code, 128 + SIGTERM);
}

TEST(Run, AMissingProgramIsExit127WithAMessage) {
    const auto r = kit::run({"/nonexistent/ota-kit-test"});
    EXPECT_EQ(r.exit_code, 127);
    EXPECT_NE(r.err.find("/nonexistent/ota-kit-test"), std::string::npos) << r.err;
}

TEST(Run, ReturnsWhenTheChildExitsEvenIfABackgroundGrandchildHoldsTheOutput) {
    const auto t0 = Clock::now();
    const auto r = kit::run({"sh", "-c", "sleep 2 & echo done"}, 10s);
    EXPECT_LT(Clock::now() - t0, 1500ms);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.out, "done\n");
}

TEST(Process, LogsToTheFileAndStopsWithSigterm) {
    kit::TempDir d;
    kit::Process p({"sh", "-c", "echo hello; echo oops >&2; exec sleep 30"}, d / "log");
    EXPECT_GT(p.pid(), 0);
    ASSERT_TRUE(kit::wait_until([&] { return p.log() == "hello\noops\n"; }, 5s)) << p.log();
    EXPECT_TRUE(p.running());
    EXPECT_EQ(p.stop(), 128 + SIGTERM);
    EXPECT_FALSE(p.running());
    EXPECT_EQ(p.stop(), 128 + SIGTERM);  // idempotent
}

TEST(Process, EscalatesToSigkillAndTakesTheProcessGroupWithIt) {
    kit::TempDir d;
    // The shell ignores SIGTERM; its child writes its PID so we can check it is gone too.
    kit::Process p({"sh", "-c", "trap '' TERM; sleep 30 & echo $! > " + (d / "child").string() + "; wait"}, d / "log");
    ASSERT_TRUE(kit::wait_until([&] { return fs::exists(d / "child") && fs::file_size(d / "child") > 0; }, 5s));
    const int child = std::stoi(kit::read_file(d / "child"));
    const auto t0 = Clock::now();
    EXPECT_EQ(p.stop(200ms), 128 + SIGKILL);
    EXPECT_LT(Clock::now() - t0, 3s);
    EXPECT_TRUE(kit::wait_until([&] { return ::kill(child, 0) != 0; }, 2s)) << "grandchild " << child << " survived";
}

TEST(Process, KillDeliversASignalAndReportsTheExit) {
    kit::TempDir d;
    kit::Process p({"sleep", "30"}, d / "log");
    p.kill(SIGKILL);
    EXPECT_FALSE(p.running());
    EXPECT_EQ(p.stop(), 128 + SIGKILL);
}

TEST(Process, ReportsItsOwnExit) {
    kit::TempDir d;
    kit::Process p({"sh", "-c", "exit 7"}, d / "log");
    ASSERT_TRUE(kit::wait_until([&] { return !p.running(); }, 5s));
    EXPECT_EQ(p.stop(), 7);
}

TEST(Process, AMissingProgramThrows) {
    kit::TempDir d;
    EXPECT_THROW(kit::Process({"/nonexistent/ota-kit-test"}, d / "log"), std::runtime_error);
}

TEST(Pki, SharedPkiHasEveryIdentityVerifiedByItsCa) {
    const auto& pki = kit::shared_pki(3);
    for (const char* who : {"broker", "artifacts", "ci", "controller", "operator", "device-001", "device-003"}) {
        EXPECT_TRUE(fs::exists(pki.cert(who))) << who;
        struct stat st {};
        ASSERT_EQ(::stat(pki.key(who).c_str(), &st), 0) << who;
        EXPECT_EQ(st.st_mode & 0777, 0600u) << who;
        const auto r = kit::run({"openssl", "verify", "-CAfile", pki.ca().string(), pki.cert(who).string()});
        EXPECT_EQ(r.exit_code, 0) << who << ": " << r.out << r.err;
    }
    const auto subject = kit::run({"openssl", "x509", "-noout", "-subject", "-in", pki.cert("device-002").string()});
    EXPECT_NE(subject.out.find("CN = device-002"), std::string::npos) << subject.out;
    // Asking for more devices adds them under the same CA.
    const auto ca = kit::read_file(pki.ca());
    const auto& more = kit::shared_pki(5);
    EXPECT_EQ(&more, &pki);
    EXPECT_TRUE(fs::exists(more.cert("device-005")));
    EXPECT_EQ(kit::read_file(more.ca()), ca);
}

}  // namespace
