#include "agent.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "install/health.hpp"
#include "install/installer.hpp"
#include "inventory.hpp"
#include "ota/build_info.hpp"
#include "ota/crypto.hpp"
#include "ota/download.hpp"
#include "ota/files.hpp"
#include "ota/json.hpp"
#include "ota/log.hpp"
#include "ota/manifest.hpp"
#include "ota/mqtt.hpp"
#include "ota/topics.hpp"
#include "store.hpp"

namespace ota::agent {

std::atomic<bool> g_stop{false};

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

// Journal stages, in order. Where a restart in each one resumes (docs/agent.md, "Crash safety"):
//   downloading      resume the partial download (Range + If-Range)
//   verifying        hash the staged file again
//   preparing        run prepare again (idempotent; stages only, nothing live changed)
//   activating       run activate again (idempotent given the record)
//   self_restarting  the new agent binary is running: check it, then health-check
//   health_checking  run the health check again
//   committing       run commit again, then report succeeded
//   rolling_back     run rollback again, then report the final status kept in the journal
constexpr const char* kDownloading = "downloading";
constexpr const char* kVerifying = "verifying";
constexpr const char* kPreparing = "preparing";
constexpr const char* kActivating = "activating";
constexpr const char* kSelfRestarting = "self_restarting";
constexpr const char* kHealthChecking = "health_checking";
constexpr const char* kCommitting = "committing";
constexpr const char* kRollingBack = "rolling_back";

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

struct Event {
    enum class Kind { message, connected, lost };
    Kind kind;
    mqtt::Message message;
};

}  // namespace

struct Agent::Impl {
    AgentConfig cfg;
    Topics topics;
    log::Logger log{"agent"};
    std::unique_ptr<Store> store;
    crypto::TrustStore trusted;
    Inventory inventory;
    std::unique_ptr<mqtt::Client> client;
    RunOptions opts;

    std::mutex mu;
    std::condition_variable cv;
    std::deque<Event> events;

    std::string wave_filter;                      // current wave subscription
    std::map<std::string, std::string> offers;    // component -> last wave message payload
    std::map<std::string, std::string> statuses;  // component -> last status payload sent
    std::optional<std::string> deferred_self;     // component of a self-update offer, applied last
    bool restart_requested{false};
    bool assignment_seen{false};
    bool connected_once{false};
    bool waiting_for_window{false};  // an offer waits for the update window: re-check each minute
    std::chrono::steady_clock::time_point last_window_check{};
    std::chrono::steady_clock::time_point last_inventory{};
    std::chrono::steady_clock::time_point last_inventory_check{};
    std::string published_versions;

    explicit Impl(AgentConfig c) : cfg(std::move(c)), topics(cfg.topic_prefix), inventory(cfg) {}

    // ---- events ----------------------------------------------------------------------------
    void push(Event e) {
        {
            std::lock_guard lock(mu);
            events.push_back(std::move(e));
        }
        cv.notify_one();
    }
    std::optional<Event> pop(std::chrono::milliseconds wait) {
        std::unique_lock lock(mu);
        cv.wait_for(lock, wait, [&] { return !events.empty(); });
        if (events.empty()) return std::nullopt;
        auto e = std::move(events.front());
        events.pop_front();
        return e;
    }

    // ---- reporting ---------------------------------------------------------------------------
    std::string status_payload(const std::string& component, const std::string& version, const std::string& rollout,
                               const std::string& stage, std::optional<int> progress, const std::optional<Error>& error) {
        nlohmann::ordered_json j;
        j["device"] = cfg.device_id;
        j["component"] = component;
        j["version"] = version;
        j["rollout"] = rollout;
        j["stage"] = stage;
        if (progress) j["progress"] = *progress;
        if (error) j["error"] = {{"code", std::string(to_string(error->code))}, {"message", error->message}};
        auto seq = store->next_seq();
        if (!seq) log.error("cannot advance the status sequence", {{"error", seq.error().message}});
        j["seq"] = seq ? *seq : 0;
        j["ts"] = format_utc(now_utc());
        return j.dump();
    }
    void report(const std::string& component, const std::string& version, const std::string& rollout,
                const std::string& stage, std::optional<int> progress = std::nullopt,
                const std::optional<Error>& error = std::nullopt) {
        const auto payload = status_payload(component, version, rollout, stage, progress, error);
        if (auto q = store->enqueue(topics.status(cfg.device_id, component), payload, true); !q)
            log.error("cannot queue a status report", {{"error", q.error().message}});
        statuses[component] = payload;
        log.info("status", {{"component", component}, {"version", version}, {"stage", stage},
                            {"error", error ? std::string(to_string(error->code)) : ""}});
        flush();
    }
    // Send queued reports in order while connected; each leaves the outbox once acknowledged.
    void flush() {
        if (!client || !client->connected()) return;
        for (int round = 0; round < 100; ++round) {
            auto items = store->pending(50);
            if (!items || items->empty()) return;
            for (const auto& item : *items) {
                if (auto p = client->publish(item.topic, item.payload, 1, item.retain, 5s); !p) {
                    log.warn("report not acknowledged; kept in the outbox", {{"error", p.error().message}});
                    return;
                }
                if (auto r = store->remove(item.id); !r) return;
            }
        }
    }
    // The installed versions per component (cached by Inventory; cheap to call often).
    nlohmann::ordered_json installed_versions() {
        auto comps = nlohmann::ordered_json::object();
        for (const auto& [name, _] : cfg.components) {
            auto v = inventory.version(name, recorded_version(name));
            comps[name] = v ? json(*v) : json(nullptr);
        }
        return comps;
    }
    void publish_inventory() {
        if (!client || !client->connected()) return;
        nlohmann::ordered_json j;
        j["device"] = cfg.device_id;
        j["agent_version"] = build::version;
        j["platform"] = cfg.platform;
        j["labels"] = cfg.labels;
        j["components"] = installed_versions();
        j["ts"] = format_utc(now_utc());
        if (auto p = client->publish(topics.inventory(cfg.device_id), j.dump(), 1, true, 5s); !p) {
            log.warn("inventory not published", {{"error", p.error().message}});
            return;
        }
        last_inventory = std::chrono::steady_clock::now();
        published_versions = j["components"].dump();
    }
    // Publish the inventory when the installed versions changed (e.g. a file dropped into a
    // watched directory by hand), checked every few seconds, and every inventory_interval anyway.
    void inventory_tick(std::chrono::steady_clock::time_point now) {
        if (now - last_inventory > cfg.inventory_interval) return publish_inventory();
        if (now - last_inventory_check < 5s) return;
        last_inventory_check = now;
        if (installed_versions().dump() != published_versions) publish_inventory();
    }
    std::optional<std::string> recorded_version(const std::string& component) {
        auto v = store->get("installed/" + component);
        return v ? *v : std::nullopt;
    }

    // ---- deciding about an offered release ---------------------------------------------------
    void reject(const std::string& component, const std::string& version, const std::string& rollout,
                const std::string& payload, const Error& error) {
        // One report per distinct offer: QoS 1 duplicates and retained re-deliveries stay quiet.
        const auto key = "rejected/" + component;
        const auto digest = crypto::sha256_hex(payload);
        auto seen = store->get(key);
        if (seen && *seen == digest) return;
        (void)store->put(key, digest);
        log.warn("release rejected", {{"component", component}, {"version", version}, {"error", error.describe()}});
        report(component, version, rollout, "rejected", std::nullopt, error);
    }

    void on_wave(const std::string& component, const std::string& payload) {
        offers[component] = payload;
        evaluate(component, payload);
    }

    // `forced`: an operator asked for this one device (cmd install): no auto-update or window check.
    void evaluate(const std::string& component, const std::string& payload, bool forced = false) {
        auto msg = parse_json(payload, "wave message for " + component);
        if (!msg) return reject(component, "", "", payload, msg.error());
        ObjectReader r(*msg, "wave", ErrorCode::manifest_invalid);
        const auto rollout = r.str("rollout");
        const auto state = r.str("state");
        const auto* release = r.raw("release");
        if (r.ok() && !release) r.fail("release", "missing");
        if (!r.ok()) return reject(component, "", rollout, payload, *r.error());
        if (state != "open") {
            log.info("wave not open; nothing started", {{"component", component}, {"rollout", rollout}, {"state", state}});
            return;
        }
        const auto envelope = release->is_string() ? release->get<std::string>() : release->dump();
        auto verified = open_envelope(envelope, trusted, now_utc(), "release for " + component);
        if (!verified) return reject(component, "", rollout, payload, verified.error());
        const auto& m = verified->manifest;
        if (m.component != component)
            return reject(component, m.version, rollout, payload,
                          {ErrorCode::manifest_invalid, "the wave topic is for " + component + " but the manifest is for " + m.component});
        const auto settings = cfg.components.find(component);
        if (settings == cfg.components.end()) {
            log.debug("release for a component this device does not manage", {{"component", component}});
            return;
        }
        if (auto j = store->journal(component); j && *j) {
            log.info("an update of this component is in progress; the offer waits", {{"component", component}});
            return;
        }
        if (!m.compatibility.platforms.empty() &&
            std::find(m.compatibility.platforms.begin(), m.compatibility.platforms.end(), cfg.platform) ==
                m.compatibility.platforms.end())
            return reject(component, m.version, rollout, payload,
                          {ErrorCode::platform_incompatible, "this device is " + cfg.platform + "; the release is for " +
                                                                 json(m.compatibility.platforms).dump()});
        if (!m.compatibility.min_agent_version.empty()) {
            auto need = Version::parse(m.compatibility.min_agent_version, VersionScheme::semver);
            auto have = Version::parse(build::version, VersionScheme::semver);
            if (need && have && *is_newer(*need, *have))
                return reject(component, m.version, rollout, payload,
                              {ErrorCode::agent_too_old, "the release needs agent " + m.compatibility.min_agent_version +
                                                             ", this is " + build::version});
        }
        auto done = store->applied(component, m.version, m.artifact.sha256);
        if (done && *done) return;  // applied (or failed) once already: never again by itself
        if (auto installed = inventory.version(component, recorded_version(component)); installed) {
            auto offered = m.parsed_version();
            auto current = Version::parse(*installed, m.version_scheme);
            if (!current)
                return reject(component, m.version, rollout, payload,
                              {ErrorCode::version_incomparable, "installed version '" + *installed + "' is not a " +
                                                                    std::string(to_string(m.version_scheme)) + " version"});
            auto cmp = offered->compare(*current);
            if (!cmp) return reject(component, m.version, rollout, payload, cmp.error());
            if (*cmp == std::strong_ordering::equal) return;  // already at this version
            if (*cmp == std::strong_ordering::less && !m.rollback)
                return reject(component, m.version, rollout, payload,
                              {ErrorCode::version_not_newer, "offered " + m.version + " is older than installed " + *installed});
        }
        if (!cfg.auto_update && !opts.force_update && !forced) {
            log.info("update available; auto-update is off", {{"component", component}, {"version", m.version}});
            return;
        }
        if (cfg.update_window && !opts.force_update && !forced && !cfg.update_window->contains(std::chrono::system_clock::now())) {
            log.info("update available; waiting for the update window", {{"component", component}, {"version", m.version}});
            waiting_for_window = true;
            return;
        }
        if (m.install.type == InstallType::self && !events_empty()) {
            deferred_self = component;  // the agent's own update goes last
            return;
        }
        start_update(component, rollout, envelope);
    }

    bool events_empty() {
        std::lock_guard lock(mu);
        return events.empty();
    }

    void start_update(const std::string& component, const std::string& rollout, const std::string& envelope) {
        json j;
        j["component"] = component;
        j["rollout"] = rollout;
        j["envelope"] = envelope;
        j["accepted_at"] = format_utc(now_utc());
        if (auto prev = inventory.version(component, recorded_version(component))) j["previous_version"] = *prev;
        j["stage"] = kDownloading;
        j["entries"] = json::object();
        if (auto w = store->put_journal(component, j); !w) {
            log.error("cannot write the journal; update not started", {{"error", w.error().message}});
            return;
        }
        run_update(component);
    }

    // ---- running an update through its journal ----------------------------------------------
    void run_update(const std::string& component) {
        for (int step = 0; step < 32; ++step) {
            auto jr = store->journal(component);
            if (!jr || !*jr) return;
            json j = **jr;
            const std::string stage = j.value("stage", "");
            const int entries = j["entries"].value(stage, 0) + 1;
            j["entries"][stage] = entries;
            if (auto w = store->put_journal(component, j); !w) {
                log.error("cannot write the journal", {{"error", w.error().message}});
                return;
            }
            const auto envelope = j.value("envelope", "");
            const auto accepted = parse_utc(j.value("accepted_at", ""));
            auto verified = open_envelope(envelope, trusted, accepted ? *accepted : now_utc(), "journal of " + component);
            if (!verified) {
                log.error("journal entry unreadable; dropped", {{"component", component}, {"error", verified.error().message}});
                (void)store->clear_journal(component);
                return;
            }
            Manifest m = verified->manifest;
            const auto rollout = j.value("rollout", "");
            if (stage == kRollingBack) {
                fault_point("before:" + stage);
                finish_rollback(component, m, rollout, j);
                return;
            }
            if (entries > cfg.max_step_restarts + 1) {
                to_rollback(j, stage == kDownloading || stage == kVerifying || stage == kPreparing ? "failed" : "rolled_back",
                            {ErrorCode::crash_loop, "the agent restarted " + std::to_string(entries - 1) + " times in step " +
                                                        stage + "; giving up"});
                continue;
            }
            fault_point("before:" + stage);
            const bool more = step_once(component, m, rollout, stage, j);
            fault_point("after:" + stage);
            if (!more) return;
        }
    }

    // Move the journal to rolling_back, keeping why and which final stage to report.
    void to_rollback(json& j, const std::string& final_stage, const Error& error) {
        j["stage"] = kRollingBack;
        j["final"] = final_stage;
        j["error"] = {{"code", std::string(to_string(error.code))}, {"message", error.message}};
        (void)store->put_journal(j.value("component", ""), j);
    }
    void advance(json& j, const char* next) {
        j["stage"] = next;
        (void)store->put_journal(j.value("component", ""), j);
    }

    fs::path staging_dir(const std::string& component) const { return cfg.state_dir / "staging" / component; }
    fs::path staged_artifact(const std::string& component, const Manifest& m) const {
        return staging_dir(component) / artifact_name(m.artifact.url);
    }
    // The manifest as this device applies it: the agent's own binary for `self`, and every
    // target under install_root when one is configured.
    Manifest install_manifest(Manifest m) const {
        if (m.install.type == InstallType::self && m.install.target.empty())
            m.install.target = cfg.binary_path.empty() ? fs::read_symlink("/proc/self/exe").string() : cfg.binary_path.string();
        else if (!cfg.install_root.empty() && !m.install.target.empty())
            m.install.target = (cfg.install_root / fs::path(m.install.target).relative_path()).string();
        return m;
    }

    // One step; false when the update is over (or must stop, e.g. to restart the agent).
    bool step_once(const std::string& component, const Manifest& m0, const std::string& rollout, const std::string& stage,
                   json& j) {
        const Manifest m = install_manifest(m0);
        const auto& settings = cfg.components.at(component);
        const auto artifact = staged_artifact(component, m);
        InstallRequest request{m, artifact, staging_dir(component) / "work", settings.install};
        std::error_code ec;
        fs::create_directories(request.work_dir, ec);

        if (stage == kDownloading) {
            report(component, m.version, rollout, "downloading", 0);
            download::Request d;
            d.url = m.artifact.url;
            d.dest = artifact;
            d.expected_size = m.artifact.size;
            d.expected_sha256 = m.artifact.sha256;
            d.cafile = cfg.download_cafile;
            d.low_speed_limit = cfg.low_speed_limit;
            d.low_speed_time = cfg.low_speed_time;
            d.deadline = cfg.download_deadline;
            d.max_attempts = cfg.download_attempts;
            d.on_progress = [&](const download::Progress& p) {
                if (p.percent > 0 && p.percent < 100) report(component, m.version, rollout, "downloading", p.percent);
            };
            d.cancelled = [] { return g_stop.load(); };
            auto r = download::fetch(d);
            if (!r) {
                if (g_stop) return false;  // stopping: the partial download is resumed next start
                to_rollback(j, "failed", r.error());
                return true;
            }
            log.info("downloaded", {{"component", component}, {"bytes", std::to_string(r->bytes_transferred)},
                                    {"resumed_from", std::to_string(r->resumed_from)}});
            advance(j, kVerifying);
            return true;
        }
        if (stage == kVerifying) {
            report(component, m.version, rollout, "verifying");
            auto d = crypto::sha256_file(artifact);
            if (!d) {
                to_rollback(j, "failed", d.error());
            } else if (d->size != m.artifact.size) {
                to_rollback(j, "failed", {ErrorCode::size_mismatch, artifact.string() + ": " + std::to_string(d->size) +
                                                                        " bytes, the manifest says " + std::to_string(m.artifact.size)});
            } else if (d->sha256 != m.artifact.sha256) {
                to_rollback(j, "failed", {ErrorCode::hash_mismatch, artifact.string() + ": sha256 " + d->sha256 +
                                                                        ", the manifest says " + m.artifact.sha256});
            } else {
                advance(j, kPreparing);
            }
            return true;
        }
        auto installer = make_installer(m.install.type);
        if (stage == kPreparing) {
            report(component, m.version, rollout, "installing");
            auto rec = installer->prepare(request);
            if (!rec) {
                to_rollback(j, "failed", rec.error());
                return true;
            }
            j["record"] = *rec;
            advance(j, kActivating);
            return true;
        }
        if (stage == kActivating) {
            // The guard first: once the new agent binary is in place, only the launcher can bring
            // the old one back if the new one cannot start.
            if (m.install.type == InstallType::self) {
                if (auto g = write_self_update_guard(m.install.target); !g) {
                    to_rollback(j, "failed", g.error());
                    return true;
                }
            }
            auto a = installer->activate(request, j.value("record", json::object()));
            if (!a) {
                to_rollback(j, "failed", a.error());
                return true;
            }
            if (m.install.type == InstallType::self) {
                advance(j, kSelfRestarting);
                log.info("self-update activated; restarting into the new binary", {{"version", m.version}});
                restart_requested = true;
                return false;
            }
            advance(j, kHealthChecking);
            return true;
        }
        if (stage == kSelfRestarting) {
            // Running again after the self-update: are we the new binary?
            if (m.version != build::version) {
                to_rollback(j, "rolled_back", {ErrorCode::health_check_failed,
                                               std::string("after the self-update the running agent is ") + build::version +
                                                   ", not " + m.version});
                return true;
            }
            advance(j, kHealthChecking);
            return true;
        }
        if (stage == kHealthChecking) {
            report(component, m.version, rollout, "health_checking");
            if (settings.health) {
                auto check = *settings.health;
                check.env.emplace_back("OTA_COMPONENT", component);
                check.env.emplace_back("OTA_VERSION", m.version);
                if (auto h = run_health_check(check); !h) {
                    to_rollback(j, "rolled_back", h.error());
                    return true;
                }
            }
            advance(j, kCommitting);
            return true;
        }
        if (stage == kCommitting) {
            if (auto c = installer->commit(request, j.value("record", json::object())); !c)
                log.warn("commit clean-up failed; the new version stays", {{"error", c.error().message}});
            keep_for_operator_rollback(component, j);
            const auto payload = status_payload(component, m.version, rollout, "succeeded", std::nullopt, std::nullopt);
            if (auto done = store->complete(component, {0, topics.status(cfg.device_id, component), payload, true}, m.version,
                                            m.artifact.sha256, "succeeded", m.version);
                !done) {
                log.error("cannot record the finished update", {{"error", done.error().message}});
                return false;
            }
            statuses[component] = payload;
            if (m.install.type == InstallType::self) clear_self_update_guard();
            log.info("update succeeded", {{"component", component}, {"version", m.version}});
            cleanup_staging(component);
            inventory.invalidate();
            flush();
            publish_inventory();
            return false;
        }
        log.error("unknown journal stage; rolling back", {{"component", component}, {"stage", stage}});
        to_rollback(j, "failed", {ErrorCode::internal, "unknown journal stage '" + stage + "'"});
        return true;
    }

    // What an operator's "rollback" needs later (from the journal of a finished install): the
    // release, the installer's record, the version before it.
    void keep_for_operator_rollback(const std::string& component, const json& j) {
        json last{{"envelope", j.value("envelope", "")}, {"rollout", j.value("rollout", "")},
                  {"accepted_at", j.value("accepted_at", "")}, {"record", j.value("record", json::object())}};
        if (j.contains("previous_version")) last["previous_version"] = j["previous_version"];
        (void)store->put("last_install/" + component, last.dump());
    }

    void finish_rollback(const std::string& component, const Manifest& m0, const std::string& rollout, const json& j) {
        const Manifest m = install_manifest(m0);
        const auto& settings = cfg.components.at(component);
        InstallRequest request{m, staged_artifact(component, m), staging_dir(component) / "work", settings.install};
        // Also without a record (prepare interrupted before its record was journalled): rollback
        // then removes what prepare may have left (hidden temp files, .partial dirs, <bin>.new).
        // An operator's rollback undoes a committed install: the installer's revert.
        const bool by_operator = j.value("operator", false);
        const auto installer = make_installer(m.install.type);
        const auto record = j.value("record", json::object());
        auto undone = by_operator ? installer->revert(request, record) : installer->rollback(request, record);
        if (!undone) log.error("rollback failed", {{"component", component}, {"error", undone.error().message}});
        auto final_stage = j.value("final", "failed");
        const auto& e = j.contains("error") ? j["error"] : json::object();
        Error error{ErrorCode::internal, e.value("message", "")};
        for (int c = 0; c <= static_cast<int>(ErrorCode::internal); ++c)
            if (to_string(static_cast<ErrorCode>(c)) == e.value("code", "")) error.code = static_cast<ErrorCode>(c);
        // An operator's rollback that could not be carried out leaves the new version installed.
        if (by_operator && !undone) {
            final_stage = "failed";
            error = undone.error().with_context("the rollback an operator asked for failed");
            keep_for_operator_rollback(component, j);  // it may be asked for again
        }
        const auto payload = status_payload(component, m.version, rollout, final_stage, std::nullopt, error);
        // An operator's rollback undoes a finished install: the version before it is current again.
        std::optional<std::string> installed;
        if (by_operator && undone && j.contains("previous_version")) installed = j["previous_version"].get<std::string>();
        if (auto done = store->complete(component, {0, topics.status(cfg.device_id, component), payload, true}, m.version,
                                        m.artifact.sha256, final_stage, installed);
            !done) {
            log.error("cannot record the finished rollback", {{"error", done.error().message}});
            return;
        }
        statuses[component] = payload;
        if (m.install.type == InstallType::self) clear_self_update_guard();
        log.warn("update ended", {{"component", component}, {"version", m.version}, {"stage", final_stage},
                                  {"error", error.describe()}});
        cleanup_staging(component);
        inventory.invalidate();
        flush();
        publish_inventory();
    }

    // The self-update guard read by device-agent/ota-agent-launch (shell "KEY=value" lines):
    // the binary to restore from <BIN>.old, the deadline (epoch seconds) and the start budget.
    // The launcher appends a line to self-update.starts at each start while the guard exists.
    fs::path guard_file() const { return cfg.state_dir / "self-update.env"; }
    Expected<void> write_self_update_guard(const std::string& bin) {
        const auto deadline = std::chrono::duration_cast<std::chrono::seconds>(
                                  (std::chrono::system_clock::now() + cfg.self_update_deadline).time_since_epoch())
                                  .count();
        std::error_code ec;
        fs::remove(cfg.state_dir / "self-update.starts", ec);
        return write_file_atomic(guard_file(), "BIN=" + bin + "\nDEADLINE=" + std::to_string(deadline) +
                                                   "\nMAX_STARTS=" + std::to_string(cfg.self_update_max_starts) + "\n");
    }
    void clear_self_update_guard() {
        std::error_code ec;
        fs::remove(guard_file(), ec);
        fs::remove(cfg.state_dir / "self-update.starts", ec);
        (void)fsync_dir(cfg.state_dir);
    }

    void cleanup_staging(const std::string& component) {
        std::error_code ec;
        fs::remove_all(staging_dir(component), ec);
    }

    // ---- MQTT --------------------------------------------------------------------------------
    void on_assignment(const std::string& payload) {
        auto j = parse_json(payload, "assignment");
        if (!j || !j->is_object() || !(*j)["fleet"].is_string() || !(*j)["wave"].is_string() ||
            !is_valid_segment((*j)["fleet"].get<std::string>()) || !is_valid_segment((*j)["wave"].get<std::string>())) {
            log.warn("assignment ignored: expected {\"fleet\": ..., \"wave\": ...}", {{"payload", payload.substr(0, 200)}});
            return;
        }
        assignment_seen = true;
        const auto filter = topics.waves_filter((*j)["fleet"].get<std::string>(), (*j)["wave"].get<std::string>());
        if (filter == wave_filter) return;
        if (!wave_filter.empty()) (void)client->unsubscribe(wave_filter);
        wave_filter = filter;
        (void)store->put("assignment", payload);
        log.info("following wave", {{"filter", filter}});
        if (auto s = client->subscribe(filter, 1); !s) log.warn("wave subscription failed", {{"error", s.error().message}});
    }

    void on_cmd(const std::string& payload) {
        auto j = parse_json(payload, "cmd");
        if (!j || !j->is_object() || !(*j)["cmd"].is_string()) {
            log.warn("cmd ignored: expected {\"cmd\": ...}", {{"payload", payload.substr(0, 200)}});
            return;
        }
        const auto cmd = (*j)["cmd"].get<std::string>();
        const auto component = j->value("component", "");
        log.info("cmd", {{"cmd", cmd}, {"component", component}});
        if (cmd == "check") {
            for (const auto& [c, p] : std::map(offers)) evaluate(c, p);
        } else if (cmd == "report") {
            publish_inventory();
            for (const auto& [c, p] : statuses) (void)store->enqueue(topics.status(cfg.device_id, c), p, true);
            flush();
        } else if (cmd == "rollback" && !component.empty()) {
            operator_rollback(component);
        } else if (cmd == "install" && !component.empty() && j->contains("release")) {
            // `ota-ctl update <device> <component>`: the release in the cmd, checked exactly like
            // one offered by an open wave (signature, expiry, platform, newer version).
            const json offer{{"rollout", j->value("rollout", "")}, {"state", "open"}, {"release", (*j)["release"]}};
            evaluate(component, offer.dump(), true);
        } else if (cmd == "retry" && !component.empty()) {
            (void)store->forget_applied(component);
            (void)store->put("rejected/" + component, "");
            if (offers.contains(component)) evaluate(component, offers[component]);
        } else {
            log.warn("unknown cmd ignored", {{"cmd", cmd}});
        }
    }

    // Roll back the last finished install of `component` (cmd "rollback"): the installer's
    // rollback with the record kept at commit, journalled like any other rollback.
    void operator_rollback(const std::string& component) {
        if (!cfg.components.contains(component)) return;
        if (auto j = store->journal(component); j && *j) {
            log.warn("rollback refused: an update is in progress", {{"component", component}});
            return;
        }
        auto last = store->get("last_install/" + component);
        if (!last || !*last || (*last)->empty()) {
            log.warn("rollback refused: no finished install to roll back", {{"component", component}});
            return;
        }
        auto l = json::parse(**last, nullptr, false);
        if (l.is_discarded()) return;
        json j{{"component", component}, {"rollout", l.value("rollout", "")}, {"envelope", l.value("envelope", "")},
               {"accepted_at", l.value("accepted_at", "")}, {"record", l.value("record", json::object())},
               {"stage", kRollingBack}, {"final", "rolled_back"}, {"operator", true}, {"entries", json::object()},
               {"error", {{"code", "rollback_requested"}, {"message", "an operator asked to roll back"}}}};
        if (l.contains("previous_version")) j["previous_version"] = l["previous_version"];
        if (auto w = store->put_journal(component, j); !w) return;
        (void)store->put("last_install/" + component, "");
        run_update(component);
    }

    void handle(const Event& e) {
        if (e.kind == Event::Kind::connected) {
            log.info("connected", {{"broker", cfg.broker}});
            if (!connected_once) {
                // A resumed session does not resend retained messages of existing subscriptions;
                // subscribing again once per start asks for the current assignment and offers.
                connected_once = true;
                (void)client->subscribe(topics.assignment(cfg.device_id), 1);
                if (!wave_filter.empty()) (void)client->subscribe(wave_filter, 1);
            }
            nlohmann::ordered_json online{{"online", true}, {"agent_version", build::version}, {"ts", format_utc(now_utc())}};
            (void)client->publish(topics.online(cfg.device_id), online.dump(), 1, true, 5s);
            publish_inventory();
            flush();
            return;
        }
        if (e.kind == Event::Kind::lost) {
            log.warn("connection lost; reconnecting", {{"broker", cfg.broker}});
            return;
        }
        const auto parsed = topics.parse(e.message.topic);
        if (!parsed) return;
        if (parsed->kind == Topics::Kind::assignment && parsed->a == cfg.device_id) return on_assignment(e.message.payload);
        if (parsed->kind == Topics::Kind::cmd && parsed->a == cfg.device_id) return on_cmd(e.message.payload);
        if (parsed->kind == Topics::Kind::wave) return on_wave(parsed->c, e.message.payload);
    }

    Expected<void> setup() {
        std::error_code ec;
        fs::create_directories(cfg.state_dir, ec);
        if (ec) return fail(ErrorCode::io_error, "state_dir " + cfg.state_dir.string() + ": " + ec.message());
        auto s = Store::open(cfg.state_dir / "agent.db");
        if (!s) return std::unexpected(s.error());
        store = std::move(*s);
        if (auto t = trusted.load(cfg.trusted_keys); !t) return std::unexpected(t.error().with_context("trusted_keys"));
        mqtt::Options o;
        o.broker = cfg.broker;
        o.client_id = cfg.device_id;
        o.cafile = cfg.cafile;
        o.certfile = cfg.certfile;
        o.keyfile = cfg.keyfile;
        o.keepalive = cfg.keepalive;
        o.session_expiry = cfg.session_expiry;
        o.will = mqtt::Will{topics.online(cfg.device_id), R"({"online":false})", 1, true};
        client = std::make_unique<mqtt::Client>(o);
        client->on_message([this](const mqtt::Message& m) { push({Event::Kind::message, m}); });
        client->on_connection([this](bool up) { push({up ? Event::Kind::connected : Event::Kind::lost, {}}); });
        // Subscriptions are remembered before the first connect and made on every connect.
        (void)client->subscribe(topics.assignment(cfg.device_id), 1);
        (void)client->subscribe(topics.cmd(cfg.device_id), 1);
        // Follow the last known wave from the start; the retained assignment may change it.
        if (auto a = store->get("assignment"); a && *a) on_assignment(**a);
        return {};
    }

    // Connect with capped, jittered backoff until connected or stopping.
    bool connect_loop(std::chrono::steady_clock::time_point give_up) {
        std::mt19937 rng{std::random_device{}()};
        auto delay = 500ms;
        for (int attempt = 0; !g_stop && std::chrono::steady_clock::now() < give_up; ++attempt) {
            auto c = client->connect();
            if (c) return true;
            log.warn("cannot connect; retrying", {{"error", c.error().message}});
            std::uniform_int_distribution<long> jitter(100, std::max<long>(100, delay.count()));
            const auto wait = std::chrono::milliseconds(jitter(rng));
            for (auto until = std::chrono::steady_clock::now() + wait; std::chrono::steady_clock::now() < until && !g_stop;)
                std::this_thread::sleep_for(50ms);
            delay = std::min<std::chrono::milliseconds>(delay * 2, 30s);
        }
        return false;
    }

    int run(const RunOptions& o) {
        opts = o;
        if (auto s = setup(); !s) {
            log.error("cannot start", {{"error", s.error().describe()}});
            return 1;
        }
        log.info("starting", {{"device", cfg.device_id}, {"version", build::version}, {"platform", cfg.platform}});
        // Finish or roll back what a crash interrupted; downloads resume from their partial file.
        if (auto pending = store->journal_components(); pending) {
            for (const auto& c : *pending) {
                if (!cfg.components.contains(c)) continue;
                log.info("resuming interrupted update", {{"component", c}});
                run_update(c);
                if (restart_requested) return exit_restart;
            }
        }
        const auto start = std::chrono::steady_clock::now();
        const auto give_up = o.once ? start + o.once_wait : std::chrono::steady_clock::time_point::max();
        if (!connect_loop(give_up)) {
            if (g_stop) return 0;
            log.error("could not connect within the --once wait", {{"broker", cfg.broker}});
            return 1;
        }
        auto idle_since = std::chrono::steady_clock::now();
        while (!g_stop) {
            auto e = pop(200ms);
            const auto now = std::chrono::steady_clock::now();
            if (e) {
                handle(*e);
                idle_since = now;
            } else if (deferred_self) {
                const auto c = *deferred_self;
                deferred_self.reset();
                if (offers.contains(c)) evaluate(c, offers[c]);
            }
            if (restart_requested) break;
            inventory_tick(now);
            if (waiting_for_window && now - last_window_check > 60s) {
                last_window_check = now;
                waiting_for_window = false;
                for (const auto& [c, p] : std::map(offers)) evaluate(c, p);
            }
            if (o.once && !e && !deferred_self &&
                ((assignment_seen && now - idle_since > 1500ms) || now - start > o.once_wait))
                break;
        }
        flush();
        (void)client->disconnect(3s);
        return restart_requested ? exit_restart : 0;
    }
};

Agent::Agent(AgentConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Agent::~Agent() = default;
int Agent::run(const RunOptions& options) { return impl_->run(options); }

}  // namespace ota::agent
