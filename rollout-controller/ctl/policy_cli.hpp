// ota-ctl's fleet policy subcommands (docs/controller.md, "Fleet policy"): policy, window-set,
// window-delete, strategy-set, policy-reset. They build one control request each; main.cpp
// sends it like every other request.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace ota::ctl {

class PolicyCli {
public:
    explicit PolicyCli(CLI::App& app);
    // The request of the policy subcommand on the command line, if it was one of them.
    [[nodiscard]] std::optional<nlohmann::json> request() const;
    // The reply's result as tables (main prints --json itself).
    void print(const nlohmann::json& result) const;

private:
    CLI::App *policy_{}, *window_set_{}, *window_delete_{}, *strategy_set_{}, *reset_{};
    std::string fleet_, wave_, start_, end_, strategy_;
    std::vector<std::string> days_, approval_;
    bool no_approval_{false};
};

}  // namespace ota::ctl
