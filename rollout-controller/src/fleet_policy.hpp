// A fleet's effective policy: the config file's fleet with the operators' overrides over it
// (maintenance windows per wave, the strategy and which waves need approval), persisted in
// SQLite (Store::put_override) and published retained on fleets/<fleet>/policy.
//
// The config file stays the default underneath: an override replaces one field of one wave
// (window) or the fleet's strategy and approval list, and nothing else. When the file changes
// later, its new thresholds, soak and selectors apply at once under the overrides; an override
// for a wave the file no longer has is kept but unused (the policy document marks it so) until
// the wave comes back or `policy_reset` drops it.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "policy.hpp"
#include "store.hpp"

namespace ota::controller {

struct FleetOverrides {
    std::map<std::string, OverrideRow> rows;  // key -> row

    [[nodiscard]] Strategy strategy() const;  // staggered when no override
    // Waves that need approval, when the operator set the list for `shape`.
    [[nodiscard]] std::optional<std::vector<std::string>> approval(Strategy shape) const;
};

[[nodiscard]] inline std::string window_key(const std::string& wave) { return "window/" + wave; }

// The fleet as a rollout of `shape` sees it: the config's waves (staggered) or one wave `all`
// (all_at_once), with the operator's layers on top. `overrides` may be null.
[[nodiscard]] Fleet effective_fleet(const Fleet& file, const FleetOverrides* overrides, Strategy shape);

// The retained policy document of a fleet (docs/protocol.md, "Fleet policy").
[[nodiscard]] nlohmann::ordered_json policy_document(const Fleet& file, const FleetOverrides* overrides);

}  // namespace ota::controller
