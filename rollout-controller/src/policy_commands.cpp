// The engine's policy commands (docs/protocol.md, "Fleet policy"): view a fleet's effective
// policy, set and delete maintenance windows, change the strategy. Each change is validated by
// the config's own parser, persisted over the config file (fleet_policy.hpp), audited, published
// retained on fleets/<fleet>/policy and applied to the fleet's live rollouts where it can be;
// the reply says, per live rollout, whether it applies now or from the next rollout, and why.
#include <algorithm>

#include "engine_internal.hpp"
#include "ota/json.hpp"

namespace ota::controller {
using namespace detail;

namespace {

constexpr auto invalid = ErrorCode::request_invalid;

std::string names_of(const Fleet& f) {
    std::string out;
    for (const auto& w : f.waves) out += (out.empty() ? "" : " ") + w.name;
    return out;
}

bool not_opened(WaveState s) {
    return s == WaveState::pending || s == WaveState::waiting_approval || s == WaveState::waiting_window;
}

}  // namespace

Fleet Engine::layout(const Fleet& file, Strategy shape) const {
    auto it = overrides_.find(file.name);
    return effective_fleet(file, it == overrides_.end() ? nullptr : &it->second, shape);
}

Strategy Engine::strategy_of(const std::string& fleet) const {
    auto it = overrides_.find(fleet);
    return it == overrides_.end() ? Strategy::staggered : it->second.strategy();
}

std::optional<ojson> Engine::fleet_policy(const std::string& fleet) const {
    const auto* file = cfg_.fleet(fleet);
    if (!file) return std::nullopt;
    auto it = overrides_.find(fleet);
    return policy_document(*file, it == overrides_.end() ? nullptr : &it->second);
}

void Engine::publish_policy(const Fleet& file) {
    if (auto doc = fleet_policy(file.name)) out_.push_back({topics_.fleet_policy(file.name), doc->dump(), true});
}

// Apply one override change (put a row, or erase a key; "" with no put: every override) to a
// fleet: check the result as the config would be checked, persist, audit, re-layer the live
// rollouts and say what each of them does with it.
Expected<ojson> Engine::change_policy(const std::string& fleet, std::optional<OverrideRow> put, const std::string& erase_key,
                                      const std::string& actor, const std::string& action, const std::string& detail,
                                      TimePoint now) {
    const auto* file = cfg_.fleet(fleet);
    if (!file) return fail(ErrorCode::not_found, "no fleet " + fleet);
    auto next = overrides_[fleet];
    const auto before = next.strategy();
    if (put) next.rows[put->key] = *put;
    else if (erase_key.empty()) next.rows.clear();
    else next.rows.erase(erase_key);
    const auto after = next.strategy();
    for (auto shape : {Strategy::staggered, Strategy::all_at_once})
        if (auto ok = check_fleet_policies(effective_fleet(*file, &next, shape), "request", invalid); !ok)
            return std::unexpected(ok.error());
    const auto live_layout = [&](const Rollout& r) {
        return effective_fleet(*file, &next, r.all_at_once ? Strategy::all_at_once : Strategy::staggered);
    };
    // What each live rollout of the fleet does with the change (before it is made, to compare).
    ojson notes = ojson::array();
    for (auto& [id, r] : rollouts_) {
        if (r->row.fleet != fleet || !is_live(r->row.state)) continue;
        const auto shape = r->all_at_once ? Strategy::all_at_once : Strategy::staggered;
        ojson n{{"rollout", id}};
        if (before != after && shape != after) {
            n["applies"] = "next_rollout";
            n["why"] = "rollout " + id + " runs " + std::string(to_string(shape)) + " (waves " + names_of(live_layout(*r)) +
                       "); its waves are not re-shaped, the " + std::string(to_string(after)) +
                       " strategy applies to the next rollout of the fleet";
            notes.push_back(std::move(n));
            continue;
        }
        const auto old_layout = layout(*file, shape), new_layout = live_layout(*r);
        std::vector<std::string> now_waves, kept_waves;
        for (std::size_t i = 0; i < r->row.waves.size() && i < new_layout.waves.size() && i < old_layout.waves.size(); ++i) {
            if (old_layout.policy(i, r->row.component).to_json() == new_layout.policy(i, r->row.component).to_json()) continue;
            const auto& w = r->row.waves[i];
            (not_opened(w.state) ? now_waves : kept_waves).push_back(w.name + (not_opened(w.state) ? "" : " (" + std::string(to_string(w.state)) + ")"));
        }
        if (now_waves.empty() && kept_waves.empty()) {
            n["applies"] = "no_change";
            n["why"] = "no wave of rollout " + id + " is affected";
        } else if (kept_waves.empty()) {
            n["applies"] = "now";
            n["why"] = "waves that have not opened take the change: " + [&] {
                std::string s;
                for (const auto& w : now_waves) s += (s.empty() ? "" : ", ") + w;
                return s;
            }();
        } else {
            std::string s;
            for (const auto& w : kept_waves) s += (s.empty() ? "" : ", ") + w;
            n["applies"] = now_waves.empty() ? "next_rollout" : "partly";
            n["why"] = "a wave already opened keeps running as it opened: " + s +
                       (now_waves.empty() ? std::string("; the change applies to the next rollout")
                                          : "; waves not opened yet take it");
        }
        notes.push_back(std::move(n));
    }
    if (put) store_.put_override(*put);
    else store_.delete_override(fleet, erase_key);
    overrides_[fleet] = std::move(next);
    if (overrides_[fleet].rows.empty()) overrides_.erase(fleet);
    store_.audit(now, actor, action, "", "fleet " + fleet + (detail.empty() ? "" : ": " + detail));
    lg.info("fleet policy changed", {{"fleet", fleet}, {"action", action}, {"actor", actor}});
    for (auto& [id, r] : rollouts_) {
        if (r->row.fleet != fleet || !is_live(r->row.state)) continue;
        set_policies(*r);
        r->publish_now = true;
        if (r->row.state == RolloutState::active) evaluate(*r, now);
    }
    publish_policy(*file);
    return ojson{{"fleet", fleet}, {"strategy", to_string(strategy_of(fleet))}, {"rollouts", notes},
                 {"policy", *fleet_policy(fleet)}};
}

std::optional<Expected<ojson>> Engine::policy_command(const std::string& cmd, const nlohmann::json& request,
                                                      const std::string& actor, TimePoint now) {
    if (cmd != "policy" && cmd != "window_set" && cmd != "window_delete" && cmd != "strategy_set" && cmd != "policy_reset")
        return std::nullopt;
    // The request is read as the config is read: the same readers, "request.<field>: ..." errors.
    ObjectReader r(request, "request", invalid);
    if (cmd == "policy") {
        const auto fleet = r.opt_str("fleet");
        if (!r.ok()) return std::unexpected(*r.error());
        if (fleet) {
            auto doc = fleet_policy(*fleet);
            if (!doc) return fail(ErrorCode::not_found, "no fleet " + *fleet);
            return *doc;
        }
        ojson list = ojson::array();
        for (const auto& f : cfg_.fleets) list.push_back(*fleet_policy(f.name));
        return list;
    }
    const auto fleet = r.str("fleet");
    if (!r.ok()) return std::unexpected(*r.error());
    const auto* file = cfg_.fleet(fleet);
    if (!file) return fail(ErrorCode::not_found, "no fleet " + fleet);
    if (cmd == "policy_reset") return change_policy(fleet, std::nullopt, "", actor, "policy_reset", "back to the config file", now);
    if (cmd == "strategy_set") {
        const auto name = r.str("strategy");
        if (!r.ok()) return std::unexpected(*r.error());
        const auto strategy = parse_strategy(name);
        if (!strategy) return fail(invalid, "request.strategy: expected staggered or all_at_once, got \"" + name + "\"");
        const auto* approval = r.raw("approval");
        const auto shaped = layout(*file, *strategy);
        json value{{"strategy", name}};
        if (approval) {
            auto list = r.str_list("approval", false);
            if (!r.ok()) return std::unexpected(*r.error());
            for (const auto& w : list)
                if (std::none_of(shaped.waves.begin(), shaped.waves.end(), [&](const WaveDef& d) { return d.name == w; }))
                    return fail(invalid, "request.approval: \"" + w + "\" is not a wave of fleet " + fleet + " under " + name +
                                             " (waves: " + names_of(shaped) + ")");
            value["approval"] = list;
        }
        return change_policy(fleet, OverrideRow{fleet, "strategy", value, actor, now}, "", actor, "strategy_set",
                             value.dump(), now);
    }
    // window_set, window_delete: a wave of either layout (the config's, or `all`).
    const auto wave = r.str("wave");
    if (!r.ok()) return std::unexpected(*r.error());
    const bool known = wave == all_wave || std::any_of(file->waves.begin(), file->waves.end(), [&](const WaveDef& d) { return d.name == wave; });
    if (!known) return fail(ErrorCode::not_found, "fleet " + fleet + " has no wave " + wave + " (waves: " + names_of(*file) +
                                                      "; " + std::string(all_wave) + " under all_at_once)");
    const auto key = window_key(wave);
    if (cmd == "window_set") {
        if (!r.raw("window")) return fail(invalid, "request.window: missing (an object: days, start, end)");
        const auto window = read_window(r, "window");
        if (!r.ok()) return std::unexpected(*r.error());
        const auto value = json::parse(window->to_json().dump());
        return change_policy(fleet, OverrideRow{fleet, key, value, actor, now}, "", actor, "window_set",
                             "wave " + wave + " " + value.dump(), now);
    }
    // window_delete: the wave has no window from now on. The config's window, if any, is hidden
    // by a null override; an operator's window on a wave the config gives none is simply dropped.
    const auto shape = wave == all_wave && !(file->waves.size() == 1 && file->waves[0].name == all_wave) ? Strategy::all_at_once
                                                                                                          : Strategy::staggered;
    const auto with = layout(*file, shape);
    std::size_t idx = 0;
    while (idx < with.waves.size() && with.waves[idx].name != wave) ++idx;
    if (idx == with.waves.size() || !with.policy(idx, "").window)
        return fail(ErrorCode::not_found, "wave " + wave + " of fleet " + fleet + " has no maintenance window");
    auto without = overrides_[fleet];
    if (overrides_[fleet].rows.empty()) overrides_.erase(fleet);
    without.rows.erase(key);
    const auto bare = effective_fleet(*file, &without, shape);
    if (!bare.policy(idx, "").window)
        return change_policy(fleet, std::nullopt, key, actor, "window_delete", "wave " + wave, now);
    return change_policy(fleet, OverrideRow{fleet, key, nullptr, actor, now}, "", actor, "window_delete", "wave " + wave, now);
}

}  // namespace ota::controller
