// ota-agent through whole update runs on a failing disk (the iofault shim, LD_PRELOAD): a `file`
// release is offered, the agent runs once with the Nth write / fsync / rename under its state
// directory or under the install target failing with ENOSPC or EIO, for N swept over the calls
// a clean run makes there. After each faulted run: the live files are the old version or the
// complete new one (never a part), the retained status names the failure with its documented
// code (disk_full / io_error) or says succeeded, the inventory agrees, the agent exited with a
// documented status (no signal); then a fault-free rerun (after the operator's `retry`) installs
// the new version. docs/testing-faults.md records what these sweeps found.
#include <sys/wait.h>

#include <cstdlib>
#include <sstream>

#include "agent_fixture.hpp"
#include "fault_sweep.hpp"

namespace {

constexpr const char* old_version = "2026-01-01";
constexpr const char* old_name = "model-2026-01-01.trt";
constexpr const char* old_bytes = "the working model, placed before the update\n";

class AgentFaultTest : public AgentTest {
protected:
    fs::path calls_log() const { return dir / "iofault.log"; }
    fs::path state_dir() const { return dir / "state"; }

    // The device as it was before the update: the working model, no agent state.
    void reset_device() {
        std::error_code ec;
        fs::remove_all(state_dir(), ec);
        fs::remove_all(target(), ec);
        fs::create_directories(target());
        kit::write_file(target() / old_name, old_bytes);
        for (const char* t : {"status/detection-model", "inventory"}) clear(device, "ota/v1/devices/" + device + "/" + t);
    }

    // Remove a retained message (an empty retained publish, mosquitto_pub -n). The fixture's
    // clear_retained() cannot: mosquitto_pub -s refuses an empty stdin ("Zero length input").
    void clear(const std::string& who, const std::string& topic) {
        auto r = kit::run({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(broker->port()), "--cafile",
                           pki.ca().string(), "--cert", pki.cert(who).string(), "--key", pki.key(who).string(), "-t",
                           topic, "-q", "1", "-r", "-n"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        ASSERT_TRUE(kit::wait_until([&] { return !kit::mosquitto_sub(*broker, pki, "operator", topic, 1, 300ms).messages.size(); },
                                    5s, 50ms)) << topic << " still retained";
    }

    kit::RunResult run_agent(const fs::path& config, const std::map<std::string, std::string>& env) {
        return kit::run({OTA_AGENT_BIN, "--config", config.string(), "--once", "--once-wait", "15"}, 60s, env);
    }

    enum class Where { staging, target, database };
    static const char* to_string(Where w) {
        switch (w) {
            case Where::staging: return "staging";
            case Where::target: return "target";
            case Where::database: return "agent.db";
        }
        return "?";
    }
    // The directory whose calls count: the download's staging dir, the install target, or the
    // whole state dir (of which only the calls on agent.db* are failed).
    fs::path watched_dir(Where w) const {
        const auto canon = fs::weakly_canonical(dir.path());
        switch (w) {
            case Where::staging: return canon / "state" / "staging";
            case Where::target: return canon / "models";
            case Where::database: return canon / "state";
        }
        return canon;
    }

    // The sweep of one op and errno over the counted calls under `where`.
    void sweep(const std::string& op, const std::string& err, Where where) {
        const std::string code = err == "ENOSPC" ? "disk_full" : "io_error";
        // A full disk stays full; an I/O error is one bad call.
        const std::string mode = err == "ENOSPC" ? "sticky" : "once";
        const auto watched = watched_dir(where);
        reset_device();
        const auto rel = make_release("2026-02-01");
        const auto new_name = std::string("model-2026-02-01.trt");
        const auto config = write_config();
        assign();
        offer(rel);
        fs::create_directories(watched);

        // The clean run: how many counted calls does an update make under `watched`?
        std::map<std::string, std::string> env{{"LD_PRELOAD", OTA_IOFAULT_LIB}, {"OTA_IOFAULT_OPS", op},
                                               {"OTA_IOFAULT_PATH", watched.string()},
                                               {"OTA_IOFAULT_LOG", calls_log().string()}};
        auto clean = run_agent(config, env);
        ASSERT_EQ(clean.exit_code, 0) << clean.err;
        ASSERT_EQ(status().value("stage", ""), "succeeded") << clean.err;
        ASSERT_EQ(kit::read_file(target() / new_name), rel.content);
        const auto clean_calls = faults::read_calls(calls_log());
        std::cout << "[ sweep    ] " << op << " under " << to_string(where) << ": " << clean_calls.size()
                  << " counted calls in a clean run\n" << faults::describe(clean_calls);
        const auto picks = faults::sample_calls(clean_calls, 14, [&](const faults::Call& c) {
            return where != Where::database || faults::file_of(c).starts_with("agent.db");
        });
        ASSERT_FALSE(picks.empty()) << "no " << op << " call under " << watched << ": the shim is not in effect";

        faults::Tally tally;
        for (const long n : picks) {
            SCOPED_TRACE(op + " #" + std::to_string(n) + " (" + clean_calls[static_cast<std::size_t>(n - 1)].where() +
                         ") fails with " + err + ", " + mode);
            reset_device();
            fs::create_directories(watched);
            fs::remove(calls_log());
            env["OTA_IOFAULT_NTH"] = std::to_string(n);
            env["OTA_IOFAULT_ERRNO"] = err;
            env["OTA_IOFAULT_MODE"] = mode;
            auto r = run_agent(config, env);
            env.erase("OTA_IOFAULT_NTH");

            // It did not crash: 0 (done) or 1 (fatal, one line on stderr); never a signal.
            ASSERT_TRUE(r.exit_code == 0 || r.exit_code == 1) << "exit " << r.exit_code << "\n" << r.err;
            const auto calls = faults::read_calls(calls_log());
            ASSERT_TRUE(faults::failed_at(calls, n)) << "the fault was not injected: the run took another path\n"
                                                     << faults::describe(calls) << r.err;
            const auto s = status();
            const auto stage = s.is_null() ? std::string("(none)") : s.value("stage", "");
            const auto got_code = s.is_null() ? std::string() : s.value("/error/code"_json_pointer, std::string());
            const bool new_live = fs::exists(target() / new_name);
            if (stage == "succeeded") {
                // The fault hit a call whose failure the update survives: the new version is whole.
                EXPECT_TRUE(new_live && kit::read_file(target() / new_name) == rel.content) << r.err;
                EXPECT_EQ(inventory_version(), "2026-02-01");
                tally.add("succeeded", n);
            } else {
                // The old version, byte for byte, and no part of the new one in its place.
                EXPECT_EQ(installed_files(), std::vector<std::string>{old_name}) << "stage " << stage << "\n" << r.err;
                EXPECT_EQ(kit::read_file(target() / old_name), old_bytes);
                if (r.exit_code == 0) {
                    // A reported failure with the code a user can act on.
                    EXPECT_TRUE(stage == "failed" || stage == "rolled_back") << s.dump() << "\n" << r.err;
                    EXPECT_EQ(got_code, code) << s.dump() << "\n" << r.err;
                    EXPECT_EQ(inventory_version(), old_version);
                    tally.add(stage + "/" + got_code, n);
                } else {
                    // Could not even start (its state unwritable): says so, naming the file and the code.
                    EXPECT_NE(r.err.find("cannot start error=\"" + code + ": agent state " + state_dir().string() + "/agent.db"),
                              std::string::npos) << r.err;
                    tally.add("exit 1, " + stage, n);
                }
            }

            // The disk is fine again: the operator's retry installs the new version.
            command({{"cmd", "retry"}, {"component", "detection-model"}});
            auto again = run_agent(config, {});
            EXPECT_EQ(again.exit_code, 0) << again.err;
            const auto s2 = status();
            EXPECT_EQ(s2.is_null() ? "(none)" : s2.value("stage", ""), "succeeded") << again.err;
            EXPECT_TRUE(fs::exists(target() / new_name) && kit::read_file(target() / new_name) == rel.content)
                << again.err;
            EXPECT_EQ(kit::read_file(target() / old_name), old_bytes);
            for (const auto& e : fs::directory_iterator(target()))
                EXPECT_EQ(e.path().filename().string().find(".ota-new"), std::string::npos) << "left behind: " << e.path();
            if (HasFailure() && !std::getenv("OTA_FAULT_KEEP_GOING")) return;
        }
        std::cout << "[ sweep    ] " << op << "/" << err << " under " << to_string(where) << ": "
                  << tally.describe() << "\n";
    }
};

TEST_F(AgentFaultTest, WriteENOSPCWhileDownloading) { sweep("write", "ENOSPC", Where::staging); }
TEST_F(AgentFaultTest, WriteEIOWhileDownloading) { sweep("write", "EIO", Where::staging); }
TEST_F(AgentFaultTest, FsyncENOSPCWhileDownloading) { sweep("fsync", "ENOSPC", Where::staging); }
TEST_F(AgentFaultTest, FsyncEIOWhileDownloading) { sweep("fsync", "EIO", Where::staging); }
TEST_F(AgentFaultTest, RenameENOSPCWhileDownloading) { sweep("rename", "ENOSPC", Where::staging); }
TEST_F(AgentFaultTest, RenameEIOWhileDownloading) { sweep("rename", "EIO", Where::staging); }
TEST_F(AgentFaultTest, WriteENOSPCWhileInstalling) { sweep("write", "ENOSPC", Where::target); }
TEST_F(AgentFaultTest, WriteEIOWhileInstalling) { sweep("write", "EIO", Where::target); }
TEST_F(AgentFaultTest, FsyncENOSPCWhileInstalling) { sweep("fsync", "ENOSPC", Where::target); }
TEST_F(AgentFaultTest, FsyncEIOWhileInstalling) { sweep("fsync", "EIO", Where::target); }
TEST_F(AgentFaultTest, RenameENOSPCWhileInstalling) { sweep("rename", "ENOSPC", Where::target); }
TEST_F(AgentFaultTest, RenameEIOWhileInstalling) { sweep("rename", "EIO", Where::target); }
TEST_F(AgentFaultTest, WriteENOSPCInTheAgentDatabase) { sweep("write", "ENOSPC", Where::database); }
TEST_F(AgentFaultTest, WriteEIOInTheAgentDatabase) { sweep("write", "EIO", Where::database); }
TEST_F(AgentFaultTest, FsyncENOSPCInTheAgentDatabase) { sweep("fsync", "ENOSPC", Where::database); }
TEST_F(AgentFaultTest, FsyncEIOInTheAgentDatabase) { sweep("fsync", "EIO", Where::database); }

}  // namespace
