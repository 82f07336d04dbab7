// Every MQTT topic name of the protocol, in one place (docs/protocol.md describes each).
// The prefix is configurable ("ota/v1" by default); names inside topics (component, channel,
// fleet, wave, device, rollout id) must be valid segments.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "ota/error.hpp"

namespace ota {

// A topic segment: 1..64 characters of [A-Za-z0-9._-]. This excludes '/', '+', '#', spaces
// and anything an ACL pattern could be confused by.
[[nodiscard]] bool is_valid_segment(std::string_view name) noexcept;
// The same check as an error that names what the value is: "component 'a/b': ...".
[[nodiscard]] Expected<void> check_segment(std::string_view what, std::string_view name);

class Topics {
public:
    static constexpr std::string_view default_prefix = "ota/v1";
    explicit Topics(std::string prefix = std::string(default_prefix));

    [[nodiscard]] const std::string& prefix() const { return prefix_; }

    [[nodiscard]] std::string release(std::string_view component, std::string_view channel) const;
    [[nodiscard]] std::string releases_filter() const;  // <prefix>/releases/+/+
    [[nodiscard]] std::string wave(std::string_view fleet, std::string_view wave,
                                   std::string_view component) const;
    [[nodiscard]] std::string waves_filter(std::string_view fleet, std::string_view wave) const;  // .../+
    // <prefix>/fleets/<fleet>/policy: the fleet's effective policy (retained; not for devices)
    [[nodiscard]] std::string fleet_policy(std::string_view fleet) const;
    [[nodiscard]] std::string assignment(std::string_view device) const;
    [[nodiscard]] std::string cmd(std::string_view device) const;
    [[nodiscard]] std::string status(std::string_view device, std::string_view component) const;
    [[nodiscard]] std::string status_filter() const;  // <prefix>/devices/+/status/+
    [[nodiscard]] std::string inventory(std::string_view device) const;
    [[nodiscard]] std::string online(std::string_view device) const;
    [[nodiscard]] std::string rollout(std::string_view rollout_id) const;
    [[nodiscard]] std::string alert(std::string_view rollout_id) const;
    // Requests of one operator identity: <prefix>/control/request/<user>. The broker's ACL lets
    // each identity write only its own, so <user> is the broker-authenticated actor.
    [[nodiscard]] std::string control_request(std::string_view user) const;
    [[nodiscard]] std::string control_request_filter() const;  // <prefix>/control/request/+
    // Read-only requests (rollouts, status, devices, audit, policy): <prefix>/control/query/<user>.
    // Every console user may write its own, viewers included; the controller answers only the
    // commands that change nothing there.
    [[nodiscard]] std::string control_query(std::string_view user) const;
    [[nodiscard]] std::string control_query_filter() const;  // <prefix>/control/query/+
    [[nodiscard]] std::string control_reply(std::string_view client) const;
    [[nodiscard]] std::string keyset() const;  // <prefix>/keyset: the root-signed release keys (retained)
    // <prefix>/summary: the controller's fleet counts per component and state (retained)
    [[nodiscard]] std::string summary() const;

    // The parts of a topic under the prefix, for routing incoming messages.
    enum class Kind { release, wave, assignment, cmd, status, inventory, online, rollout, alert,
                      control_request, control_query, control_reply, keyset, summary };
    struct Parsed {
        Kind kind;
        std::string a;  // component | fleet | device | rollout id | client | user (control_request, control_query)
        std::string b;  // channel | wave | component (status)
        std::string c;  // component (wave)
    };
    [[nodiscard]] std::optional<Parsed> parse(std::string_view topic) const;

private:
    std::string prefix_;
};

}  // namespace ota
