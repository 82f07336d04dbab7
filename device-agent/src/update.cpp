// Running an update through its journal (docs/agent.md, "Update steps, journal and crash
// safety"): each step is journalled before it runs, moved on as journal.hpp's table says, and run
// again after a crash.
#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include "ota/systemd.hpp"
#include "agent_impl.hpp"
#include "install/health.hpp"
#include "messages.hpp"
#include "progress.hpp"
#include "ota/build_info.hpp"
#include "ota/download.hpp"
#include "ota/files.hpp"
#include "ota/json.hpp"
#include "ota/time.hpp"

namespace ota::agent {
namespace {

std::string artifact_name(const std::string& url) {
    auto path = url.substr(0, url.find_first_of("?#"));
    const auto slash = path.rfind('/');
    auto name = slash == std::string::npos ? path : path.substr(slash + 1);
    if (name.empty() || name == "." || name == "..") name = "artifact";
    return name;
}

// Test-only fault points (docs/agent.md, "Fault points"): with OTA_FAULT_POINT=<name> in the
// environment the agent kills itself with SIGKILL at that point, exactly as a power cut would
// stop it. Names: "before:<journal step>" (the step is journalled, its work not begun) and
// "after:<journal step>" (its work done, the next step not yet journalled).
// Compiled out with -DOTA_FAULT_POINTS=OFF.
void fault_point(const std::string& name) {
#ifdef OTA_FAULT_POINTS
    static const char* armed = std::getenv("OTA_FAULT_POINT");
    if (armed && name == armed) ::kill(::getpid(), SIGKILL);
#else
    (void)name;
#endif
}

json record_of(const json& j) { return j.is_object() && j.contains("record") ? j["record"] : json::object(); }

}  // namespace

// The journal is read once; each step then works on it in memory and writes it before it runs.
// When a write fails, the transition table says whether to stop (the old version live) or to go
// on from memory (the new one may be live): journal.hpp, on_unwritable_journal_go_on.
void Agent::Impl::run_update(const std::string& component) {
    auto jr = store->journal(component);
    if (!jr || !*jr) return;
    json j = **jr;
    if (!j.is_object()) {
        log.error("journal entry unreadable; dropped", {{"component", component}});
        (void)store->clear_journal(component);
        return;
    }
    bool from_memory = false;
    for (int step = 0; step < 32; ++step) {
        const auto stage_name = str_or(j, "stage");
        const auto stage = parse_stage(stage_name);
        if (!j["entries"].is_object()) j["entries"] = json::object();
        const int entries = static_cast<int>(int_field(j["entries"], stage_name).value_or(0)) + 1;
        j["entries"][stage_name] = entries;
        if (auto w = store->put_journal(component, j); !w) {
            if (!stage || !transition(*stage).on_unwritable_journal_go_on) {
                // Nothing more is done without a journal; the step in the stored one runs again at
                // the next start (every step is idempotent). Said now, so the device does not look busy.
                log.error("cannot write the journal", {{"error", w.error().message}});
                const auto parsed = parse_json(str_or(j, "envelope"), "journal").value_or(json());  // kept: `manifest` points into it
                const auto* manifest = field(parsed, "manifest");
                report(component, manifest ? str_or(*manifest, "version") : std::string(), str_or(j, "rollout"), Reported::failed,
                       std::nullopt, w.error().with_context("cannot write the journal at step " + stage_name + "; resumed at the next start"));
                return;
            }
            if (!from_memory)
                log.error("cannot write the journal; finishing the update from memory",
                          {{"step", stage_name}, {"error", w.error().message}});
            from_memory = true;
        }
        const auto accepted = parse_utc(str_or(j, "accepted_at"));
        auto verified = open_envelope(str_or(j, "envelope"), journal_keys(), accepted ? *accepted : now_utc(), "journal of " + component);
        if (!verified) {
            log.error("journal entry unreadable; dropped", {{"component", component}, {"error", verified.error().message}});
            (void)store->clear_journal(component);
            return;
        }
        Manifest m = verified->manifest;
        const auto rollout = str_or(j, "rollout");
        if (!stage) {
            log.error("unknown journal stage; rolling back", {{"component", component}, {"stage", printable(stage_name, 80)}});
            to_rollback(j, Reported::failed, {ErrorCode::internal, "unknown journal stage '" + printable(stage_name, 80) + "'"});
            continue;
        }
        if (*stage == Stage::rolling_back) {
            fault_point("before:" + stage_name);
            finish_rollback(component, m, rollout, j);
            return;
        }
        if (entries > cfg.max_step_restarts + 1) {
            to_rollback(j, transition(*stage).final_on_crash_loop,
                        {ErrorCode::crash_loop, "the agent restarted " + std::to_string(entries - 1) + " times in step " +
                                                    stage_name + "; giving up"});
            continue;
        }
        fault_point("before:" + stage_name);
        const bool more = step_once(component, m, rollout, *stage, j);
        fault_point("after:" + stage_name);
        if (!more) return;
    }
}

// Move the journal to rolling_back, keeping why and which final stage to report.
void Agent::Impl::to_rollback(json& j, Reported final_stage, const Error& error) {
    j["stage"] = std::string(to_string(Stage::rolling_back));
    j["final"] = std::string(to_string(final_stage));
    j["error"] = {{"code", std::string(to_string(error.code))}, {"message", error.message}};
    (void)store->put_journal(str_or(j, "component"), j);
}

void Agent::Impl::advance(json& j, Stage next) {
    j["stage"] = std::string(to_string(next));
    (void)store->put_journal(str_or(j, "component"), j);
}

fs::path Agent::Impl::staging_dir(const std::string& component) const { return cfg.state_dir / "staging" / component; }
fs::path Agent::Impl::staged_artifact(const std::string& component, const Manifest& m) const {
    return staging_dir(component) / artifact_name(m.artifact.url);
}

// The manifest as this device applies it: the agent's own binary for `self`, and every target
// under install_root when one is configured.
Manifest Agent::Impl::install_manifest(Manifest m) const {
    if (m.install.type == InstallType::self && m.install.target.empty())
        m.install.target = cfg.binary_path.empty() ? fs::read_symlink("/proc/self/exe").string() : cfg.binary_path.string();
    else if (!cfg.install_root.empty() && !m.install.target.empty())
        m.install.target = (cfg.install_root / fs::path(m.install.target).relative_path()).string();
    return m;
}

bool Agent::Impl::download_step(const std::string& component, const Manifest& m, const std::string& rollout, json& j,
                                const fs::path& artifact) {
    download::Request d;
    d.url = m.artifact.url;
    d.dest = artifact;
    d.expected_size = m.artifact.size;
    d.expected_sha256 = m.artifact.sha256;
    d.cafile = cfg.download_cafile;
    d.low_speed_limit = cfg.low_speed_limit;
    d.low_speed_time = cfg.low_speed_time;
    d.stall_timeout = cfg.download_stall_timeout;
    d.deadline = cfg.download_deadline;
    d.total_deadline = cfg.download_total_deadline;
    d.max_attempts = cfg.download_attempts;
    d.retry_window = cfg.download_retry_window;
    // The first call carries the bytes already on disk (a resumed download reports where it is);
    // the throttle keeps the rest to a few reports (progress.hpp).
    ProgressThrottle throttle(cfg.progress_interval, cfg.progress_step_percent);
    d.on_progress = [&](const download::Progress& p) {
        if (throttle.admit(p.percent, ProgressThrottle::Clock::now()))
            report(component, m.version, rollout, Reported::downloading, p.percent);
    };
    d.cancelled = [] {
        systemd::alive();  // polled through the transfer, stalls included (bounded by the stall timeout)
        return g_stop.load();
    };
    // Through the site cache when one mirrors the artifact's origin; the signed size and SHA-256
    // hold either way. A failed download from the cache is tried once from the origin.
    const auto via_cache = cache_url(cfg, m.artifact.url);
    if (via_cache) d.url = *via_cache;
    auto r = download::fetch(d);
    if (!r && via_cache && cfg.cache_fallback && !g_stop && r.error().code != ErrorCode::disk_full &&
        r.error().code != ErrorCode::io_error) {
        log.warn("the site cache failed; fetching from the origin",
                 {{"component", component}, {"cache_url", *via_cache}, {"url", m.artifact.url},
                  {"error", r.error().describe()}});
        download::discard_partial(artifact);
        d.url = m.artifact.url;
        r = download::fetch(d);
    }
    if (!r) {
        if (g_stop) return false;  // stopping: the partial download is resumed next start
        to_rollback(j, transition(Stage::downloading).final_on_failure, r.error());
        return true;
    }
    log.info("downloaded", {{"component", component}, {"url", d.url}, {"bytes", std::to_string(r->bytes_transferred)},
                            {"resumed_from", std::to_string(r->resumed_from)}, {"attempts", std::to_string(r->attempts)}});
    advance(j, *transition(Stage::downloading).on_success);
    return true;
}

// One step; false when the update is over (or must stop, e.g. to restart the agent).
bool Agent::Impl::step_once(const std::string& component, const Manifest& m0, const std::string& rollout, Stage stage,
                            json& j) {
    const Manifest m = install_manifest(m0);
    const auto& settings = cfg.components.at(component);
    const auto artifact = staged_artifact(component, m);
    InstallRequest request{m, artifact, staging_dir(component) / "work", settings.install};
    std::error_code ec;
    fs::create_directories(request.work_dir, ec);
    const auto& row = transition(stage);
    const auto fail_step = [&](const Error& e) {
        to_rollback(j, row.final_on_failure, e);
        return true;
    };
    const auto next = [&] {
        advance(j, (m.install.type == InstallType::self && row.on_success_self) ? *row.on_success_self : *row.on_success);
        return true;
    };
    if (stage == Stage::downloading) return download_step(component, m, rollout, j, artifact);
    // No health check configured: the step only moves on, and a report of it would say nothing.
    const bool nothing_to_report = stage == Stage::health_checking && !settings.health;
    if (row.reported && !nothing_to_report) report(component, m.version, rollout, *row.reported);

    switch (stage) {
        case Stage::verifying: {
            auto d = crypto::sha256_file(artifact);
            if (!d) return fail_step(d.error());
            if (d->size != m.artifact.size)
                return fail_step({ErrorCode::size_mismatch, artifact.string() + ": " + std::to_string(d->size) +
                                                                " bytes, the manifest says " + std::to_string(m.artifact.size)});
            if (d->sha256 != m.artifact.sha256)
                return fail_step({ErrorCode::hash_mismatch,
                                  artifact.string() + ": sha256 " + d->sha256 + ", the manifest says " + m.artifact.sha256});
            return next();
        }
        case Stage::preparing: {
            auto rec = make_installer(m.install.type)->prepare(request);
            if (!rec) return fail_step(rec.error());
            j["record"] = *rec;
            return next();
        }
        case Stage::activating: {
            // The guard first: once the new agent binary is in place, only the launcher can bring
            // the old one back if the new one cannot start.
            if (m.install.type == InstallType::self)
                if (auto g = write_self_update_guard(m.install.target, !record_of(j).value("previous", json()).is_null()); !g)
                    return fail_step(g.error());
            if (auto a = make_installer(m.install.type)->activate(request, record_of(j)); !a) return fail_step(a.error());
            next();
            if (m.install.type == InstallType::self) {
                log.info("self-update activated; restarting into the new binary", {{"version", m.version}});
                restart_requested = true;
                return false;
            }
            return true;
        }
        case Stage::self_restarting:
            // Running again after the self-update: are we the new binary?
            if (m.version != build::version)
                return fail_step({ErrorCode::health_check_failed, std::string("after the self-update the running agent is ") +
                                                                      build::version + ", not " + m.version});
            return next();
        case Stage::health_checking:
            if (settings.health) {
                auto check = *settings.health;
                check.env.emplace_back("OTA_COMPONENT", component);
                check.env.emplace_back("OTA_VERSION", m.version);
                if (auto h = run_health_check(check); !h) return fail_step(h.error());
            }
            return next();
        case Stage::committing: {
            if (auto c = make_installer(m.install.type)->commit(request, record_of(j)); !c)
                log.warn("commit clean-up failed; the new version stays", {{"error", c.error().message}});
            keep_for_operator_rollback(component, j);
            const auto payload = status_payload(component, m.version, rollout, Reported::succeeded, std::nullopt, std::nullopt);
            if (auto done = store->complete(component, {0, topics.status(cfg.device_id, component), payload, true}, m.version,
                                            m.artifact.sha256, std::string(to_string(Reported::succeeded)), m.version);
                !done) {
                // The new version is live and passed its health check, but the state database
                // cannot record that (a full or failing disk). Say so now rather than leave
                // `health_checking` standing; the journal, kept, commits again at the next
                // start, which reports once more.
                log.error("cannot record the finished update; reporting it directly", {{"error", done.error().describe()}});
                send_direct(component, payload);
                statuses[component] = payload;
                if (m.install.type == InstallType::self) clear_self_update_guard();
                remember_unrecorded(component, m.version);
                inventory.invalidate();
                publish_inventory();
                note_stage(component, m.version, Reported::succeeded, std::nullopt, std::nullopt);
                return false;
            }
            statuses[component] = payload;
            forget_unrecorded(component);
            if (m.install.type == InstallType::self) clear_self_update_guard();
            log.info("update succeeded", {{"component", component}, {"version", m.version}});
            cleanup_staging(component);
            inventory.invalidate();
            flush();
            publish_inventory();
            note_stage(component, m.version, Reported::succeeded, std::nullopt, std::nullopt);
            return false;
        }
        case Stage::downloading:
        case Stage::rolling_back:
            break;  // handled above / by run_update
    }
    return fail_step({ErrorCode::internal, "journal stage '" + std::string(to_string(stage)) + "' cannot run here"});
}

// What an operator's "rollback" needs later (from the journal of a finished install): the
// release, the installer's record, the version before it.
void Agent::Impl::keep_for_operator_rollback(const std::string& component, const json& j) {
    json last{{"envelope", str_or(j, "envelope")}, {"rollout", str_or(j, "rollout")},
              {"accepted_at", str_or(j, "accepted_at")}, {"record", record_of(j)}};
    if (j.contains("previous_version")) last["previous_version"] = j["previous_version"];
    (void)store->put("last_install/" + component, dump_safe(last));
}

void Agent::Impl::finish_rollback(const std::string& component, const Manifest& m0, const std::string& rollout, const json& j) {
    const Manifest m = install_manifest(m0);
    const auto& settings = cfg.components.at(component);
    InstallRequest request{m, staged_artifact(component, m), staging_dir(component) / "work", settings.install};
    // Also without a record (prepare interrupted before its record was journalled): rollback
    // then removes what prepare may have left (hidden temp files, .partial dirs, <bin>.new).
    // An operator's rollback undoes a committed install: the installer's revert.
    const bool by_operator = bool_field(j, "operator").value_or(false);
    const auto installer = make_installer(m.install.type);
    const auto record = record_of(j);
    auto undone = by_operator ? installer->revert(request, record) : installer->rollback(request, record);
    if (!undone) log.error("rollback failed", {{"component", component}, {"error", undone.error().message}});
    auto final_stage = parse_reported(str_or(j, "final")).value_or(Reported::failed);
    const json e = j.contains("error") && j["error"].is_object() ? j["error"] : json::object();
    Error error{ErrorCode::internal, str_or(e, "message")};
    const auto code = str_or(e, "code");
    for (int c = 0; c <= static_cast<int>(ErrorCode::internal); ++c)
        if (to_string(static_cast<ErrorCode>(c)) == code) error.code = static_cast<ErrorCode>(c);
    // An operator's rollback that could not be carried out leaves the new version installed.
    if (by_operator && !undone) {
        final_stage = Reported::failed;
        error = undone.error().with_context("the rollback an operator asked for failed");
        keep_for_operator_rollback(component, j);  // it may be asked for again
    }
    const auto payload = status_payload(component, m.version, rollout, final_stage, std::nullopt, error);
    // An operator's rollback undoes a finished install: the version before it is current again.
    std::optional<std::string> installed;
    if (by_operator && undone && j.contains("previous_version") && j["previous_version"].is_string())
        installed = j["previous_version"].get<std::string>();
    if (auto done = store->complete(component, {0, topics.status(cfg.device_id, component), payload, true}, m.version,
                                    m.artifact.sha256, std::string(to_string(final_stage)), installed);
        !done) {
        // The rollback is done (or failed, as the payload says); the journal, kept, finishes it
        // again at the next start.
        log.error("cannot record the finished rollback; reporting it directly", {{"error", done.error().describe()}});
        send_direct(component, payload);
        statuses[component] = payload;
        if (installed) remember_unrecorded(component, *installed);
        inventory.invalidate();
        publish_inventory();
        return;
    }
    statuses[component] = payload;
    forget_unrecorded(component);
    if (m.install.type == InstallType::self) clear_self_update_guard();
    log.warn("update ended", {{"component", component}, {"version", m.version}, {"stage", std::string(to_string(final_stage))},
                              {"error", printable(error.describe())}});
    cleanup_staging(component);
    inventory.invalidate();
    flush();
    publish_inventory();
}

// The self-update guard read by device-agent/ota-agent-launch (shell "KEY=value" lines): the
// binary to restore from <BIN>.old, the deadline (epoch seconds) and the start budget. The
// launcher appends a line to self-update.starts at each start while the guard exists.
fs::path Agent::Impl::guard_file() const { return cfg.state_dir / "self-update.env"; }

// PREVIOUS=0: there was no binary at BIN before (the packaged agent runs a self-updated binary
// from its state directory, see ota-agent-launch --self-bin): restoring means removing BIN.
Expected<void> Agent::Impl::write_self_update_guard(const std::string& bin, bool had_previous) {
    const auto deadline = std::chrono::duration_cast<std::chrono::seconds>(
                              (std::chrono::system_clock::now() + cfg.self_update_deadline).time_since_epoch())
                              .count();
    std::error_code ec;
    fs::remove(cfg.state_dir / "self-update.starts", ec);
    return write_file_atomic(guard_file(), "BIN=" + bin + "\nDEADLINE=" + std::to_string(deadline) +
                                               "\nMAX_STARTS=" + std::to_string(cfg.self_update_max_starts) +
                                               "\nPREVIOUS=" + (had_previous ? "1" : "0") + "\n");
}

void Agent::Impl::clear_self_update_guard() {
    std::error_code ec;
    fs::remove(guard_file(), ec);
    fs::remove(cfg.state_dir / "self-update.starts", ec);
    (void)fsync_dir(cfg.state_dir);
}

void Agent::Impl::cleanup_staging(const std::string& component) {
    std::error_code ec;
    fs::remove_all(staging_dir(component), ec);
}

}  // namespace ota::agent
