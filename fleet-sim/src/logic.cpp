#include "logic.hpp"

#include <algorithm>

#include "ota/json.hpp"
#include "ota/time.hpp"
#include "ota/version.hpp"

namespace ota::fleetsim {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

// FNV-1a then a splitmix64 finaliser: a stable, well-spread 64-bit hash.
std::uint64_t stable_hash(std::string_view text, std::uint64_t h = 1469598103934665603ULL) {
    for (const char c : text) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ULL;
    }
    h += 0x9e3779b97f4a7c15ULL;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

std::string error_code_name(const Error& e) { return std::string(to_string(e.code)); }

ErrorCode code_of(std::string_view name) {
    for (int i = 0; i <= static_cast<int>(ErrorCode::internal); ++i)
        if (to_string(static_cast<ErrorCode>(i)) == name) return static_cast<ErrorCode>(i);
    return ErrorCode::internal;
}

}  // namespace

const std::string& now_ts() {
    static std::string text;
    static Timestamp at{};
    const auto now = now_utc();
    if (now != at || text.empty()) {
        at = now;
        text = format_utc(now);
    }
    return text;
}

bool fails_before_switch(std::string_view code) {
    static const std::set<std::string_view> before{"download_failed", "download_stalled", "hash_mismatch", "size_mismatch",
                                                   "disk_full", "decrypt_failed", "install_failed", "archive_unsafe"};
    return before.contains(code);
}

bool is_final_stage(std::string_view stage) {
    return stage == "succeeded" || stage == "failed" || stage == "rolled_back" || stage == "rejected";
}

Logic::Logic(const SimOptions& options, crypto::TrustStore trusted, Io& io)
    : o_(options), trusted_(std::move(trusted)), io_(io), topics_(options.topic_prefix),
      downloads_left_(options.download_sample),
      // Default: microseconds since the epoch, so a restarted simulator continues above the seq
      // the controller has seen (it keeps the last seq per device and component).
      seq_base_(options.seq_start.value_or(std::chrono::duration_cast<std::chrono::microseconds>(
                                               std::chrono::system_clock::now().time_since_epoch())
                                               .count())) {}

double Logic::unit(const std::string& a, const std::string& b, std::string_view salt) const {
    const auto h = stable_hash(std::to_string(o_.seed) + "\n" + a + "\n" + b + "\n" + std::string(salt));
    return static_cast<double>(h >> 11) / 9007199254740992.0;  // 53 bits -> [0, 1)
}

Device Logic::make_device(int index) const {
    Device d;
    d.index = static_cast<std::uint32_t>(index);
    d.id = o_.device_id(index);
    d.labels = o_.labels;
    if (o_.early_fraction > 0 && unit(d.id, "", "early") < o_.early_fraction) d.labels[o_.early_label.first] = o_.early_label.second;
    for (const auto& [name, version] : o_.components) {
        auto& c = d.components[name];
        if (!version.empty()) c.installed = version;
    }
    d.seq = seq_base_;
    d.silent = o_.silent_devices.contains(d.id) || (o_.silent_rate > 0 && unit(d.id, "", "silent") < o_.silent_rate);
    return d;
}

Outcome Logic::outcome(const Device& d, const std::string& rollout, const std::string& version) const {
    if (d.silent) return Outcome::silent;
    if (!o_.fail_versions.empty() && !o_.fail_versions.contains(version)) return Outcome::succeed;
    if (o_.fail_devices.contains(d.id)) return Outcome::fail;
    if (o_.fail_rate > 0 && unit(d.id, rollout, "fail") < o_.fail_rate) return Outcome::fail;
    // --fail-versions alone: every device fails those versions.
    if (!o_.fail_versions.empty() && o_.fail_devices.empty() && o_.fail_rate == 0) return Outcome::fail;
    return Outcome::succeed;
}

// The reports of one update, as the agent sends them (docs/agent.md, "Status reports"):
// downloading where it starts and --progress-steps - 1 more progress reports (a download that
// lasts; never 100 %), verifying, installing, health_checking only with --health-check (or when
// the failure is the health check's), the final stage.
std::vector<Step> Logic::plan(Outcome outcome) const {
    std::vector<Step> steps;
    for (int k = 0; k < o_.progress_steps; ++k) steps.push_back({"downloading", k * 100 / o_.progress_steps, {}});
    if (outcome == Outcome::silent) {
        steps.resize(1);
        return steps;
    }
    const Error failure{code_of(o_.fail_code), "simulated " + o_.fail_code};
    const bool early = fails_before_switch(o_.fail_code);
    steps.push_back({"verifying", {}, {}});
    if (outcome == Outcome::fail && early && o_.fail_code != "install_failed" && o_.fail_code != "archive_unsafe") {
        steps.push_back({"failed", {}, failure});
        return steps;
    }
    steps.push_back({"installing", {}, {}});
    if (outcome == Outcome::fail && early) {
        steps.push_back({"failed", {}, failure});
        return steps;
    }
    if (o_.health_check || (outcome == Outcome::fail && o_.fail_code == "health_check_failed"))
        steps.push_back({"health_checking", {}, {}});
    if (outcome == Outcome::fail) steps.push_back({"rolled_back", {}, failure});
    else steps.push_back({"succeeded", {}, {}});
    return steps;
}

std::string Logic::online_payload() const {
    return ojson{{"online", true}, {"agent_version", o_.agent_version}, {"ts", now_ts()}}.dump();
}

std::string Logic::inventory_payload(const Device& d) const {
    ojson comps = ojson::object();
    for (const auto& [name, c] : d.components) comps[name] = c.installed ? ojson(*c.installed) : ojson(nullptr);
    return ojson{{"device", d.id},  {"agent_version", o_.agent_version}, {"platform", o_.platform},
                 {"labels", d.labels}, {"components", comps},              {"ts", now_ts()}}
        .dump();
}

void Logic::on_connected(Device& d) {
    io_.publish(d, topics_.online(d.id), online_payload(), true);
    io_.publish(d, topics_.inventory(d.id), inventory_payload(d), true);
    io_.subscribe(d, topics_.assignment(d.id));
    io_.subscribe(d, topics_.cmd(d.id));
    if (!d.wave_filter.empty()) io_.subscribe(d, d.wave_filter);
}

void Logic::on_message(Device& d, const std::string& topic, const std::string& payload) {
    const auto parsed = topics_.parse(topic);
    if (!parsed) return;
    switch (parsed->kind) {
        case Topics::Kind::assignment:
            if (parsed->a == d.id) on_assignment(d, payload);
            return;
        case Topics::Kind::cmd:
            if (parsed->a == d.id) on_cmd(d, payload);
            return;
        case Topics::Kind::wave: return on_wave(d, parsed->a, parsed->b, parsed->c, payload);
        default: return;
    }
}

void Logic::on_assignment(Device& d, const std::string& payload) {
    const auto j = json::parse(payload, nullptr, false);
    if (!j.is_object() || !j.contains("fleet") || !j.contains("wave") || !j["fleet"].is_string() || !j["wave"].is_string() ||
        !is_valid_segment(j["fleet"].get<std::string>()) || !is_valid_segment(j["wave"].get<std::string>()))
        return;
    d.fleet = j["fleet"].get<std::string>();
    d.wave = j["wave"].get<std::string>();
    io_.event(d, "assignment_received", {{"fleet", d.fleet}, {"wave", d.wave}});
    const auto filter = topics_.waves_filter(d.fleet, d.wave);
    if (filter == d.wave_filter) return;
    if (!d.wave_filter.empty()) io_.unsubscribe(d, d.wave_filter);
    d.wave_filter = filter;
    io_.subscribe(d, filter);
}

void Logic::on_wave(Device& d, const std::string& fleet, const std::string& wave, const std::string& component,
                    const std::string& payload) {
    if (fleet != d.fleet || wave != d.wave) return;  // a message of the wave just left, still in flight
    ++counters_.wave_messages;
    const auto j = json::parse(payload, nullptr, false);
    const bool shaped = j.is_object() && j.contains("state") && j["state"].is_string() && j.contains("rollout") &&
                        j["rollout"].is_string() && j.contains("release");
    const std::string state = shaped ? j["state"].get<std::string>() : "";
    const std::string rollout = shaped ? j["rollout"].get<std::string>() : "";
    io_.event(d, state == "open" ? "wave_open_received" : state == "halted" ? "halted_received" : "wave_received",
              {{"component", component}, {"rollout", rollout}, {"state", state}});
    auto it = d.components.find(component);
    if (it != d.components.end()) it->second.offer = payload;
    if (state == "halted") {
        ++counters_.wave_halted;
        if (!d.halted_seen) ++counters_.devices_halted;
        d.halted_seen = true;
    }
    if (!shaped) {
        return reject(d, component, "", rollout, payload,
                      {ErrorCode::manifest_invalid, "wave message: expected {\"rollout\", \"state\", \"release\"}"});
    }
    if (state != "open") return;  // halted (or paused): nothing starts; what runs goes on
    ++counters_.wave_open;
    evaluate(d, component, rollout, j["release"], payload);
}

void Logic::on_cmd(Device& d, const std::string& payload) {
    const auto j = json::parse(payload, nullptr, false);
    if (!j.is_object() || !j.contains("cmd") || !j["cmd"].is_string()) return;
    ++counters_.cmds;
    const auto cmd = j["cmd"].get<std::string>();
    const auto component = j.value("component", "");
    io_.event(d, "cmd_received", {{"cmd", cmd}, {"component", component}});
    auto it = d.components.find(component);
    if (it == d.components.end()) {
        if (cmd == "report") io_.publish(d, topics_.inventory(d.id), inventory_payload(d), true);
        return;
    }
    auto& c = it->second;
    if (cmd == "retry") {
        c.handled.clear();
        c.rejected.clear();
        if (c.job) return;  // in progress: the offer waits, as on the agent
        if (c.offer.empty()) return;
        const auto offer = json::parse(c.offer, nullptr, false);
        if (offer.is_object() && offer.value("state", "") == "open" && offer.contains("release"))
            evaluate(d, component, offer.value("rollout", ""), offer["release"], c.offer);
    } else if (cmd == "install") {
        if (!j.contains("release") || !j["rollout"].is_string())
            return reject(d, component, "", "", payload, {ErrorCode::manifest_invalid, "cmd install: release and rollout required"});
        evaluate(d, component, j["rollout"].get<std::string>(), j["release"], payload);
    }
}

Expected<VerifiedRelease> Logic::verify(const std::string& envelope) {
    ++counters_.verifications;
    if (o_.verify_each) return open_envelope(envelope, trusted_, now_utc(), "release");
    auto it = verified_.find(envelope);
    if (it == verified_.end()) {
        if (verified_.size() >= 64) verified_.clear();
        it = verified_.emplace(envelope, open_envelope(envelope, trusted_, now_utc(), "release")).first;
    }
    if (it->second && it->second->manifest.expires && *it->second->manifest.expires <= now_utc())
        return fail(ErrorCode::manifest_expired, "release: expired at " + format_utc(*it->second->manifest.expires));
    return it->second;
}

void Logic::reject(Device& d, const std::string& component, const std::string& version, const std::string& rollout,
                   const std::string& payload, const Error& error) {
    auto it = d.components.find(component);
    if (it == d.components.end()) return;  // not a component of this device: nothing to say
    const auto digest = crypto::sha256_hex(payload);
    if (it->second.rejected == digest) return;
    it->second.rejected = digest;
    ++counters_.rejected;
    report(d, component, version, rollout, Step{"rejected", {}, error});
}

void Logic::evaluate(Device& d, const std::string& component, const std::string& rollout, const json& release,
                     const std::string& payload) {
    const auto envelope = release.is_string() ? release.get<std::string>() : release.dump();
    auto verified = verify(envelope);
    if (!verified) return reject(d, component, "", rollout, payload, verified.error());
    const auto& m = verified->manifest;
    if (m.component != component)
        return reject(d, component, m.version, rollout, payload,
                      {ErrorCode::manifest_invalid, "the offer is for " + component + " but the manifest is for " + m.component});
    auto it = d.components.find(component);
    if (it == d.components.end()) return;  // a component this device does not have
    auto& c = it->second;
    if (c.job) return;  // an update of this component is in progress: the offer waits (c.offer)
    const auto& platforms = m.compatibility.platforms;
    if (!platforms.empty() && std::find(platforms.begin(), platforms.end(), o_.platform) == platforms.end())
        return reject(d, component, m.version, rollout, payload,
                      {ErrorCode::platform_incompatible, "this device is " + o_.platform});
    if (!m.compatibility.min_agent_version.empty()) {
        auto need = Version::parse(m.compatibility.min_agent_version, VersionScheme::semver);
        auto have = Version::parse(o_.agent_version, VersionScheme::semver);
        if (need && have && is_newer(*need, *have).value_or(false))
            return reject(d, component, m.version, rollout, payload,
                          {ErrorCode::agent_too_old, "the release needs agent " + m.compatibility.min_agent_version});
    }
    if (c.handled.contains(m.version + " " + m.artifact.sha256)) return;
    if (c.installed) {
        auto current = Version::parse(*c.installed, m.version_scheme);
        if (!current)
            return reject(d, component, m.version, rollout, payload,
                          {ErrorCode::version_incomparable, "installed version '" + *c.installed + "' is not a " +
                                                                std::string(to_string(m.version_scheme)) + " version"});
        auto cmp = m.parsed_version()->compare(*current);
        if (!cmp) return reject(d, component, m.version, rollout, payload, cmp.error());
        if (*cmp == std::strong_ordering::equal) return;
        if (*cmp == std::strong_ordering::less && !m.rollback)
            return reject(d, component, m.version, rollout, payload,
                          {ErrorCode::version_not_newer, "offered " + m.version + " is older than installed " + *c.installed});
    }
    c.handled.insert(m.version + " " + m.artifact.sha256);
    start(d, component, rollout, m);
}

void Logic::start(Device& d, const std::string& component, const std::string& rollout, const Manifest& m) {
    auto& c = d.components.at(component);
    Job job;
    job.rollout = rollout;
    job.version = m.version;
    job.url = m.artifact.url;
    job.sha256 = m.artifact.sha256;
    job.size = m.artifact.size;
    job.gen = ++d.gen;
    job.steps = plan(outcome(d, rollout, m.version));
    const auto total = o_.work_ms + static_cast<int>(unit(d.id, rollout, "jitter") * o_.jitter_ms);
    job.step_delay = std::chrono::milliseconds(total / static_cast<int>(std::max<std::size_t>(job.steps.size() - 1, 1)));
    if (downloads_left_ > 0 && !d.silent) {
        --downloads_left_;
        job.download = true;
    }
    c.job = std::move(job);
    ++counters_.jobs_started;
    step(d, component);
}

void Logic::step(Device& d, const std::string& component) {
    auto& c = d.components.at(component);
    auto& job = *c.job;
    const Step s = job.steps[job.next++];  // a copy: finish() ends the job
    report(d, component, job.version, job.rollout, s);
    if (is_final_stage(s.stage)) return finish(d, component, s);
    if (job.download && job.next == 1) {
        // A sample device: the real download replaces the simulated progress reports.
        ++counters_.downloads_started;
        while (job.next < job.steps.size() && job.steps[job.next].stage == "downloading") ++job.next;
        io_.start_download(d, component, job);
        return;
    }
    if (job.next < job.steps.size()) io_.schedule(d, job.step_delay, component, job.gen);
}

void Logic::on_timer(Device& d, const std::string& component, std::uint32_t gen) {
    auto it = d.components.find(component);
    if (it == d.components.end() || !it->second.job || it->second.job->gen != gen) return;
    step(d, component);
}

void Logic::on_download_done(Device& d, const std::string& component, std::uint32_t gen, const Expected<void>& result) {
    auto it = d.components.find(component);
    if (it == d.components.end() || !it->second.job || it->second.job->gen != gen) return;
    auto& job = *it->second.job;
    io_.event(d, "download_done", {{"component", component}, {"ok", result.has_value()},
                                   {"error", result ? "" : result.error().describe()}});
    if (!result) {
        ++counters_.downloads_failed;
        const Step failed{"failed", {}, result.error()};
        report(d, component, job.version, job.rollout, failed);
        return finish(d, component, failed);
    }
    ++counters_.downloads_ok;  // (no "downloading 100": verifying, next, says it is done)
    io_.schedule(d, job.step_delay, component, job.gen);
}

void Logic::finish(Device& d, const std::string& component, const Step& final_step) {
    auto& c = d.components.at(component);
    const auto version = c.job->version;
    c.job.reset();
    if (!d.final_seen) ++counters_.devices_final;
    d.final_seen = true;
    if (final_step.stage == "succeeded") {
        ++counters_.succeeded;
        c.installed = version;
        io_.publish(d, topics_.inventory(d.id), inventory_payload(d), true);
    } else if (final_step.stage == "failed") {
        ++counters_.failed;
    } else {
        ++counters_.rolled_back;
    }
    // An offer that came while this one ran (a newer release) is looked at now.
    if (!c.offer.empty()) {
        const auto offer = json::parse(c.offer, nullptr, false);
        if (offer.is_object() && offer.value("state", "") == "open" && offer.contains("release"))
            evaluate(d, component, offer.value("rollout", ""), offer["release"], c.offer);
    }
}

void Logic::report(Device& d, const std::string& component, const std::string& version, const std::string& rollout,
                   const Step& step) {
    ojson s{{"device", d.id}, {"component", component}, {"version", version}, {"rollout", rollout}, {"stage", step.stage}};
    if (step.progress) s["progress"] = *step.progress;
    if (step.error) s["error"] = {{"code", error_code_name(*step.error)}, {"message", step.error->message}};
    s["seq"] = ++d.seq;
    s["ts"] = now_ts();
    auto& c = d.components[component];
    c.last_stage = step.stage;
    c.last_rollout = rollout;
    io_.publish(d, topics_.status(d.id, component), s.dump(), true);
    json fields{{"component", component}, {"rollout", rollout}, {"stage", step.stage}, {"seq", d.seq}};
    if (step.error) fields["error"] = error_code_name(*step.error);
    io_.event(d, "status_published", fields);
}

std::string Logic::flood_status(Device& d, std::uint64_t i, std::uint64_t n) {
    const auto progress = static_cast<int>(n > 1 ? i * 100 / (n - 1) : 100);
    return ojson{{"device", d.id},
                 {"component", o_.flood_component},
                 {"version", "flood"},
                 {"rollout", o_.flood_rollout},
                 {"stage", "downloading"},
                 {"progress", progress},
                 {"seq", ++d.seq},
                 {"ts", now_ts()}}
        .dump();
}

}  // namespace ota::fleetsim
