// ota-agent through whole update runs on a failing disk (the iofault shim, LD_PRELOAD): a `file`
// or `archive` release is offered, the agent runs once with the Nth write / fsync / rename under
// its staging dir, its agent.db or the install target failing with ENOSPC or EIO, for N swept
// over the calls a clean run makes there. After each faulted run: the live files are the old version or the
// complete new one (never a part), the retained status names the failure with its documented
// code (disk_full / io_error) or says succeeded, the inventory agrees, the agent exited with a
// documented status (no signal); then a fault-free rerun (after the operator's `retry`) installs
// the new version. docs/testing-faults.md records what these sweeps found.
#include <cstdlib>
#include <functional>

#include "agent_fixture.hpp"
#include "fault_sweep.hpp"

namespace {

// One update to sweep: the device before it, the release, and what a user checks on disk.
struct Scenario {
    std::string name;                      // "file", "archive"
    fs::path target;                       // the install target directory
    json config_extra = json::object();    // merged into the agent's config
    std::string old_version, new_version;  // as the inventory says
    Release release;                       // the new version, offered on the wave
    std::function<void()> reset;           // the device as before the update (old version live)
    // The old version live and whole, nothing of the new in its place; `full`: the disk is still
    // full, so a rollback may not have removed what it staged (the next good run does).
    std::function<void(const std::string&, bool full)> expect_old;
    std::function<bool()> new_whole;       // the new version live and whole
    std::function<void()> expect_tidy;     // after the rerun: no temporary leftovers
};

constexpr const char* old_model = "model-2026-01-01.trt";
constexpr const char* old_bytes = "the working model, placed before the update\n";

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

std::vector<std::string> names_in(const fs::path& d) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(d, ec)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

class AgentFaultTest : public AgentTest {
protected:
    fs::path calls_log() const { return dir / "iofault.log"; }
    fs::path state_dir() const { return dir / "state"; }
    fs::path app() const { return dir / "app"; }

    void forget_reports() {
        for (const char* t : {"status/detection-model", "inventory"}) clear(device, "ota/v1/devices/" + device + "/" + t);
    }

    // A `file` update: the working model placed by hand, the new one a 200 kB model file.
    Scenario file_scenario() {
        Scenario sc;
        sc.name = "file";
        sc.target = target();
        sc.old_version = "2026-01-01";
        sc.new_version = "2026-02-01";
        sc.reset = [this] {
            std::error_code ec;
            fs::remove_all(state_dir(), ec);
            fs::remove_all(target(), ec);
            fs::create_directories(target());
            kit::write_file(target() / old_model, old_bytes);
            forget_reports();
        };
        sc.reset();
        sc.release = make_release(sc.new_version);
        const auto new_model = "model-" + sc.new_version + ".trt";
        const auto content = sc.release.content;
        sc.expect_old = [this](const std::string& why, bool) {
            EXPECT_EQ(installed_files(), std::vector<std::string>{old_model}) << why;
            EXPECT_EQ(kit::read_file(target() / old_model), old_bytes) << why;
        };
        sc.new_whole = [this, new_model, content] {
            return fs::exists(target() / new_model) && kit::read_file(target() / new_model) == content &&
                   kit::read_file(target() / old_model) == old_bytes;
        };
        sc.expect_tidy = [this] {
            for (const auto& e : fs::directory_iterator(target()))
                EXPECT_EQ(e.path().filename().string().find(".ota-new"), std::string::npos) << "left behind: " << e.path();
        };
        return sc;
    }

    // An `archive` update: 1.0.0 installed by the agent (its state and releases/ kept as a
    // snapshot that each run starts from), then 1.1.0.
    Scenario archive_scenario() {
        Scenario sc;
        sc.name = "archive";
        sc.target = app();
        sc.config_extra = {{"components", {{"detection-model", {{"version_source", nullptr}}}}}};
        sc.old_version = "1.0.0";
        sc.new_version = "1.1.0";
        forget_reports();
        const auto config = write_config(sc.config_extra);
        assign();
        offer(sign_release("1.0.0", make_tarball(dir.path(), "1.0.0"), "app-1.0.0.tar.gz",
                           {"--install", "archive", "--target", app().string()}));
        auto first = run_agent(config, {});
        EXPECT_EQ(first.exit_code, 0) << first.err;
        EXPECT_EQ(status().value("stage", ""), "succeeded") << first.err;
        const auto snap = dir / "snapshot";
        fs::create_directories(snap);
        fs::copy(state_dir(), snap / "state", fs::copy_options::recursive | fs::copy_options::copy_symlinks);
        fs::copy(app(), snap / "app", fs::copy_options::recursive | fs::copy_options::copy_symlinks);
        sc.reset = [this, snap] {
            std::error_code ec;
            fs::remove_all(state_dir(), ec);
            fs::remove_all(app(), ec);
            fs::copy(snap / "state", state_dir(), fs::copy_options::recursive | fs::copy_options::copy_symlinks);
            fs::copy(snap / "app", app(), fs::copy_options::recursive | fs::copy_options::copy_symlinks);
            forget_reports();
        };
        sc.reset();
        sc.release = sign_release("1.1.0", make_tarball(dir.path(), "1.1.0"), "app-1.1.0.tar.gz",
                                  {"--install", "archive", "--target", app().string()});
        auto live = [this](const std::string& v) {
            std::error_code ec;
            return fs::read_symlink(app() / "current", ec).filename() == v &&
                   fs::exists(app() / "current" / "app" / "VERSION") &&
                   kit::read_file(app() / "current" / "app" / "VERSION") == v;
        };
        sc.expect_old = [this, live](const std::string& why, bool full) {
            EXPECT_TRUE(live("1.0.0")) << why;
            auto releases = names_in(app() / "releases");
            // On a full disk the rollback cannot rename the new release away (or sync that) to
            // delete it: 1.1.0, 1.1.0.partial or .1.1.0.deleting may stay until the next good run.
            if (full) std::erase_if(releases, [](const std::string& n) { return n.find("1.1.0") != std::string::npos; });
            EXPECT_EQ(releases, std::vector<std::string>{"1.0.0"}) << why;
        };
        sc.new_whole = [live] { return live("1.1.0"); };
        sc.expect_tidy = [this] {
            EXPECT_EQ(names_in(app() / "releases"), (std::vector<std::string>{"1.0.0", "1.1.0"}));
            EXPECT_FALSE(fs::exists(app() / "current.tmp"));
        };
        return sc;
    }

    // Remove a retained message (an empty retained publish, mosquitto_pub -n). The fixture's
    // clear_retained() cannot: mosquitto_pub -s refuses an empty stdin ("Zero length input").
    void clear(const std::string& who, const std::string& topic) {
        auto r = kit::run({"mosquitto_pub", "-h", broker->host(), "-p", std::to_string(broker->port()), "--cafile",
                           pki.ca().string(), "--cert", pki.cert(who).string(), "--key", pki.key(who).string(), "-t",
                           topic, "-q", "1", "-r", "-n"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        ASSERT_TRUE(kit::wait_until([&] { return kit::mosquitto_sub(*broker, pki, "operator", topic, 1, 300ms).messages.empty(); },
                                    5s, 50ms)) << topic << " still retained";
    }

    // OTA_FAULT_STRACE=<file> (a manual check, docs/testing-faults.md): the clean run under
    // strace, to compare its system calls with what the shim counted.
    kit::RunResult run_agent(const fs::path& config, const std::map<std::string, std::string>& env, bool traced = false) {
        std::vector<std::string> argv{OTA_AGENT_BIN, "--config", config.string(), "--once", "--once-wait", "15"};
        if (const char* out = std::getenv("OTA_FAULT_STRACE"); traced && out)
            argv.insert(argv.begin(), {"strace", "-f", "-o", out, "-e",
                                       "trace=%file,write,pwrite64,writev,pwritev,fsync,fdatasync,rename,renameat,renameat2"});
        return kit::run(argv, 60s, env);
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
    fs::path watched_dir(Where w, const Scenario& sc) const {
        const auto canon = fs::weakly_canonical(dir.path());
        switch (w) {
            case Where::staging: return canon / "state" / "staging";
            case Where::target: return fs::weakly_canonical(sc.target);
            case Where::database: return canon / "state";
        }
        return canon;
    }

    // The sweep of one op and errno over the counted calls under `where` in an update.
    void sweep(const std::string& op, const std::string& err, Where where, bool archive = false) {
        const std::string code = err == "ENOSPC" ? "disk_full" : "io_error";
        // A full disk stays full; an I/O error is one bad call.
        const std::string mode = err == "ENOSPC" ? "sticky" : "once";
        const Scenario sc = archive ? archive_scenario() : file_scenario();
        if (HasFailure()) return;
        const auto watched = watched_dir(where, sc);
        const auto what = sc.name + " update, " + op + " under " + to_string(where);
        const auto config = write_config(sc.config_extra);
        assign();
        offer(sc.release);
        fs::create_directories(watched);

        // The clean run: how many counted calls does an update make under `watched`?
        auto env = faults::preload_env(OTA_IOFAULT_LIB, {{"OTA_IOFAULT_OPS", op},
                                                         {"OTA_IOFAULT_PATH", watched.string()},
                                                         {"OTA_IOFAULT_LOG", calls_log().string()}});
        auto clean = run_agent(config, env, true);
        ASSERT_EQ(clean.exit_code, 0) << clean.err;
        ASSERT_EQ(status().value("stage", ""), "succeeded") << clean.err;
        ASSERT_TRUE(sc.new_whole()) << clean.err;
        const auto clean_calls = faults::read_calls(calls_log());
        std::cout << "[ sweep    ] " << what << ": " << clean_calls.size() << " counted calls in a clean run\n"
                  << faults::describe(clean_calls);
        const auto picks = faults::sample_calls(clean_calls, 14, [&](const faults::Call& c) {
            return where != Where::database || faults::file_of(c).starts_with("agent.db");
        });
        ASSERT_FALSE(picks.empty()) << "no " << op << " call under " << watched << ": the shim is not in effect";

        faults::Tally tally;
        for (const long n : picks) {
            SCOPED_TRACE(op + " #" + std::to_string(n) + " (" + clean_calls[static_cast<std::size_t>(n - 1)].where() +
                         ") fails with " + err + ", " + mode);
            sc.reset();
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
            if (stage == "succeeded") {
                // The fault hit a call whose failure the update survives: the new version is whole.
                EXPECT_TRUE(sc.new_whole()) << r.err;
                EXPECT_EQ(inventory_version(), sc.new_version);
                tally.add("succeeded", n);
            } else {
                // The old version, whole, and no part of the new one in its place.
                sc.expect_old("stage " + stage + "\n" + r.err, mode == "sticky");
                if (r.exit_code == 0) {
                    // A reported failure with the code a user can act on.
                    EXPECT_TRUE(stage == "failed" || stage == "rolled_back") << s.dump() << "\n" << r.err;
                    EXPECT_EQ(got_code, code) << s.dump() << "\n" << r.err;
                    EXPECT_EQ(inventory_version(), sc.old_version);
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
            EXPECT_EQ(s2.is_null() ? "(none)" : s2.value("stage", ""), "succeeded") << again.err << "\n--- the faulted run:\n" << r.err;
            EXPECT_TRUE(sc.new_whole()) << again.err;
            sc.expect_tidy();
            if (HasFailure() && !std::getenv("OTA_FAULT_KEEP_GOING")) return;
        }
        std::cout << "[ sweep    ] " << what << ", " << err << " (" << mode << "): " << tally.describe() << "\n";
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
TEST_F(AgentFaultTest, ArchiveWriteENOSPCWhileInstalling) { sweep("write", "ENOSPC", Where::target, true); }
TEST_F(AgentFaultTest, ArchiveWriteEIOWhileInstalling) { sweep("write", "EIO", Where::target, true); }
TEST_F(AgentFaultTest, ArchiveFsyncENOSPCWhileInstalling) { sweep("fsync", "ENOSPC", Where::target, true); }
TEST_F(AgentFaultTest, ArchiveFsyncEIOWhileInstalling) { sweep("fsync", "EIO", Where::target, true); }
TEST_F(AgentFaultTest, ArchiveRenameENOSPCWhileInstalling) { sweep("rename", "ENOSPC", Where::target, true); }
TEST_F(AgentFaultTest, ArchiveRenameEIOWhileInstalling) { sweep("rename", "EIO", Where::target, true); }
// agent.db (the journal and the outbox). A single EIO on one of its writes is survived (that
// SQLite transaction fails, the agent's next one works).
TEST_F(AgentFaultTest, WriteEIOInTheAgentDatabase) { sweep("write", "EIO", Where::database); }
// A failing fsync of agent.db during an update: the agent reports failed with io_error (directly
// when its outbox, in the same database, cannot take the report) and a clean rerun finishes.
TEST_F(AgentFaultTest, FsyncEIOInTheAgentDatabase) { sweep("fsync", "EIO", Where::database); }
// A full disk under agent.db: at start-up the agent cannot start and says disk_full naming the
// file (SQLite's IOERR on -journal/-wal is read by its errno); before the new version is live it
// reports failed with disk_full from memory (the outbox cannot take it); once it is live the update
// finishes from memory and reports succeeded (the stored journal, behind, commits again at the next
// start).
TEST_F(AgentFaultTest, WriteENOSPCInTheAgentDatabase) { sweep("write", "ENOSPC", Where::database); }
TEST_F(AgentFaultTest, FsyncENOSPCInTheAgentDatabase) { sweep("fsync", "ENOSPC", Where::database); }

}  // namespace
