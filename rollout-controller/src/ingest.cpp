// The engine's message handlers: releases, devices' online, inventory and status.
#include <algorithm>
#include <cmath>

#include "engine_internal.hpp"
#include "ota/json.hpp"

namespace ota::controller {
using namespace detail;

bool is_failure_report(std::string_view topic, std::string_view payload) {
    if (topic.find("/status/") == std::string_view::npos) return false;
    constexpr std::string_view key = "\"stage\"";
    for (auto at = payload.find(key); at != std::string_view::npos; at = payload.find(key, at + 1)) {
        auto rest = payload.substr(at + key.size());
        const auto value = rest.find_first_not_of(" \t\r\n");
        if (value == std::string_view::npos || rest[value] != ':') continue;
        rest = rest.substr(value + 1);
        const auto quote = rest.find_first_not_of(" \t\r\n");
        if (quote == std::string_view::npos || rest[quote] != '"') continue;
        rest = rest.substr(quote + 1);
        for (std::string_view stage : {"failed\"", "rolled_back\"", "rejected\""})
            if (rest.starts_with(stage)) return true;
        return false;
    }
    return false;
}

// ---------------------------------------------------------------------------------------------
// Messages

void Engine::on_message(const mqtt::Message& message, TimePoint now) {
    const auto parsed = topics_.parse(message.topic);
    if (!parsed) return count("unknown_topic");
    if (message.payload.empty()) return;  // a retained message being cleared
    // The handlers read every field without throwing; this guard is the last line: what a message
    // could make a handler throw (a JSON access, a bad conversion) is counted and dropped, and the
    // controller goes on. A failing store (SQLite's runtime errors) is not caught here: the
    // service stops rather than run on state it could not write.
    try {
        dispatch(*parsed, message, now);
    } catch (const nlohmann::json::exception& e) {
        count("handler_error");
        if (should_log("handler error", now))
            lg.error("message could not be handled; dropped",
                     {{"topic", message.topic}, {"bytes", std::to_string(message.payload.size())}, {"error", e.what()}});
    } catch (const std::logic_error& e) {
        count("handler_error");
        if (should_log("handler error", now))
            lg.error("message could not be handled; dropped",
                     {{"topic", message.topic}, {"bytes", std::to_string(message.payload.size())}, {"error", e.what()}});
    }
}

void Engine::dispatch(const Topics::Parsed& parsed, const mqtt::Message& message, TimePoint now) {
    switch (parsed.kind) {
        case Topics::Kind::release: return on_release(message.topic, message.payload, now);
        case Topics::Kind::inventory: return on_inventory(parsed.a, message.payload, message.retained, now);
        case Topics::Kind::online: return on_online(parsed.a, message.payload, now);
        case Topics::Kind::status: return on_status(parsed.a, parsed.b, message.payload, now);
        case Topics::Kind::control_request: return on_control(parsed.a, message.payload, now, Access::act);
        case Topics::Kind::control_query: return on_control(parsed.a, message.payload, now, Access::read);
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
    summary_.release(m.component, m.channel, m.version, m.version_scheme);
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
    const auto online = j ? bool_field(*j, "online") : std::nullopt;
    if (!online) {
        count("malformed");
        if (should_log("malformed online", now))
            lg.warn("malformed online message dropped",
                    {{"device", device}, {"error", j ? "online: expected true or false" : j.error().message}});
        return;
    }
    auto& d = touch_device(device, now);
    d.online = *online;
    if (const auto v = str_or(*j, "agent_version"); !v.empty()) d.agent_version = v;
    place_device(d, now);
    store_.put_device(d);
}

void Engine::on_inventory(const std::string& device, const std::string& payload, bool retained, TimePoint now) {
    if (payload.size() > cfg_.max_payload) return count("oversize");
    auto j = parse_json(payload, "inventory of " + device);
    if (!j) {
        count("malformed");
        if (should_log("malformed inventory", now))
            lg.warn("malformed inventory dropped", {{"device", device}, {"error", j.error().message}});
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
    if (r.ok() && comps && comps->size() > cfg_.max_components_per_device) {
        count("too_many_components");
        if (should_log("too many components", now))
            lg.warn("inventory with too many components dropped",
                    {{"device", device}, {"components", std::to_string(comps->size())},
                     {"max_components_per_device", std::to_string(cfg_.max_components_per_device)}});
        return;
    }
    if (!r.ok()) {
        count("malformed");
        if (should_log("malformed inventory", now))
            lg.warn("malformed inventory dropped", {{"device", device}, {"error", r.error()->message}});
        return;
    }
    auto& d = touch_device(device, now);
    d.platform = platform;
    d.agent_version = agent_version;
    d.labels = labels;
    d.components = *comps;
    d.has_inventory = true;
    // A live inventory comes from a device that is up; a retained one may be older than the
    // device's last will (online false), which it must not undo.
    if (!retained) d.online = true;
    place_device(d, now);
    store_.put_device(d);
    count("inventory");
}

void Engine::place_device(DeviceRow& d, TimePoint now) {
    summary_.mark();  // online state, inventory or fleet may have changed
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
            m.wave = r->all_at_once ? 0 : fleet ? fleet->wave_of(d.id, [&] {
                std::map<std::string, std::string> l;
                for (const auto& [k, v] : d.labels.items())
                    if (v.is_string()) l[k] = v.get<std::string>();
                return l;
            }()) : r->row.waves.size() - 1;
            if (m.wave >= r->row.waves.size()) m.wave = r->row.waves.size() - 1;
            m.state = at_or_past_target(d, *r) ? MemberState::done : MemberState::pending;
            m.updated = now;
            store_.put_member(m);
            add_member(*r, std::move(m), now);
        } else if (!is_final(it->second.state) && at_or_past_target(d, *r)) {
            update_member(*r, it->second, now, [&](MemberRow& m) {
                m.state = MemberState::done;
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
        if (should_log("oversize status", now))
            lg.warn("oversize status dropped", {{"device", device}, {"bytes", std::to_string(payload.size())}});
        return;
    }
    auto j = parse_json(payload, "status of " + device);
    std::string problem;
    const nlohmann::json* error = j ? field(*j, "error") : nullptr;
    if (!j) problem = j.error().message;
    else if (!j->is_object()) problem = "not a JSON object";
    else if (!int_field(*j, "seq") || *int_field(*j, "seq") < 0) problem = "seq: expected a non-negative 64-bit integer";
    else if (str_or(*j, "stage").empty()) problem = "stage: expected a non-empty string";
    else if (field(*j, "rollout") && !field(*j, "rollout")->is_string()) problem = "rollout: expected a string";
    else if (field(*j, "device") && str_or(*j, "device") != device) problem = "device: does not match the topic";
    else if (error && !error->is_null() && !error->is_object()) problem = "error: expected an object";
    else if (error && field(*error, "code") && !field(*error, "code")->is_string()) problem = "error.code: expected a string";
    else if (field(*j, "progress") && !field(*j, "progress")->is_number()) problem = "progress: expected a number";
    if (!problem.empty()) {
        count("malformed");
        if (should_log("malformed status", now))
            lg.warn("malformed status dropped", {{"device", device}, {"component", component}, {"error", problem}});
        return;
    }
    if (!devices_.contains(device)) {
        count("unknown_device");
        if (should_log("unknown device", now))
            lg.warn("status from an unknown device dropped", {{"device", device}, {"component", component}});
        return;
    }
    if (!seqs_.contains({device, component}) && components_seen(device) >= cfg_.max_components_per_device) {
        count("too_many_components");
        if (should_log("too many components", now))
            lg.warn("status for one component too many dropped",
                    {{"device", device}, {"component", component},
                     {"max_components_per_device", std::to_string(cfg_.max_components_per_device)}});
        return;
    }
    const auto seq = *int_field(*j, "seq");
    auto& last = seqs_[{device, component}];
    if (seq <= last) {
        count(seq == last ? "duplicate" : "out_of_order");
        return;
    }
    last = seq;
    store_.put_seq(device, component, seq);
    summary_.stage(device, component, str_or(*j, "stage"));
    const auto rollout = str_or(*j, "rollout");
    auto rit = rollouts_.find(rollout);
    if (rit == rollouts_.end() || rit->second->row.component != component ||
        !rit->second->members.contains(device)) {
        count("other_rollout");
        lg.debug("status for another rollout", {{"device", device}, {"component", component}, {"rollout", rollout}});
        return;
    }
    auto& r = *rit->second;
    auto& m = r.members.at(device);
    const auto stage = str_or(*j, "stage");
    const auto code = error ? str_or(*error, "code") : std::string();
    const auto progress = int_field(*j, "progress");
    update_member(r, m, now, [&](MemberRow& mm) {
        mm.stage = stage;
        mm.state = state_of_stage(stage, code);
        mm.error = code;
        if (progress && *progress >= 0 && *progress <= 100) mm.progress = static_cast<int>(*progress);
        mm.updated = now;
    });
    store_.put_member(m);
    count("applied");
    if (is_live(r.row.state)) touched_.insert(r.row.id);  // evaluated once per batch (flush)
}

// How many component names of `device` have status rows (counted up to the bound, not past it).
std::size_t Engine::components_seen(const std::string& device) const {
    std::size_t n = 0;
    for (auto it = seqs_.lower_bound({device, std::string()}); it != seqs_.end() && it->first.first == device; ++it)
        if (++n >= cfg_.max_components_per_device) break;
    return n;
}

void Engine::flush(TimePoint now) {
    for (const auto& id : touched_)
        if (auto it = rollouts_.find(id); it != rollouts_.end() && it->second->row.state == RolloutState::active) evaluate(*it->second, now);
    touched_.clear();
}

}  // namespace ota::controller
