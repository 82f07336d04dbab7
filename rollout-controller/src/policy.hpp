// The controller's configuration and rollout policy (docs/controller.md, "Configuration").
//
// Fleets are tried in config order; a device belongs to the first fleet whose selector matches
// it (labels or explicit ids; no selector = every device). Inside its fleet a device belongs to
// the first wave whose selector matches: explicit ids, labels, or a percentage of the fleet
// through a stable hash of "<fleet>/<device>" (percentages are cumulative: canary 5 -> early 25
// -> broad 100 puts 5 %, 20 % and 75 % of the devices in the three waves, the same devices every
// time). A device that matches no wave belongs to the last one.
//
// Policy of a wave for a component, later layers overriding earlier ones key by key:
//   built-in defaults <- fleet "defaults" <- the wave's own fields
//   <- components.<component>.defaults <- components.<component>.waves.<wave>
//   <- operator overrides (fleet_policy.hpp: maintenance windows and approval set with ota-ctl)
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ota/error.hpp"
#include "ota/window.hpp"
#include "states.hpp"

namespace ota::controller {

struct WavePolicy {
    double success_percent{100};              // of the wave's devices succeeded (or already at target) to advance
    std::optional<std::uint64_t> max_failures;  // halt when this many devices failed
    std::optional<double> max_failure_percent;  // halt when this percent of the finished devices failed...
    std::uint64_t min_finished{1};              // ...once at least this many finished
    std::chrono::seconds soak{0};               // wait after the success threshold before the next wave
    std::chrono::seconds device_timeout{3600};  // a device not finished this long after its wave opened is silent (failed)
    bool approval{false};                       // the wave opens only after `ota-ctl approve`
    std::optional<TimeWindow> window;           // the wave opens only inside this UTC window
    [[nodiscard]] nlohmann::ordered_json to_json() const;
};

// How a fleet's rollouts are shaped: the config's waves one after the other, or one wave named
// `all` holding every device of the fleet (docs/controller.md, "Strategy").
enum class Strategy { staggered, all_at_once };
namespace detail {
inline constexpr std::array<std::pair<Strategy, std::string_view>, 2> strategy_names{{
    {Strategy::staggered, "staggered"}, {Strategy::all_at_once, "all_at_once"}}};
}
[[nodiscard]] constexpr std::string_view to_string(Strategy s) { return detail::name_of(detail::strategy_names, s); }
[[nodiscard]] constexpr std::optional<Strategy> parse_strategy(std::string_view s) {
    return detail::parse_name(detail::strategy_names, s);
}
// The name of the single wave of an all_at_once rollout.
inline constexpr std::string_view all_wave = "all";

struct WaveDef {
    std::string name;
    std::vector<std::string> devices;           // selector: explicit ids
    std::map<std::string, std::string> labels;  // selector: every label must match
    std::optional<double> percent;              // selector: cumulative percent of the fleet (stable hash)
    nlohmann::json policy;                      // the wave's own policy fields (a layer)
};

struct Fleet {
    std::string name;
    std::string channel{"stable"};
    std::vector<std::string> select_devices;
    std::map<std::string, std::string> select_labels;
    nlohmann::json defaults;                    // policy layer
    std::vector<WaveDef> waves;
    std::map<std::string, nlohmann::json> component_defaults;                      // component -> layer
    std::map<std::string, std::map<std::string, nlohmann::json>> component_waves;  // component -> wave -> layer
    std::map<std::string, nlohmann::json> override_waves;  // wave -> operator layer, over all the others
    Strategy strategy{Strategy::staggered};

    [[nodiscard]] bool selects(const std::string& device, const std::map<std::string, std::string>& labels) const;
    // Index of the device's wave (never out of range: the last wave catches the rest).
    [[nodiscard]] std::size_t wave_of(const std::string& device, const std::map<std::string, std::string>& labels) const;
    // The effective policy of wave `index` for `component`.
    [[nodiscard]] WavePolicy policy(std::size_t index, const std::string& component) const;
};

struct ControllerConfig {
    std::string broker;
    std::string cafile, certfile, keyfile;
    std::string client_id{"controller"};
    std::chrono::seconds keepalive{30};
    std::string topic_prefix{"ota/v1"};
    std::filesystem::path trusted_keys;
    std::filesystem::path database{"/var/lib/ota-controller/controller.db"};
    std::string metrics_listen;  // "127.0.0.1:9464"; empty = no /metrics endpoint
    std::chrono::milliseconds tick{200};            // time-based checks (soak, timeouts, windows)
    std::chrono::milliseconds state_interval{1000};  // rollouts/<id> at most this often while counts change
    std::chrono::milliseconds summary_interval{2000};  // the fleet summary at most this often while it changes
    std::size_t max_payload{64 * 1024};              // larger status/inventory payloads are dropped
    // A device's component names (status topics, inventory entries) past this many are dropped:
    // each becomes state (a seq row, summary counts), and a device chooses its topic names.
    std::size_t max_components_per_device{64};
    std::vector<Fleet> fleets;
    std::string log_format{"plain"};
    std::string log_level{"info"};

    [[nodiscard]] const Fleet* fleet(const std::string& name) const;
    [[nodiscard]] const Fleet* fleet_of(const std::string& device, const std::map<std::string, std::string>& labels) const;
    [[nodiscard]] nlohmann::ordered_json to_json() const;
};

// config_invalid errors name the field path ("controller.fleets[0].waves[1].percent: ...").
[[nodiscard]] Expected<ControllerConfig> parse_controller_config(const nlohmann::json& json);

// Every policy combination of the fleet (each wave, for every component named in it) read as
// the config is read; errors carry `code` and name the field under `path`.
[[nodiscard]] Expected<void> check_fleet_policies(const Fleet& fleet, const std::string& path, ErrorCode code);

// The stable bucket of a device in its fleet: 0..9999 (hundredths of a percent).
[[nodiscard]] std::uint32_t hash_bucket(const std::string& fleet, const std::string& device);

}  // namespace ota::controller
