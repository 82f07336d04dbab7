#include "engine.hpp"

#include <algorithm>
#include <cmath>

#include "ota/json.hpp"
#include "ota/log.hpp"
#include "ota/time.hpp"

namespace ota::controller {
namespace {

using nlohmann::json;
using ojson = nlohmann::ordered_json;

const log::Logger lg("controller");

bool final_state(const std::string& s) { return s == "succeeded" || s == "done" || s == "failed"; }
bool live_rollout(const std::string& s) { return s == "active" || s == "paused" || s == "halted"; }
bool wave_published(const std::string& s) { return s == "open" || s == "soaking" || s == "done" || s == "halted"; }

// The member state a reported stage means.
std::string state_of_stage(const std::string& stage, const std::string& error_code) {
    if (stage == "succeeded") return "succeeded";
    if (stage == "failed" || stage == "rolled_back") return "failed";
    if (stage == "rejected") return error_code == "version_not_newer" ? "done" : "failed";
    return "in_progress";
}

std::string iso(TimePoint t) { return format_utc(std::chrono::time_point_cast<std::chrono::seconds>(t)); }

std::string rollout_id(const std::string& fleet, const Manifest& m) {
    std::string id = fleet + "." + m.component + "." + m.version;
    if (is_valid_segment(id)) return id;
    return fleet + "." + m.component + "." + crypto::sha256_hex(m.version).substr(0, 12);
}

Timestamp to_ts(TimePoint t) { return std::chrono::time_point_cast<std::chrono::seconds>(t); }

}  // namespace

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
    for (auto& d : store_.devices()) devices_.emplace(d.id, std::move(d));
    seqs_ = store_.seqs();
    for (auto& row : store_.rollouts()) {
        auto parsed = parse_json(row.envelope, "stored release of " + row.id);
        auto m = parsed ? Manifest::from_json((*parsed)["manifest"]) : std::unexpected(parsed.error());
        if (!m) {
            lg.error("stored rollout unreadable; ignored", {{"rollout", row.id}, {"error", m.error().describe()}});
            continue;
        }
        auto r = std::make_unique<Rollout>();
        r->row = std::move(row);
        r->manifest = std::move(*m);
        set_policies(*r);
        const auto* fleet = cfg_.fleet(r->row.fleet);
        if (live_rollout(r->row.state) && (!fleet || fleet->waves.size() != r->row.waves.size())) {
            // The policy changed under a live rollout: keep its waves as they were stored.
            lg.warn("fleet config changed since the rollout started; its stored waves are kept",
                    {{"rollout", r->row.id}, {"fleet", r->row.fleet}});
        }
        if (live_rollout(r->row.state)) active_[{r->row.fleet, r->row.component}] = r->row.id;
        rollouts_.emplace(r->row.id, std::move(r));
    }
    for (auto& [id, r] : rollouts_) {
        for (auto& m : store_.members(id)) add_member(*r, std::move(m), now);
        if (!live_rollout(r->row.state)) {
            retire(*r);
            continue;
        }
        for (std::size_t i = 0; i < r->row.waves.size(); ++i) {
            const auto& w = r->row.waves[i];
            if (wave_published(w.state)) publish_wave(*r, i, w.state == "halted" ? "halted" : (r->row.state == "paused" ? "paused" : "open"));
        }
        r->publish_now = true;
    }
    lg.info("state loaded", {{"devices", std::to_string(devices_.size())}, {"rollouts", std::to_string(rollouts_.size())},
                             {"active", std::to_string(active_.size())}});
    tick(now);
}

// ---------------------------------------------------------------------------------------------
// Messages

void Engine::on_message(const mqtt::Message& message, TimePoint now) {
    const auto parsed = topics_.parse(message.topic);
    if (!parsed) return count("unknown_topic");
    if (message.payload.empty()) return;  // a retained message being cleared
    switch (parsed->kind) {
        case Topics::Kind::release: return on_release(message.topic, message.payload, now);
        case Topics::Kind::inventory: return on_inventory(parsed->a, message.payload, now);
        case Topics::Kind::online: return on_online(parsed->a, message.payload, now);
        case Topics::Kind::status: return on_status(parsed->a, parsed->b, message.payload, now);
        case Topics::Kind::control_request: return on_control(message.payload, now);
        default: return;  // our own publishes (waves, rollouts, alerts, replies)
    }
}

void Engine::on_release(const std::string& topic, const std::string& payload, TimePoint now) {
    auto verified = open_envelope(payload, trusted_, to_ts(now), "release on " + topic);
    if (!verified) {
        count("release_rejected");
        lg.error("release rejected", {{"topic", topic}, {"error", verified.error().describe()}});
        return;
    }
    const auto& m = verified->manifest;
    const auto offered = m.parsed_version();
    for (const auto& fleet : cfg_.fleets) {
        if (fleet.channel != m.channel) continue;
        if (const auto* latest = latest_rollout(fleet.name, m.component)) {
            if (latest->row.version == m.version) continue;  // seen (a retained message at every start)
            auto cur = latest->manifest.parsed_version();
            auto cmp = offered && cur ? offered->compare(*cur) : std::unexpected(Error{ErrorCode::version_invalid, ""});
            if (!cmp || *cmp != std::strong_ordering::greater) {
                count("release_not_newer");
                lg.warn("release not newer than the latest rollout; ignored",
                        {{"fleet", fleet.name}, {"component", m.component}, {"version", m.version},
                         {"latest", latest->row.version}});
                continue;
            }
        }
        create_rollout(fleet, *verified, now);
    }
}

DeviceRow& Engine::touch_device(const std::string& id, TimePoint now) {
    auto [it, added] = devices_.try_emplace(id);
    auto& d = it->second;
    if (added) {
        d.id = id;
        d.first_seen = now;
        lg.info("new device", {{"device", id}});
    }
    d.last_seen = now;
    return d;
}

void Engine::on_online(const std::string& device, const std::string& payload, TimePoint now) {
    if (payload.size() > cfg_.max_payload) return count("oversize");
    auto j = parse_json(payload, "online of " + device);
    if (!j || !j->is_object() || !(*j)["online"].is_boolean()) {
        count("malformed");
        lg.warn("malformed online message", {{"device", device}});
        return;
    }
    auto& d = touch_device(device, now);
    d.online = (*j)["online"].get<bool>();
    if (auto v = j->find("agent_version"); v != j->end() && v->is_string()) d.agent_version = v->get<std::string>();
    place_device(d, now);
    store_.put_device(d);
}

void Engine::on_inventory(const std::string& device, const std::string& payload, TimePoint now) {
    if (payload.size() > cfg_.max_payload) return count("oversize");
    auto j = parse_json(payload, "inventory of " + device);
    if (!j) {
        count("malformed");
        lg.warn("malformed inventory", {{"device", device}, {"error", j.error().message}});
        return;
    }
    ObjectReader r(*j, "inventory", ErrorCode::json_invalid);
    const auto platform = r.opt_str("platform").value_or("");
    const auto agent_version = r.opt_str("agent_version").value_or("");
    const auto labels = r.str_map("labels");
    const auto* comps = r.object("components", true);
    if (r.ok() && comps)
        for (const auto& [k, v] : comps->items())
            if (!v.is_string() && !v.is_null()) r.fail("components." + k, "expected a version string or null");
    if (!r.ok()) {
        count("malformed");
        lg.warn("malformed inventory", {{"device", device}, {"error", r.error()->message}});
        return;
    }
    auto& d = touch_device(device, now);
    d.platform = platform;
    d.agent_version = agent_version;
    d.labels = labels;
    d.components = *comps;
    d.has_inventory = true;
    d.online = true;
    place_device(d, now);
    store_.put_device(d);
    count("inventory");
}

void Engine::place_device(DeviceRow& d, TimePoint now) {
    std::map<std::string, std::string> labels;
    for (const auto& [k, v] : d.labels.items())
        if (v.is_string()) labels[k] = v.get<std::string>();
    const auto* fleet = cfg_.fleet_of(d.id, labels);
    if (!fleet) {
        if (!d.fleet.empty() || d.assigned.empty()) lg.warn("device matches no fleet; not assigned", {{"device", d.id}});
        d.fleet.clear();
        d.wave.clear();
        d.assigned = "-";
        return;
    }
    d.fleet = fleet->name;
    d.wave = fleet->waves[fleet->wave_of(d.id, labels)].name;
    const auto assignment = json{{"fleet", d.fleet}, {"wave", d.wave}}.dump();
    if (assignment != d.assigned) {
        d.assigned = assignment;
        out_.push_back({topics_.assignment(d.id), assignment, true});
        lg.info("device assigned", {{"device", d.id}, {"fleet", d.fleet}, {"wave", d.wave}});
    }
    join_rollouts(d, now);
}

bool Engine::at_or_past_target(const DeviceRow& d, const Rollout& r) const {
    const auto it = d.components.find(r.row.component);
    if (it == d.components.end() || !it->is_string()) return false;
    auto have = Version::parse(it->get<std::string>(), r.manifest.version_scheme);
    auto want = r.manifest.parsed_version();
    if (!have || !want) return false;
    auto cmp = have->compare(*want);
    return cmp && *cmp != std::strong_ordering::less;
}

void Engine::join_rollouts(const DeviceRow& d, TimePoint now) {
    if (!d.has_inventory || d.fleet.empty()) return;
    const auto* fleet = cfg_.fleet(d.fleet);
    for (const auto& item : d.components.items()) {
        auto* r = active_rollout(d.fleet, item.key());
        if (!r) continue;
        auto it = r->members.find(d.id);
        if (it == r->members.end()) {
            const auto& platforms = r->manifest.compatibility.platforms;
            if (!platforms.empty() && std::find(platforms.begin(), platforms.end(), d.platform) == platforms.end())
                continue;  // not for this device's platform: not part of the rollout
            MemberRow m;
            m.rollout = r->row.id;
            m.device = d.id;
            m.wave = fleet ? fleet->wave_of(d.id, [&] {
                std::map<std::string, std::string> l;
                for (const auto& [k, v] : d.labels.items())
                    if (v.is_string()) l[k] = v.get<std::string>();
                return l;
            }()) : r->row.waves.size() - 1;
            if (m.wave >= r->row.waves.size()) m.wave = r->row.waves.size() - 1;
            m.state = at_or_past_target(d, *r) ? "done" : "pending";
            m.updated = now;
            store_.put_member(m);
            add_member(*r, std::move(m), now);
        } else if (!final_state(it->second.state) && at_or_past_target(d, *r)) {
            update_member(*r, it->second, now, [&](MemberRow& m) {
                m.state = "done";
                m.updated = now;
            });
            store_.put_member(it->second);
        }
    }
}

void Engine::on_status(const std::string& device, const std::string& component, const std::string& payload,
                       TimePoint now) {
    if (payload.size() > cfg_.max_payload) {
        count("oversize");
        lg.warn("oversize status dropped", {{"device", device}, {"bytes", std::to_string(payload.size())}});
        return;
    }
    auto j = parse_json(payload, "status of " + device);
    std::string problem;
    if (!j) problem = j.error().message;
    else if (!j->is_object()) problem = "not a JSON object";
    else if (!(*j)["seq"].is_number_integer()) problem = "seq: expected an integer";
    else if (!(*j)["stage"].is_string()) problem = "stage: expected a string";
    else if (j->contains("rollout") && !(*j)["rollout"].is_string()) problem = "rollout: expected a string";
    else if (j->contains("device") && (*j)["device"] != device) problem = "device: does not match the topic";
    if (!problem.empty()) {
        count("malformed");
        lg.warn("malformed status dropped", {{"device", device}, {"component", component}, {"error", problem}});
        return;
    }
    if (!devices_.contains(device)) {
        count("unknown_device");
        lg.warn("status from an unknown device dropped", {{"device", device}, {"component", component}});
        return;
    }
    const auto seq = (*j)["seq"].get<std::int64_t>();
    auto& last = seqs_[{device, component}];
    if (seq <= last) {
        count(seq == last ? "duplicate" : "out_of_order");
        return;
    }
    last = seq;
    store_.put_seq(device, component, seq);
    const auto rollout = j->value("rollout", "");
    auto rit = rollouts_.find(rollout);
    if (rit == rollouts_.end() || rit->second->row.component != component ||
        !rit->second->members.contains(device)) {
        count("other_rollout");
        lg.debug("status for another rollout", {{"device", device}, {"component", component}, {"rollout", rollout}});
        return;
    }
    auto& r = *rit->second;
    auto& m = r.members.at(device);
    const auto stage = (*j)["stage"].get<std::string>();
    std::string code;
    if (auto e = j->find("error"); e != j->end() && e->is_object()) code = e->value("code", "");
    update_member(r, m, now, [&](MemberRow& mm) {
        mm.stage = stage;
        mm.state = state_of_stage(stage, code);
        mm.error = code;
        if (auto p = j->find("progress"); p != j->end() && p->is_number_integer()) mm.progress = p->get<int>();
        mm.updated = now;
    });
    store_.put_member(m);
    count("applied");
    if (live_rollout(r.row.state)) touched_.insert(r.row.id);  // evaluated once per batch (flush)
}

void Engine::flush(TimePoint now) {
    for (const auto& id : touched_)
        if (auto it = rollouts_.find(id); it != rollouts_.end() && it->second->row.state == "active") evaluate(*it->second, now);
    touched_.clear();
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
        end_waves(*old, "superseded");
        old->row.state = "superseded";
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
    r->row.state = "active";
    r->row.created = now;
    for (const auto& w : fleet.waves) {
        WaveRow row;
        row.name = w.name;
        row.state = "pending";
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

// A rollout's policy per wave, layered once when it is created or loaded.
void Engine::set_policies(Rollout& r) const {
    r.policies.clear();
    const auto* fleet = cfg_.fleet(r.row.fleet);
    if (!fleet || fleet->waves.size() != r.row.waves.size()) return;  // the config changed under it: no policy
    for (std::size_t i = 0; i < fleet->waves.size(); ++i) r.policies.push_back(fleet->policy(i, r.row.component));
}

const WavePolicy* Engine::policy(const Rollout& r, std::size_t wave) const {
    return wave < r.policies.size() ? &r.policies[wave] : nullptr;
}

std::chrono::seconds Engine::device_timeout(const Rollout& r, std::size_t wave) const {
    const auto* p = policy(r, wave);
    return p ? p->device_timeout : std::chrono::seconds(3600);
}

bool Engine::is_silent(const Rollout& r, const MemberRow& m, std::chrono::seconds timeout, TimePoint now) const {
    const auto& opened = r.row.waves[m.wave].opened_at;
    return !final_state(m.state) && opened && now - std::max(*opened, m.updated) >= timeout;
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
    if (m.state == "succeeded") bump(c.succeeded);
    else if (m.state == "done") bump(c.succeeded), bump(c.already);
    else if (m.state == "failed") bump(c.failed);
    else if (r.silent.contains(m.device)) bump(c.silent);
    else if (m.state == "in_progress") bump(c.in_progress);
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
    if (final_state(m.state) || m.wave >= r.row.waves.size() || r.silent.contains(m.device)) return;
    const auto& opened = r.row.waves[m.wave].opened_at;
    if (opened) r.next_silence = std::min(r.next_silence, std::max(*opened, m.updated) + device_timeout(r, m.wave));
}

template <class F>
void Engine::update_member(Rollout& r, MemberRow& m, TimePoint now, F&& change) {
    tally(r, m, false);
    std::forward<F>(change)(m);
    if (is_silent(r, m, device_timeout(r, m.wave), now)) r.silent.insert(m.device);
    else r.silent.erase(m.device);
    tally(r, m, true);
    watch_silence(r, m);
}

// A finished rollout keeps its counts and frees its members: memory follows the live rollouts,
// not the history (SQLite keeps every member). A completed rollout keeps the members that had not
// finished (a wave may advance at success_percent < 100): their later reports still count. A
// superseded or aborted one keeps none; later statuses for it count as `other_rollout`.
void Engine::retire(Rollout& r) {
    if (r.row.state == "completed") {
        // the kept members keep their silent mark: the counts hold them as silent
        std::erase_if(r.members, [](const auto& kv) { return final_state(kv.second.state); });
        return;
    }
    r.members.clear();
    r.silent.clear();
}

// One pass over the members, and only once the earliest moment one of them can go silent has
// come (next_silence: lowered whenever a member changes or a wave opens, raised by each pass).
void Engine::scan_silent(Rollout& r, TimePoint now) {
    if (now < r.next_silence) return;
    r.next_silence = TimePoint::max();
    std::vector<std::optional<TimePoint>> opened;
    std::vector<std::chrono::seconds> timeout;
    for (std::size_t i = 0; i < r.row.waves.size(); ++i) {
        opened.push_back(r.row.waves[i].opened_at);  // nobody is silent in a wave that never opened
        timeout.push_back(device_timeout(r, i));
    }
    for (auto& [id, m] : r.members) {
        if (m.wave >= opened.size() || !opened[m.wave] || final_state(m.state)) continue;
        const auto due = std::max(*opened[m.wave], m.updated) + timeout[m.wave];
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
    for (int guard = 0; guard < 64 && r.row.state == "active"; ++guard) {
        const auto i = r.row.wave;
        auto& w = r.row.waves[i];
        const auto& p = r.policies[i];
        if (w.state == "pending" || w.state == "waiting_approval" || w.state == "waiting_window") {
            std::string next;
            if (p.approval && !w.approved) next = "waiting_approval";
            else if (p.window && !p.window->contains(now)) next = "waiting_window";
            if (!next.empty()) {
                if (w.state != next) {
                    w.state = next;
                    save(r, now);
                    audit(now, "controller", next, &r, "wave " + w.name);
                    lg.info("wave waiting", {{"rollout", r.row.id}, {"wave", w.name}, {"for", next.substr(8)}});
                }
                return;
            }
            w.state = "open";
            w.opened_at = now;
            r.next_silence = std::min(r.next_silence, now + p.device_timeout);  // its members may go silent
            save(r, now);
            publish_wave(r, i, "open");
            audit(now, "controller", "wave_opened", &r, "wave " + w.name);
            lg.info("wave opened", {{"rollout", r.row.id}, {"wave", w.name}, {"version", r.row.version}});
        }
        const auto c = counts(r, i);
        if (w.state == "open" || w.state == "soaking") {
            if (auto why = failure_crossed(r, i, c)) {
                if (c.devices > 0) return halt(r, *why, c, now);
            }
        }
        if (w.state == "open") {
            const auto eligible = c.devices - std::min(c.devices, w.base_failed);
            if (static_cast<double>(c.succeeded) * 100.0 < p.success_percent * static_cast<double>(eligible)) return;
            w.state = "soaking";
            w.soak_until = now + p.soak;
            save(r, now);
            audit(now, "controller", "wave_succeeded", &r,
                  "wave " + w.name + ": " + std::to_string(c.succeeded) + " of " + std::to_string(c.devices) + " succeeded");
            lg.info("wave met its success threshold; soaking", {{"rollout", r.row.id}, {"wave", w.name},
                                                                {"soak_s", std::to_string(p.soak.count())}});
        }
        if (w.state == "soaking") {
            if (now < *w.soak_until) return;
            w.state = "done";
            w.done_at = now;
            audit(now, "controller", "wave_done", &r, "wave " + w.name);
            if (i + 1 == r.row.waves.size()) {
                r.row.state = "completed";
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
    w.state = "halted";
    r.row.state = "halted";
    r.row.reason = reason;
    save(r, now);
    publish_wave(r, r.row.wave, "halted");
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
void Engine::end_waves(Rollout& r, const std::string& wave_state) {
    for (std::size_t i = 0; i < r.row.waves.size(); ++i) {
        auto& w = r.row.waves[i];
        if (wave_published(w.state)) publish_wave(r, i, wave_state);
        if (w.state != "done") w.state = wave_state;
    }
    active_.erase({r.row.fleet, r.row.component});
}

void Engine::publish_wave(const Rollout& r, std::size_t wave, const std::string& state) {
    auto release = json::parse(r.row.envelope, nullptr, false);
    ojson msg;
    msg["rollout"] = r.row.id;
    msg["state"] = state;
    msg["release"] = release.is_discarded() ? json(r.row.envelope) : release;
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
    j["state"] = r.row.state;
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
        wj["state"] = w.state;
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
        if (live_rollout(r->row.state)) scan_silent(*r, now);
        if (r->row.state == "active") evaluate(*r, now);
        // Silent devices appear with time alone: publish live rollouts at the interval too.
        const bool due = now - r->last_publish >= cfg_.state_interval;
        if (r->publish_now || ((r->counts_dirty || live_rollout(r->row.state)) && due)) publish_state(*r, now);
    }
}

std::map<std::string, std::uint64_t> Engine::rollouts_by_state() const {
    std::map<std::string, std::uint64_t> out;
    for (const auto& [id, r] : rollouts_) ++out[r->row.state];
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
        if (!live_rollout(r->row.state)) continue;
        for (std::size_t i = 0; i < r->row.waves.size(); ++i) {
            const auto c = counts(*r, i);
            out["succeeded"] += c.succeeded, out["failed"] += c.failed, out["silent"] += c.silent;
            out["in_progress"] += c.in_progress, out["pending"] += c.pending;
        }
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Operator commands

void Engine::on_control(const std::string& payload, TimePoint now) {
    auto j = parse_json(payload, "control request");
    if (!j || !j->is_object()) {
        count("control_malformed");
        lg.warn("malformed control request dropped", {{"error", j ? "not an object" : j.error().message}});
        return;
    }
    const auto reply_to = j->value("reply_to", "");
    const auto reply_prefix = topics_.control_reply("");
    ojson reply;
    reply["id"] = j->value("id", "");
    const auto cmd = j->value("cmd", "");
    auto actor = j->value("actor", "");
    if (!is_valid_segment(actor)) actor = "unknown";
    Expected<ojson> result = fail(ErrorCode::request_invalid, "missing cmd");
    if (!cmd.empty()) result = command(cmd, *j, actor, now);
    if (result) {
        reply["ok"] = true;
        reply["result"] = *result;
    } else {
        reply["ok"] = false;
        reply["error"] = {{"code", to_string(result.error().code)}, {"message", result.error().message}};
    }
    count("control");
    lg.info("control request", {{"cmd", cmd}, {"actor", actor}, {"ok", result ? "true" : "false"}});
    if (reply_to.rfind(reply_prefix, 0) != 0 || !is_valid_segment(reply_to.substr(reply_prefix.size()))) {
        lg.warn("control request without a valid reply_to; no reply sent", {{"reply_to", reply_to}});
        return;
    }
    out_.push_back({reply_to, reply.dump(), false});
}

Expected<Engine::Rollout*> Engine::find_rollout(const nlohmann::json& request) {
    const auto id = request.value("rollout", "");
    if (id.empty()) return fail(ErrorCode::request_invalid, "missing rollout");
    auto it = rollouts_.find(id);
    if (it == rollouts_.end()) return fail(ErrorCode::not_found, "no rollout " + id);
    return it->second.get();
}

void Engine::resume(Rollout& r, const std::string& actor, TimePoint now) {
    auto& w = r.row.waves[r.row.wave];
    const auto c = counts(r, r.row.wave);
    w.base_failed = c.failed + c.silent;
    w.base_finished = c.finished();
    const bool was_halted = r.row.state == "halted";
    r.row.state = "active";
    r.row.reason.clear();
    if (w.state == "halted" || w.state == "paused") w.state = "open";
    save(r, now);
    if (wave_published(w.state)) publish_wave(r, r.row.wave, "open");
    if (was_halted) {
        ojson alert{{"rollout", r.row.id}, {"fleet", r.row.fleet}, {"component", r.row.component},
                    {"version", r.row.version}, {"wave", w.name}, {"state", "resolved"},
                    {"resolved_by", actor}, {"ts", iso(now)}};
        out_.push_back({topics_.alert(r.row.id), alert.dump(), true});
    }
}

Expected<ojson> Engine::command(const std::string& cmd, const nlohmann::json& request, const std::string& actor,
                                TimePoint now) {
    for (auto& [id, r] : rollouts_)  // what the operator reads and acts on counts the silent devices of now
        if (live_rollout(r->row.state)) scan_silent(*r, now);
    if (cmd == "rollouts") {
        ojson list = ojson::array();
        for (const auto& [id, r] : rollouts_) {
            auto s = rollout_state(id);
            s->erase("waves");
            list.push_back(*s);
        }
        return list;
    }
    if (cmd == "status") {
        auto r = find_rollout(request);
        if (!r) return std::unexpected(r.error());
        return *rollout_state((*r)->row.id);
    }
    if (cmd == "devices") return devices_report(request.value("outdated", false));
    if (cmd == "audit") {
        const auto rollout = request.value("rollout", "");
        const auto limit = request.value("limit", 100);
        ojson list = ojson::array();
        for (const auto& a : store_.audit_log(rollout, static_cast<std::size_t>(std::clamp(limit, 1, 10000))))
            list.push_back(ojson{{"id", a.id}, {"ts", iso(a.ts)}, {"actor", a.actor}, {"action", a.action},
                                 {"rollout", a.rollout}, {"detail", a.detail}});
        return list;
    }
    if (cmd == "update") {
        const auto device = request.value("device", ""), component = request.value("component", "");
        auto d = devices_.find(device);
        if (d == devices_.end()) return fail(ErrorCode::not_found, "no device " + device);
        if (d->second.fleet.empty()) return fail(ErrorCode::state_conflict, "device " + device + " is in no fleet");
        auto* r = const_cast<Rollout*>(latest_rollout(d->second.fleet, component));
        if (!r) return fail(ErrorCode::not_found, "no release of " + component + " for fleet " + d->second.fleet);
        if (r->row.state == "completed" && !r->members.contains(device)) {
            // A device that finished before the rollout completed: its member was freed but is
            // still in the counts; back in memory (as counted) its new reports move them.
            if (auto m = store_.member(r->row.id, device)) r->members.emplace(device, std::move(*m));
        } else if (live_rollout(r->row.state) && !r->members.contains(device)) {
            MemberRow m;
            m.rollout = r->row.id;
            m.device = device;
            m.wave = r->row.wave;
            m.state = "pending";
            m.updated = now;
            store_.put_member(m);
            add_member(*r, std::move(m), now);
        }
        ojson c{{"cmd", "install"}, {"component", component}, {"rollout", r->row.id},
                {"release", json::parse(r->row.envelope, nullptr, false)}};
        out_.push_back({topics_.cmd(device), c.dump(), false});
        audit(now, actor, "update", r, "device " + device);
        return ojson{{"device", device}, {"rollout", r->row.id}, {"version", r->row.version}};
    }
    if (cmd != "approve" && cmd != "pause" && cmd != "resume" && cmd != "retry" && cmd != "abort")
        return fail(ErrorCode::request_invalid, "unknown cmd \"" + cmd +
                                                    "\" (rollouts status devices audit update approve pause resume retry abort)");
    auto found = find_rollout(request);
    if (!found) return std::unexpected(found.error());
    auto& r = **found;
    const auto& st = r.row.state;
    if (cmd == "approve") {
        for (std::size_t i = r.row.wave; i < r.row.waves.size(); ++i) {
            auto& w = r.row.waves[i];
            const auto* p = policy(r, i);
            if (!p || w.approved || !p->approval || w.state == "done") continue;
            if (!live_rollout(st)) return fail(ErrorCode::state_conflict, "rollout " + r.row.id + " is " + st);
            w.approved = true;
            save(r, now);
            audit(now, actor, "approved", &r, "wave " + w.name);
            evaluate(r, now);
            return ojson{{"rollout", r.row.id}, {"approved", w.name}};
        }
        return fail(ErrorCode::state_conflict, "rollout " + r.row.id + " has no wave waiting for approval");
    }
    if (cmd == "pause") {
        if (st != "active") return fail(ErrorCode::state_conflict, "rollout " + r.row.id + " is " + st + ", not active");
        r.row.state = "paused";
        auto& w = r.row.waves[r.row.wave];
        if (w.state == "open" || w.state == "soaking") publish_wave(r, r.row.wave, "paused");
        save(r, now);
        audit(now, actor, "paused", &r, "");
    } else if (cmd == "resume") {
        if (st != "paused" && st != "halted")
            return fail(ErrorCode::state_conflict, "rollout " + r.row.id + " is " + st + ", not paused or halted");
        resume(r, actor, now);
        audit(now, actor, "resumed", &r, "");
        evaluate(r, now);
    } else if (cmd == "retry") {
        if (!live_rollout(st)) return fail(ErrorCode::state_conflict, "rollout " + r.row.id + " is " + st);
        std::uint64_t n = 0;
        for (auto& [id, m] : r.members) {
            if (m.wave > r.row.wave) continue;
            if (m.state != "failed" && !r.silent.contains(id)) continue;
            update_member(r, m, now, [&](MemberRow& mm) {
                mm.state = "pending";
                mm.stage.clear();
                mm.error.clear();
                mm.updated = now;
            });
            store_.put_member(m);
            out_.push_back({topics_.cmd(id), ojson{{"cmd", "retry"}, {"component", r.row.component}}.dump(), false});
            ++n;
        }
        if (st == "halted" || st == "paused") resume(r, actor, now);
        auto& w = r.row.waves[r.row.wave];
        w.base_failed = 0;
        w.base_finished = 0;
        save(r, now);
        audit(now, actor, "retried", &r, std::to_string(n) + " devices");
        evaluate(r, now);
        return ojson{{"rollout", r.row.id}, {"retried", n}};
    } else if (cmd == "abort") {
        if (!live_rollout(st)) return fail(ErrorCode::state_conflict, "rollout " + r.row.id + " is " + st);
        const bool was_halted = st == "halted";
        end_waves(r, "aborted");
        r.row.state = "aborted";
        retire(r);
        r.row.reason = "aborted by " + actor;
        save(r, now);
        audit(now, actor, "aborted", &r, "");
        if (was_halted) {
            ojson alert{{"rollout", r.row.id}, {"fleet", r.row.fleet}, {"component", r.row.component},
                        {"version", r.row.version}, {"state", "resolved"}, {"resolved_by", actor},
                        {"resolution", "aborted"}, {"ts", iso(now)}};
            out_.push_back({topics_.alert(r.row.id), alert.dump(), true});
        }
    }
    lg.info("operator action", {{"rollout", r.row.id}, {"cmd", cmd}, {"actor", actor}});
    return ojson{{"rollout", r.row.id}, {"state", r.row.state}};
}

Expected<ojson> Engine::devices_report(bool outdated_only) const {
    ojson list = ojson::array();
    std::map<std::string, std::map<std::string, std::uint64_t>> skew;  // component -> version -> devices
    for (const auto& [id, d] : devices_) {
        ojson comps = ojson::object();
        bool outdated = false;
        for (const auto& [c, v] : d.components.items()) {
            const auto have = v.is_string() ? v.get<std::string>() : std::string();
            ++skew[c][have.empty() ? "unknown" : have];
            const auto* r = d.fleet.empty() ? nullptr : latest_rollout(d.fleet, c);
            std::string status = "unknown";
            if (r && !have.empty()) {
                auto hv = Version::parse(have, r->manifest.version_scheme);
                auto tv = r->manifest.parsed_version();
                if (hv && tv) {
                    auto cmp = hv->compare(*tv);
                    if (cmp) status = *cmp == std::strong_ordering::less ? "outdated" : "up_to_date";
                }
            }
            outdated = outdated || status == "outdated";
            comps[c] = ojson{{"version", v}, {"target", r ? json(r->row.version) : json(nullptr)}, {"status", status}};
        }
        if (outdated_only && !outdated) continue;
        list.push_back(ojson{{"device", id}, {"fleet", d.fleet}, {"wave", d.wave}, {"online", d.online},
                             {"platform", d.platform}, {"agent_version", d.agent_version}, {"components", comps}});
    }
    ojson sk = ojson::object();
    for (const auto& [c, versions] : skew) sk[c] = versions;
    return ojson{{"devices", list}, {"skew", sk}};
}

}  // namespace ota::controller
