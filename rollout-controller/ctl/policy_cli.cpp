#include "policy_cli.hpp"

#include <cstdio>

#include "format.hpp"

namespace ota::ctl {

using nlohmann::json;

PolicyCli::PolicyCli(CLI::App& app) {
    policy_ = app.add_subcommand("policy", "Show a fleet's effective policy: strategy, waves, thresholds, soak, windows, overrides");
    policy_->add_option("fleet", fleet_, "Fleet (default: every fleet)");
    window_set_ = app.add_subcommand("window-set", "Create or replace the maintenance window of a wave (UTC)");
    window_set_->add_option("fleet", fleet_, "Fleet")->required();
    window_set_->add_option("wave", wave_, "Wave (\"all\" for the all_at_once strategy)")->required();
    window_set_->add_option("--start", start_, "Opens at HH:MM (UTC)")->required();
    window_set_->add_option("--end", end_, "Closes at HH:MM (UTC); before --start wraps past midnight")->required();
    window_set_->add_option("--days", days_, "Days it opens on (sun mon tue wed thu fri sat; default every day)")->delimiter(',');
    window_delete_ = app.add_subcommand("window-delete", "Delete the maintenance window of a wave: it opens at any time");
    window_delete_->add_option("fleet", fleet_, "Fleet")->required();
    window_delete_->add_option("wave", wave_, "Wave")->required();
    strategy_set_ = app.add_subcommand("strategy-set", "Set a fleet's strategy: staggered (the config's waves) or all_at_once (one wave)");
    strategy_set_->add_option("fleet", fleet_, "Fleet")->required();
    strategy_set_->add_option("strategy", strategy_, "staggered | all_at_once")->required();
    auto* a = strategy_set_->add_option("--approval", approval_, "Waves that need approval before they open (replaces the config's)")->delimiter(',');
    strategy_set_->add_flag("--no-approval", no_approval_, "No wave needs approval")->excludes(a);
    reset_ = app.add_subcommand("policy-reset", "Drop every operator override of a fleet: back to the config file");
    reset_->add_option("fleet", fleet_, "Fleet")->required();
}

std::optional<json> PolicyCli::request() const {
    json req;
    if (policy_->parsed()) {
        req["cmd"] = "policy";
        if (!fleet_.empty()) req["fleet"] = fleet_;
    } else if (window_set_->parsed()) {
        req = {{"cmd", "window_set"}, {"fleet", fleet_}, {"wave", wave_}, {"window", {{"start", start_}, {"end", end_}}}};
        if (!days_.empty()) req["window"]["days"] = days_;
    } else if (window_delete_->parsed()) {
        req = {{"cmd", "window_delete"}, {"fleet", fleet_}, {"wave", wave_}};
    } else if (strategy_set_->parsed()) {
        req = {{"cmd", "strategy_set"}, {"fleet", fleet_}, {"strategy", strategy_}};
        if (!approval_.empty()) req["approval"] = approval_;
        if (no_approval_) req["approval"] = json::array();
    } else if (reset_->parsed()) {
        req = {{"cmd", "policy_reset"}, {"fleet", fleet_}};
    } else {
        return std::nullopt;
    }
    return req;
}

namespace {

// A member of a reply, or an empty value of that kind when the controller sent none (a reply is
// input: a const operator[] on a missing key would be undefined behaviour).
json member(const json& j, const char* key, json fallback) {
    auto it = j.find(key);
    return it == j.end() || it->type() != fallback.type() ? fallback : *it;
}

std::string window_text(const json& w) {
    if (!w.is_object()) return "-";
    std::string days;
    for (const auto& d : member(w, "days", json::array())) days += (days.empty() ? "" : ",") + (d.is_string() ? d.get<std::string>() : d.dump());
    return (days.empty() ? "daily" : days) + " " + str(w, "start") + "-" + str(w, "end");
}

void print_fleet(const json& p) {
    std::string set = "from the config";
    if (const auto by = member(p, "strategy_set", json::object()); !by.empty())
        set = "set by " + str(by, "set_by") + " at " + str(by, "set_at");
    std::printf("fleet %s  channel %s  strategy %s (%s)\n", str(p, "fleet").c_str(), str(p, "channel").c_str(),
                str(p, "strategy").c_str(), set.c_str());
    std::vector<std::vector<std::string>> rows{{"WAVE", "SELECT", "SUCCESS%", "MAX-FAILURES", "MAX-FAILURE%", "MIN-FINISHED",
                                                "TIMEOUT-S", "SOAK-S", "APPROVAL", "WINDOW (UTC)", "OVERRIDDEN"}};
    for (const auto& w : member(p, "waves", json::array())) {
        const auto q = member(w, "policy", json::object());
        std::string by;
        const auto overrides = member(w, "overrides", json::object());  // lives through the loop (not a temporary)
        for (const auto& [field, o] : overrides.items())
            by += (by.empty() ? "" : "; ") + field + " by " + str(o, "set_by") + " " + str(o, "set_at");
        rows.push_back({str(w, "name"), str(w, "select"), str(q, "success_percent"), str(q, "max_failures"),
                        str(q, "max_failure_percent"), str(q, "min_finished"), str(q, "device_timeout_s"), str(q, "soak_s"),
                        q.value("approval", false) ? "required" : "no", q.contains("window") ? window_text(q.at("window")) : "any time",
                        by.empty() ? "-" : by});
    }
    table(rows);
    const auto components = member(p, "components", json::object());
    for (const auto& [c, waves] : components.items()) {
        std::printf("component %s:\n", c.c_str());
        std::vector<std::vector<std::string>> crow{{"  WAVE", "SUCCESS%", "MAX-FAILURES", "MAX-FAILURE%", "SOAK-S", "APPROVAL", "WINDOW (UTC)"}};
        for (const auto& w : waves) {
            const auto q = member(w, "policy", json::object());
            crow.push_back({"  " + str(w, "wave"), str(q, "success_percent"), str(q, "max_failures"), str(q, "max_failure_percent"),
                            str(q, "soak_s"), q.value("approval", false) ? "required" : "no",
                            q.contains("window") ? window_text(q.at("window")) : "any time"});
        }
        table(crow);
    }
    for (const auto& o : member(p, "overrides", json::array()))
        if (!o.value("in_use", true))
            std::printf("unused override %s (no such wave under this strategy), set by %s\n", str(o, "key").c_str(),
                        str(o, "set_by").c_str());
}

}  // namespace

void PolicyCli::print(const json& result) const {
    if (policy_->parsed()) {
        const auto list = result.is_array() ? result : json::array({result});
        for (std::size_t i = 0; i < list.size(); ++i) {
            if (i) std::printf("\n");
            print_fleet(list[i]);
        }
        return;
    }
    if (window_set_->parsed()) std::printf("fleet %s: window of wave %s set\n", fleet_.c_str(), wave_.c_str());
    else if (window_delete_->parsed()) std::printf("fleet %s: wave %s has no window now\n", fleet_.c_str(), wave_.c_str());
    else if (strategy_set_->parsed()) std::printf("fleet %s: strategy %s\n", fleet_.c_str(), str(result, "strategy").c_str());
    else std::printf("fleet %s: back to the config file\n", fleet_.c_str());
    for (const auto& n : member(result, "rollouts", json::array()))
        std::printf("  rollout %s: %s: %s\n", str(n, "rollout").c_str(), str(n, "applies").c_str(), str(n, "why").c_str());
}

}  // namespace ota::ctl
