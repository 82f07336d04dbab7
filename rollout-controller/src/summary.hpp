// The fleet summary (docs/protocol.md, "Fleet summary"): per component, how many devices are up
// to date, outdated, updating, failed, offline or unknown, over the whole installation and per
// fleet. The controller publishes it retained on <prefix>/summary so that a page (or a script)
// has the counts of 10,000 devices in one message instead of 30,000.
//
// Pure: the engine feeds it releases and stages and hands it the device registry; document()
// counts. The rule is the web console's (web-console/src/derive.mjs), so both say the same:
//   target of a device's component: the release last seen on releases/<component>/<channel of
//     the device's fleet>, else the newest release of the component over all channels;
//   state, first match: offline (its last will) > updating (an in-progress stage) > up to date
//     (installed >= target) > failed (last stage failed) > outdated (installed < target) > unknown.
// The console's rule has one more step the controller leaves out: the release offered on the
// device's wave topic when its fleet's channel has none (only stale retained offers of an older
// configuration can hit it).
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "ota/time.hpp"
#include "ota/version.hpp"
#include "policy.hpp"
#include "states.hpp"
#include "store.hpp"

namespace ota::controller {

// Every DeviceState (states.hpp), in the order of the document's counts.
inline constexpr auto device_states = [] {
    std::array<DeviceState, detail::device_names.size()> out{};
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = detail::device_names[i].first;
    return out;
}();

// What a reported stage says about the device's component (the console's STAGES_* lists).
enum class StageClass : std::uint8_t { other, in_progress, failed };
[[nodiscard]] StageClass classify_stage(std::string_view stage) noexcept;

struct StateCounts {
    std::array<std::uint64_t, device_states.size()> n{};
    std::uint64_t total{0};
    void add(DeviceState s) { ++n[static_cast<std::size_t>(s)], ++total; }
    [[nodiscard]] std::uint64_t operator[](DeviceState s) const { return n[static_cast<std::size_t>(s)]; }
    [[nodiscard]] nlohmann::ordered_json to_json() const;
};

class Summary {
public:
    // A verified release on releases/<component>/<channel>: it replaces the one there before.
    void release(const std::string& component, const std::string& channel, const std::string& version,
                 VersionScheme scheme);
    // The last stage a device reported for a component, in any rollout or none.
    void stage(const std::string& device, const std::string& component, std::string_view stage);

    // The retained document: {"schema":1,"at","devices","needs_update","components":{c:{state:n,..,"total"}},
    // "fleets":{f:{"devices","needs_update","components":{..}}}}. fleet_channels: fleet -> its channel.
    [[nodiscard]] nlohmann::ordered_json document(const std::map<std::string, DeviceRow>& devices,
                                                  const std::map<std::string, std::string>& fleet_channels,
                                                  Timestamp at) const;

    // Something the counts depend on changed since the last document (the engine also marks it
    // when a device's inventory, online state or fleet changes).
    void mark() { dirty_ = true; }
    [[nodiscard]] bool dirty() const { return dirty_; }
    void clean() { dirty_ = false; }

private:
    struct Release {
        std::string version;
        VersionScheme scheme{VersionScheme::semver};
    };
    struct Target {
        const Release* release{nullptr};
        std::optional<Version> version;  // the release's version, parsed once per document
    };
    using Targets = std::map<std::pair<std::string, std::string>, Target>;  // (channel or "", component)
    [[nodiscard]] Targets targets(const std::map<std::string, std::string>& fleet_channels) const;
    // cmp: the installed version against the target (nullopt: either missing, or they do not order)
    [[nodiscard]] DeviceState state_of(const DeviceRow& d, const std::string& component,
                                       std::optional<std::strong_ordering> cmp) const;

    std::map<std::pair<std::string, std::string>, Release> releases_;        // (component, channel) -> last seen
    std::map<std::pair<std::string, std::string>, StageClass> stages_;       // (device, component) -> last stage
    bool dirty_{true};
};

}  // namespace ota::controller
