#include "engine.hpp"

#include <algorithm>
#include <cmath>

#include "engine_internal.hpp"
#include "ota/json.hpp"

namespace ota::controller {
using namespace detail;

ojson Counts::to_json() const {
    return ojson{{"devices", devices}, {"succeeded", succeeded}, {"already", already}, {"failed", failed},
                 {"silent", silent},   {"in_progress", in_progress}, {"pending", pending}};
}

Engine::Engine(const ControllerConfig& config, Store& store, crypto::TrustStore trusted)
    : cfg_(config), store_(store), trusted_(std::move(trusted)), topics_(config.topic_prefix) {}

void Engine::count(const std::string& result, std::uint64_t n) { counters_.by_result[result] += n; }

std::vector<Outgoing> Engine::take_outgoing() {
    std::vector<Outgoing> out;
    out.swap(out_);
    return out;
}

// ---------------------------------------------------------------------------------------------
// Loading

void Engine::load(TimePoint now) {
    silence_from_ = now;  // nobody went silent while the controller was not running
    for (auto& d : store_.devices()) devices_.emplace(d.id, std::move(d));
    seqs_ = store_.seqs();
    for (auto& o : store_.overrides()) overrides_[o.fleet].rows[o.key] = std::move(o);
    for (auto& row : store_.rollouts()) {
        auto parsed = parse_json(row.envelope, "stored release of " + row.id);
        const auto* manifest = parsed ? field(*parsed, "manifest") : nullptr;
        auto m = manifest ? Manifest::from_json(*manifest)
                          : std::unexpected(parsed ? Error{ErrorCode::manifest_invalid, "no manifest"} : parsed.error());
        if (!m) {
            lg.error("stored rollout unreadable; ignored", {{"rollout", row.id}, {"error", m.error().describe()}});
            continue;
        }
        auto r = std::make_unique<Rollout>();
        r->row = std::move(row);
        r->manifest = std::move(*m);
        const auto* fleet = cfg_.fleet(r->row.fleet);
        // An all_at_once rollout has the one wave `all` (unless the config's own waves are just that).
        r->all_at_once = r->row.waves.size() == 1 && r->row.waves[0].name == all_wave &&
                         !(fleet && fleet->waves.size() == 1 && fleet->waves[0].name == all_wave);
        set_policies(*r);
        if (is_live(r->row.state) && r->policies.empty()) {
            // The policy changed under a live rollout: keep its waves as they were stored.
            lg.warn("fleet config changed since the rollout started; its stored waves are kept",
                    {{"rollout", r->row.id}, {"fleet", r->row.fleet}});
        }
        if (is_live(r->row.state)) active_[{r->row.fleet, r->row.component}] = r->row.id;
        rollouts_.emplace(r->row.id, std::move(r));
    }
    for (auto& [id, r] : rollouts_) {
        for (auto& m : store_.members(id)) add_member(*r, std::move(m), now);
        if (!is_live(r->row.state)) {
            retire(*r);
            continue;
        }
        for (std::size_t i = 0; i < r->row.waves.size(); ++i)
            if (is_published(r->row.waves[i].state)) publish_wave(*r, i, wave_message_state(*r, i));
        r->publish_now = true;
    }
    for (const auto& f : cfg_.fleets) publish_policy(f);
    lg.info("state loaded", {{"devices", std::to_string(devices_.size())}, {"rollouts", std::to_string(rollouts_.size())},
                             {"active", std::to_string(active_.size())}});
    tick(now);
}

// ---------------------------------------------------------------------------------------------
// Rollouts

Engine::Rollout* Engine::active_rollout(const std::string& fleet, const std::string& component) {
    auto it = active_.find({fleet, component});
    if (it == active_.end()) return nullptr;
    return rollouts_.at(it->second).get();
}

const Engine::Rollout* Engine::latest_rollout(const std::string& fleet, const std::string& component) const {
    const Rollout* best = nullptr;
    for (const auto& [id, r] : rollouts_)
        if (r->row.fleet == fleet && r->row.component == component && (!best || r->row.created >= best->row.created))
            best = r.get();
    return best;
}

void Engine::audit(TimePoint now, const std::string& actor, const std::string& action, const Rollout* r,
                   const std::string& detail) {
    store_.audit(now, actor, action, r ? r->row.id : "", detail);
}

void Engine::save(Rollout& r, TimePoint now) {
    r.row.updated = now;
    r.publish_now = true;
    store_.put_rollout(r.row);
}

void Engine::create_rollout(const Fleet& fleet, VerifiedRelease release, TimePoint now) {
    const auto& m = release.manifest;
    if (auto* old = active_rollout(fleet.name, m.component)) {
        old->row.reason = "superseded by " + m.version;
        end_waves(*old, WaveState::superseded);
        old->row.state = RolloutState::superseded;
        retire(*old);
        save(*old, now);
        audit(now, "controller", "superseded", old, "by version " + m.version);
        lg.info("rollout superseded", {{"rollout", old->row.id}, {"by", m.version}});
        publish_state(*old, now);
    }
    auto r = std::make_unique<Rollout>();
    r->row.id = rollout_id(fleet.name, m);
    if (rollouts_.contains(r->row.id)) r->row.id += "." + std::to_string(to_ms(now));
    r->row.fleet = fleet.name;
    r->row.component = m.component;
    r->row.version = m.version;
    r->row.scheme = std::string(to_string(m.version_scheme));
    r->row.channel = m.channel;
    r->row.envelope = release.envelope;
    r->row.state = RolloutState::active;
    r->row.created = now;
    const auto shaped = layout(fleet, strategy_of(fleet.name));
    r->all_at_once = shaped.strategy == Strategy::all_at_once;
    for (const auto& w : shaped.waves) {
        WaveRow row;
        row.name = w.name;
        row.state = WaveState::pending;
        r->row.waves.push_back(std::move(row));
    }
    r->manifest = m;
    set_policies(*r);
    auto& ref = *r;
    active_[{fleet.name, m.component}] = ref.row.id;
    rollouts_.emplace(ref.row.id, std::move(r));
    save(ref, now);
    audit(now, "controller", "created", &ref, "version " + m.version + " from channel " + m.channel);
    lg.info("rollout created", {{"rollout", ref.row.id}, {"fleet", fleet.name}, {"component", m.component},
                                {"version", m.version}});
    for (const auto& [id, d] : devices_)
        if (d.fleet == fleet.name) join_rollouts(d, now);
    evaluate(ref, now);
}

// A rollout's policy per wave, layered when it is created or loaded and again when an operator
// changes the fleet's policy: the config's fleet, shaped as the rollout was (staggered or
// all_at_once), with the overrides on top.
void Engine::set_policies(Rollout& r) const {
    r.policies.clear();
    const auto* file = cfg_.fleet(r.row.fleet);
    if (!file) return;
    const auto fleet = layout(*file, r.all_at_once ? Strategy::all_at_once : Strategy::staggered);
    if (fleet.waves.size() != r.row.waves.size()) return;  // the config changed under it: no policy
    for (std::size_t i = 0; i < fleet.waves.size(); ++i)
        if (fleet.waves[i].name != r.row.waves[i].name) return;
    for (std::size_t i = 0; i < fleet.waves.size(); ++i) r.policies.push_back(fleet.policy(i, r.row.component));
}

const WavePolicy* Engine::policy(const Rollout& r, std::size_t wave) const {
    return wave < r.policies.size() ? &r.policies[wave] : nullptr;
}

std::chrono::seconds Engine::device_timeout(const Rollout& r, std::size_t wave) const {
    const auto* p = policy(r, wave);
    return p ? p->device_timeout : std::chrono::seconds(3600);
}

// Silence is judged only on what the controller could have seen: from the wave's opening, the
// member's last report, or the moment the controller last (re)connected to the broker, whichever
// is latest; and not at all while it is not connected (see on_connection).
std::optional<TimePoint> Engine::quiet_since(const Rollout& r, const MemberRow& m) const {
    if (m.wave >= r.row.waves.size() || is_final(m.state)) return std::nullopt;
    const auto& opened = r.row.waves[m.wave].opened_at;
    if (!opened) return std::nullopt;  // nobody is silent in a wave that never opened
    return std::max({*opened, m.updated, silence_from_});
}

bool Engine::is_silent(const Rollout& r, const MemberRow& m, std::chrono::seconds timeout, TimePoint now) const {
    if (!connected_) return false;
    const auto since = quiet_since(r, m);
    return since && now - *since >= timeout;
}

void Engine::on_connection(bool up, TimePoint now) {
    connected_ = up;
    if (!up) return;
    // The summary waits one interval: the retained flood that follows a connect lands first.
    last_summary_ = now;
    summary_.mark();
    // What devices sent while the controller could not read it arrives now (retained statuses):
    // every unfinished device gets a fresh timeout from this moment.
    silence_from_ = now;
    for (auto& [id, r] : rollouts_)
        if (is_live(r->row.state))
            for (const auto& [device, m] : r->members) watch_silence(*r, m);
}

// Counts are kept per wave as members change (tally), so evaluating a rollout after every batch
// costs the same with 10 devices as with 10,000; only silence, which comes with time alone, needs
// a scan of the members (scan_silent: on a tick once one can have gone silent, and before
// operator commands).
Counts Engine::counts(const Rollout& r, std::size_t wave) const {
    return wave < r.tally.size() ? r.tally[wave] : Counts{};
}

void Engine::tally(Rollout& r, const MemberRow& m, bool add) {
    if (r.tally.size() < r.row.waves.size()) r.tally.resize(r.row.waves.size());
    if (m.wave >= r.tally.size()) return;
    auto& c = r.tally[m.wave];
    auto bump = [add](std::uint64_t& n) { n = add ? n + 1 : n - 1; };
    bump(c.devices);
    if (m.state == MemberState::succeeded) bump(c.succeeded);
    else if (m.state == MemberState::done) bump(c.succeeded), bump(c.already);
    else if (m.state == MemberState::failed) bump(c.failed);
    else if (r.silent.contains(m.device)) bump(c.silent);
    else if (m.state == MemberState::in_progress) bump(c.in_progress);
    else bump(c.pending);
    r.counts_dirty = true;
}

void Engine::add_member(Rollout& r, MemberRow m, TimePoint now) {
    if (is_silent(r, m, device_timeout(r, m.wave), now)) r.silent.insert(m.device);
    auto [it, fresh] = r.members.emplace(m.device, std::move(m));
    if (!fresh) return;
    tally(r, it->second, true);
    watch_silence(r, it->second);
}

void Engine::watch_silence(Rollout& r, const MemberRow& m) {
    if (r.silent.contains(m.device)) return;
    if (const auto since = quiet_since(r, m)) r.next_silence = std::min(r.next_silence, *since + device_timeout(r, m.wave));
}


// A finished rollout keeps its counts and frees its members: memory follows the live rollouts,
// not the history (SQLite keeps every member). A completed rollout keeps the members that had not
// finished (a wave may advance at success_percent < 100): their later reports still count. A
// superseded or aborted one keeps none; later statuses for it count as `other_rollout`.
void Engine::retire(Rollout& r) {
    if (r.row.state == RolloutState::completed) {
        // the kept members keep their silent mark: the counts hold them as silent
        std::erase_if(r.members, [](const auto& kv) { return is_final(kv.second.state); });
        return;
    }
    r.members.clear();
    r.silent.clear();
}

// One pass over the members, and only once the earliest moment one of them can go silent has
// come (next_silence: lowered whenever a member changes or a wave opens, raised by each pass).
void Engine::scan_silent(Rollout& r, TimePoint now) {
    if (!connected_ || now < r.next_silence) return;
    r.next_silence = TimePoint::max();
    std::vector<std::chrono::seconds> timeout;
    for (std::size_t i = 0; i < r.row.waves.size(); ++i) timeout.push_back(device_timeout(r, i));
    for (auto& [id, m] : r.members) {
        const auto since = quiet_since(r, m);
        if (!since) continue;
        const auto due = *since + timeout[m.wave];
        if (due > now) r.next_silence = std::min(r.next_silence, due);
        else if (!r.silent.contains(id)) update_member(r, m, now, [](MemberRow&) {});
    }
}

std::optional<std::string> Engine::failure_crossed(const Rollout& r, std::size_t wave, const Counts& c) const {
    const auto& w = r.row.waves[wave];
    const auto* pp = policy(r, wave);
    if (!pp) return std::nullopt;
    const auto& p = *pp;
    const auto failed = c.failed + c.silent - std::min(c.failed + c.silent, w.base_failed);
    const auto finished = c.finished() - std::min(c.finished(), w.base_finished);
    if (p.max_failures && failed >= *p.max_failures)
        return std::to_string(failed) + " failed or silent (max_failures " + std::to_string(*p.max_failures) + ")";
    if (p.max_failure_percent && failed > 0 && finished >= p.min_finished &&
        static_cast<double>(failed) * 100.0 >= *p.max_failure_percent * static_cast<double>(finished)) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "%llu of %llu finished devices failed (max_failure_percent %g)",
                      static_cast<unsigned long long>(failed), static_cast<unsigned long long>(finished),
                      *p.max_failure_percent);
        return std::string(buf);
    }
    // Every device finished (or went silent) and the success threshold was not met: the wave
    // would wait forever, so it halts for an operator to decide.
    const auto eligible = c.devices - std::min(c.devices, w.base_failed);
    const auto needed = static_cast<std::uint64_t>(std::ceil(p.success_percent * static_cast<double>(eligible) / 100.0 - 1e-9));
    if (c.in_progress + c.pending == 0 && c.succeeded < needed)
        return "the wave finished below its success threshold: " + std::to_string(c.succeeded) + " of " +
               std::to_string(eligible) + " succeeded, " + std::to_string(needed) + " needed";
    return std::nullopt;
}

void Engine::evaluate(Rollout& r, TimePoint now) {
    if (r.policies.size() != r.row.waves.size()) return;  // the fleet's config no longer matches it
    for (int guard = 0; guard < 64 && r.row.state == RolloutState::active; ++guard) {
        const auto i = r.row.wave;
        auto& w = r.row.waves[i];
        const auto& p = r.policies[i];
        if (w.state == WaveState::pending || w.state == WaveState::waiting_approval || w.state == WaveState::waiting_window) {
            std::optional<WaveState> next;
            if (p.approval && !w.approved) next = WaveState::waiting_approval;
            else if (p.window && !p.window->contains(now)) next = WaveState::waiting_window;
            if (next) {
                if (w.state != *next) {
                    w.state = *next;
                    save(r, now);
                    const std::string name(to_string(*next));
                    audit(now, "controller", name, &r, "wave " + w.name);
                    lg.info("wave waiting", {{"rollout", r.row.id}, {"wave", w.name}, {"for", name.substr(8)}});
                }
                return;
            }
            w.state = WaveState::open;
            w.opened_at = now;
            r.next_silence = std::min(r.next_silence, now + p.device_timeout);  // its members may go silent
            save(r, now);
            publish_wave(r, i, WaveState::open);
            audit(now, "controller", "wave_opened", &r, "wave " + w.name);
            lg.info("wave opened", {{"rollout", r.row.id}, {"wave", w.name}, {"version", r.row.version}});
        }
        const auto c = counts(r, i);
        if (w.state == WaveState::open || w.state == WaveState::soaking) {
            if (auto why = failure_crossed(r, i, c)) {
                if (c.devices > 0) return halt(r, *why, c, now);
            }
        }
        if (w.state == WaveState::open) {
            const auto eligible = c.devices - std::min(c.devices, w.base_failed);
            if (static_cast<double>(c.succeeded) * 100.0 < p.success_percent * static_cast<double>(eligible)) return;
            w.state = WaveState::soaking;
            w.soak_until = now + p.soak;
            save(r, now);
            audit(now, "controller", "wave_succeeded", &r,
                  "wave " + w.name + ": " + std::to_string(c.succeeded) + " of " + std::to_string(c.devices) + " succeeded");
            lg.info("wave met its success threshold; soaking", {{"rollout", r.row.id}, {"wave", w.name},
                                                                {"soak_s", std::to_string(p.soak.count())}});
        }
        if (w.state == WaveState::soaking) {
            if (now < *w.soak_until) return;
            w.state = WaveState::done;
            w.done_at = now;
            audit(now, "controller", "wave_done", &r, "wave " + w.name);
            if (i + 1 == r.row.waves.size()) {
                r.row.state = RolloutState::completed;
                retire(r);
                active_.erase({r.row.fleet, r.row.component});
                save(r, now);
                audit(now, "controller", "completed", &r, "");
                lg.info("rollout completed", {{"rollout", r.row.id}});
                return;
            }
            r.row.wave = i + 1;
            save(r, now);
            continue;
        }
        return;
    }
}

void Engine::halt(Rollout& r, const std::string& reason, const Counts& c, TimePoint now) {
    auto& w = r.row.waves[r.row.wave];
    w.state = WaveState::halted;
    r.row.state = RolloutState::halted;
    r.row.reason = reason;
    save(r, now);
    publish_wave(r, r.row.wave, WaveState::halted);
    ojson alert{{"rollout", r.row.id}, {"fleet", r.row.fleet}, {"component", r.row.component},
                {"version", r.row.version}, {"wave", w.name}, {"state", "firing"}, {"reason", reason},
                {"counts", c.to_json()}, {"ts", iso(now)}};
    out_.push_back({topics_.alert(r.row.id), alert.dump(), true});
    audit(now, "controller", "halted", &r, "wave " + w.name + ": " + reason);
    lg.error("wave halted", {{"rollout", r.row.id}, {"wave", w.name}, {"reason", reason}});
    ++counters_.halts;
    publish_state(r, now);
}

// Republish every wave this rollout has published with a state that tells devices not to start.
void Engine::end_waves(Rollout& r, WaveState wave_state) {
    for (std::size_t i = 0; i < r.row.waves.size(); ++i) {
        auto& w = r.row.waves[i];
        if (is_published(w.state)) publish_wave(r, i, wave_state);
        if (w.state != WaveState::done) w.state = wave_state;
    }
    active_.erase({r.row.fleet, r.row.component});
}

// The state a published wave's message carries while its rollout is live: what pause, halt and
// resume published, so a restart republishes identical content (a done wave stays `open`).
WaveState Engine::wave_message_state(const Rollout& r, std::size_t wave) const {
    const auto& w = r.row.waves[wave];
    if (w.state == WaveState::halted) return WaveState::halted;
    if (r.row.state == RolloutState::paused && wave == r.row.wave && (w.state == WaveState::open || w.state == WaveState::soaking))
        return WaveState::paused;
    return WaveState::open;
}

bool Engine::should_log(std::string_view key, TimePoint now) {
    std::uint64_t held = 0;
    const bool ok = limiter_.allow(key, now.time_since_epoch(), held);
    if (held) lg.warn("similar messages were not logged", {{"kind", std::string(key)}, {"suppressed", std::to_string(held)}});
    return ok;
}

// An all_at_once rollout's one wave goes out on the topic of every wave of the config: devices
// keep their assignment (and subscription) whatever the strategy.
void Engine::publish_wave(const Rollout& r, std::size_t wave, WaveState state) {
    auto release = json::parse(r.row.envelope, nullptr, false);
    ojson msg;
    msg["rollout"] = r.row.id;
    msg["state"] = to_string(state);
    msg["release"] = release.is_discarded() ? json(r.row.envelope) : release;
    const auto* file = cfg_.fleet(r.row.fleet);
    if (r.all_at_once && file) {
        for (const auto& w : file->waves) out_.push_back({topics_.wave(r.row.fleet, w.name, r.row.component), msg.dump(), true});
        return;
    }
    out_.push_back({topics_.wave(r.row.fleet, r.row.waves[wave].name, r.row.component), msg.dump(), true});
}

std::optional<ojson> Engine::rollout_state(const std::string& id) const {
    auto it = rollouts_.find(id);
    if (it == rollouts_.end()) return std::nullopt;
    const auto& r = *it->second;
    ojson j;
    j["rollout"] = r.row.id;
    j["fleet"] = r.row.fleet;
    j["component"] = r.row.component;
    j["version"] = r.row.version;
    j["state"] = to_string(r.row.state);
    j["wave"] = r.row.waves[r.row.wave].name;
    if (!r.row.reason.empty()) j["reason"] = r.row.reason;
    j["created"] = iso(r.row.created);
    j["updated"] = iso(r.row.updated);
    Counts total;
    auto& waves = j["waves"] = ojson::array();
    for (std::size_t i = 0; i < r.row.waves.size(); ++i) {
        const auto& w = r.row.waves[i];
        const auto c = counts(r, i);
        ojson wj;
        wj["name"] = w.name;
        wj["state"] = to_string(w.state);
        wj.update(c.to_json());
        if (w.opened_at) wj["opened_at"] = iso(*w.opened_at);
        if (w.soak_until) wj["soak_until"] = iso(*w.soak_until);
        if (const auto* p = policy(r, i)) {
            wj["success_percent"] = p->success_percent;
            if (p->approval) wj["approval"] = w.approved ? "approved" : "required";
        }
        waves.push_back(wj);
        total.devices += c.devices, total.succeeded += c.succeeded, total.already += c.already;
        total.failed += c.failed, total.silent += c.silent, total.in_progress += c.in_progress, total.pending += c.pending;
    }
    j["totals"] = total.to_json();
    return j;
}

void Engine::publish_state(Rollout& r, TimePoint now) {
    if (auto s = rollout_state(r.row.id)) out_.push_back({topics_.rollout(r.row.id), s->dump(), true});
    r.publish_now = false;
    r.counts_dirty = false;
    r.last_publish = now;
}

void Engine::tick(TimePoint now) {
    for (auto& [id, r] : rollouts_) {
        if (is_live(r->row.state)) scan_silent(*r, now);
        if (r->row.state == RolloutState::active) evaluate(*r, now);
        // Silent devices appear with time alone: publish live rollouts at the interval too.
        const bool due = now - r->last_publish >= cfg_.state_interval;
        if (r->publish_now || ((r->counts_dirty || is_live(r->row.state)) && due)) publish_state(*r, now);
    }
    publish_summary(now);
}

ojson Engine::summary(TimePoint now) const {
    std::map<std::string, std::string> channels;  // fleet -> the channel it follows
    for (const auto& f : cfg_.fleets) channels[f.name] = f.channel;
    return summary_.document(devices_, channels, to_ts(now));
}

void Engine::publish_summary(TimePoint now) {
    // Not while disconnected: the retained flood after a reconnect would be counted half-way.
    if (!summary_.dirty() || !connected_ || now - last_summary_ < cfg_.summary_interval) return;
    out_.push_back({topics_.summary(), summary(now).dump(), true});
    summary_.clean();
    last_summary_ = now;
}

std::map<std::string, std::uint64_t> Engine::rollouts_by_state() const {
    std::map<std::string, std::uint64_t> out;
    for (const auto& [id, r] : rollouts_) ++out[std::string(to_string(r->row.state))];
    return out;
}

std::size_t Engine::member_count() const {
    std::size_t n = 0;
    for (const auto& [id, r] : rollouts_) n += r->members.size();
    return n;
}

std::map<std::string, std::uint64_t> Engine::members_by_state() const {
    std::map<std::string, std::uint64_t> out;
    for (const auto& [id, r] : rollouts_) {
        if (!is_live(r->row.state)) continue;
        for (std::size_t i = 0; i < r->row.waves.size(); ++i) {
            const auto c = counts(*r, i);
            out["succeeded"] += c.succeeded, out["failed"] += c.failed, out["silent"] += c.silent;
            out["in_progress"] += c.in_progress, out["pending"] += c.pending;
        }
    }
    return out;
}

}  // namespace ota::controller
