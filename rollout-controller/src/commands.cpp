// The engine's operator commands (control/request/<user> -> control/reply/<client>).
#include <algorithm>
#include <cmath>

#include "engine_internal.hpp"
#include "ota/json.hpp"

namespace ota::controller {
using namespace detail;

// ---------------------------------------------------------------------------------------------
// Operator commands

namespace {
// The commands that change nothing: the only ones answered on control/query/<user>.
bool is_query(std::string_view cmd) {
    return cmd == "rollouts" || cmd == "status" || cmd == "devices" || cmd == "audit" || cmd == "policy";
}
}  // namespace

void Engine::on_control(const std::string& topic_actor, const std::string& payload, TimePoint now, Access access) {
    auto j = parse_json(payload, "control request");
    if (!j || !j->is_object()) {
        count("control_malformed");
        if (should_log("malformed control request", now))
            lg.warn("malformed control request dropped", {{"error", j ? "not an object" : j.error().message}});
        return;
    }
    const auto reply_to = str_or(*j, "reply_to");
    const auto reply_prefix = topics_.control_reply("");
    ojson reply;
    reply["id"] = str_or(*j, "id");
    const auto cmd = str_or(*j, "cmd");
    // The actor is the topic's user (the ACL lets each identity write only its own request
    // topic); an "actor" field in the payload is ignored.
    const std::string actor = is_valid_segment(topic_actor) ? topic_actor : "unknown";
    Expected<ojson> result = fail(ErrorCode::request_invalid, "missing cmd");
    if (!cmd.empty() && access == Access::read && !is_query(cmd))
        result = fail(ErrorCode::read_only, "\"" + cmd + "\" changes the fleet: send it on control/request/" + actor +
                                                     ", not on control/query/ (read-only: rollouts status devices audit policy)");
    else if (!cmd.empty())
        result = command(cmd, *j, actor, now);
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
        if (should_log("control reply_to", now))
            lg.warn("control request without a valid reply_to; no reply sent", {{"reply_to", reply_to}});
        return;
    }
    out_.push_back({reply_to, reply.dump(), false});
}

Expected<Engine::Rollout*> Engine::find_rollout(const nlohmann::json& request) {
    const auto id = str_or(request, "rollout");
    if (id.empty()) return fail(ErrorCode::request_invalid, "missing rollout (a string)");
    auto it = rollouts_.find(id);
    if (it == rollouts_.end()) return fail(ErrorCode::not_found, "no rollout " + id);
    return it->second.get();
}

void Engine::resume(Rollout& r, const std::string& actor, TimePoint now) {
    auto& w = r.row.waves[r.row.wave];
    const auto c = counts(r, r.row.wave);
    w.base_failed = c.failed + c.silent;
    w.base_finished = c.finished();
    const bool was_halted = r.row.state == RolloutState::halted;
    r.row.state = RolloutState::active;
    r.row.reason.clear();
    if (w.state == WaveState::halted || w.state == WaveState::paused) w.state = WaveState::open;
    save(r, now);
    if (is_published(w.state)) publish_wave(r, r.row.wave, WaveState::open);
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
        if (is_live(r->row.state)) scan_silent(*r, now);
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
    if (auto policy = policy_command(cmd, request, actor, now)) return std::move(*policy);
    if (cmd == "devices") return devices_report(bool_field(request, "outdated").value_or(false));
    if (cmd == "audit") {
        const auto rollout = str_or(request, "rollout");
        const auto limit = std::clamp<std::int64_t>(int_field(request, "limit").value_or(100), 1, 10000);
        ojson list = ojson::array();
        for (const auto& a : store_.audit_log(rollout, static_cast<std::size_t>(limit)))
            list.push_back(ojson{{"id", a.id}, {"ts", iso(a.ts)}, {"actor", a.actor}, {"action", a.action},
                                 {"rollout", a.rollout}, {"detail", a.detail}});
        return list;
    }
    if (cmd == "update") {
        const auto device = str_or(request, "device"), component = str_or(request, "component");
        auto d = devices_.find(device);
        if (d == devices_.end()) return fail(ErrorCode::not_found, "no device " + device);
        if (d->second.fleet.empty()) return fail(ErrorCode::state_conflict, "device " + device + " is in no fleet");
        auto* r = const_cast<Rollout*>(latest_rollout(d->second.fleet, component));
        if (!r) return fail(ErrorCode::not_found, "no release of " + component + " for fleet " + d->second.fleet);
        if (r->row.state == RolloutState::completed && !r->members.contains(device)) {
            // A device that finished before the rollout completed: its member was freed but is
            // still in the counts; back in memory (as counted) its new reports move them.
            if (auto m = store_.member(r->row.id, device)) r->members.emplace(device, std::move(*m));
        } else if (is_live(r->row.state) && !r->members.contains(device)) {
            MemberRow m;
            m.rollout = r->row.id;
            m.device = device;
            m.wave = r->row.wave;
            m.state = MemberState::pending;
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
                                                    "\" (rollouts status devices audit update approve pause resume retry abort "
                                                    "policy window_set window_delete strategy_set policy_reset)");
    auto found = find_rollout(request);
    if (!found) return std::unexpected(found.error());
    auto& r = **found;
    const auto st = r.row.state;
    const std::string name(to_string(st));
    if (cmd == "approve") {
        for (std::size_t i = r.row.wave; i < r.row.waves.size(); ++i) {
            auto& w = r.row.waves[i];
            const auto* p = policy(r, i);
            if (!p || w.approved || !p->approval || w.state == WaveState::done) continue;
            if (!is_live(st)) return fail(ErrorCode::state_conflict, "rollout " + r.row.id + " is " + name);
            w.approved = true;
            save(r, now);
            audit(now, actor, "approved", &r, "wave " + w.name);
            evaluate(r, now);
            return ojson{{"rollout", r.row.id}, {"approved", w.name}};
        }
        return fail(ErrorCode::state_conflict, "rollout " + r.row.id + " has no wave waiting for approval");
    }
    if (cmd == "pause") {
        if (st != RolloutState::active) return fail(ErrorCode::state_conflict, "rollout " + r.row.id + " is " + name + ", not active");
        r.row.state = RolloutState::paused;
        auto& w = r.row.waves[r.row.wave];
        if (w.state == WaveState::open || w.state == WaveState::soaking) publish_wave(r, r.row.wave, WaveState::paused);
        save(r, now);
        audit(now, actor, "paused", &r, "");
    } else if (cmd == "resume") {
        if (st != RolloutState::paused && st != RolloutState::halted)
            return fail(ErrorCode::state_conflict, "rollout " + r.row.id + " is " + name + ", not paused or halted");
        resume(r, actor, now);
        audit(now, actor, "resumed", &r, "");
        evaluate(r, now);
    } else if (cmd == "retry") {
        if (!is_live(st)) return fail(ErrorCode::state_conflict, "rollout " + r.row.id + " is " + name);
        std::uint64_t n = 0;
        for (auto& [id, m] : r.members) {
            if (m.wave > r.row.wave) continue;
            if (m.state != MemberState::failed && !r.silent.contains(id)) continue;
            update_member(r, m, now, [&](MemberRow& mm) {
                mm.state = MemberState::pending;
                mm.stage.clear();
                mm.error.clear();
                mm.updated = now;
            });
            store_.put_member(m);
            out_.push_back({topics_.cmd(id), ojson{{"cmd", "retry"}, {"component", r.row.component}}.dump(), false});
            ++n;
        }
        if (st == RolloutState::halted || st == RolloutState::paused) resume(r, actor, now);
        auto& w = r.row.waves[r.row.wave];
        w.base_failed = 0;
        w.base_finished = 0;
        save(r, now);
        audit(now, actor, "retried", &r, std::to_string(n) + " devices");
        evaluate(r, now);
        return ojson{{"rollout", r.row.id}, {"retried", n}};
    } else if (cmd == "abort") {
        if (!is_live(st)) return fail(ErrorCode::state_conflict, "rollout " + r.row.id + " is " + name);
        const bool was_halted = st == RolloutState::halted;
        end_waves(r, WaveState::aborted);
        r.row.state = RolloutState::aborted;
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
    return ojson{{"rollout", r.row.id}, {"state", to_string(r.row.state)}};
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
