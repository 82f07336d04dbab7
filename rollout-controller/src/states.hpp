// The controller's states: of a rollout, of a wave, and of a device within a rollout (a member).
// One to_string each (the names on the wire, in SQLite and in docs/controller.md) and one parse.
#pragma once

#include <array>
#include <optional>
#include <string_view>
#include <utility>

namespace ota::controller {

enum class RolloutState { active, paused, halted, completed, aborted, superseded };
// A wave's own state; `paused` appears only in wave messages (the wave of a paused rollout).
enum class WaveState { pending, waiting_approval, waiting_window, open, soaking, done, halted, paused, aborted, superseded };
// pending: nothing reported yet; done: already at (or past) the target version.
enum class MemberState { pending, in_progress, succeeded, done, failed };
// A device's component as the fleet summary counts it (summary.hpp; the web console's states).
enum class DeviceState { up_to_date, outdated, updating, failed, offline, unknown };

namespace detail {
template <class E, std::size_t N>
constexpr std::string_view name_of(const std::array<std::pair<E, std::string_view>, N>& names, E e) {
    for (const auto& [v, n] : names)
        if (v == e) return n;
    return "unknown";
}
template <class E, std::size_t N>
constexpr std::optional<E> parse_name(const std::array<std::pair<E, std::string_view>, N>& names, std::string_view s) {
    for (const auto& [v, n] : names)
        if (n == s) return v;
    return std::nullopt;
}
inline constexpr std::array<std::pair<RolloutState, std::string_view>, 6> rollout_names{{
    {RolloutState::active, "active"}, {RolloutState::paused, "paused"}, {RolloutState::halted, "halted"},
    {RolloutState::completed, "completed"}, {RolloutState::aborted, "aborted"}, {RolloutState::superseded, "superseded"}}};
inline constexpr std::array<std::pair<WaveState, std::string_view>, 10> wave_names{{
    {WaveState::pending, "pending"}, {WaveState::waiting_approval, "waiting_approval"},
    {WaveState::waiting_window, "waiting_window"}, {WaveState::open, "open"}, {WaveState::soaking, "soaking"},
    {WaveState::done, "done"}, {WaveState::halted, "halted"}, {WaveState::paused, "paused"},
    {WaveState::aborted, "aborted"}, {WaveState::superseded, "superseded"}}};
inline constexpr std::array<std::pair<MemberState, std::string_view>, 5> member_names{{
    {MemberState::pending, "pending"}, {MemberState::in_progress, "in_progress"}, {MemberState::succeeded, "succeeded"},
    {MemberState::done, "done"}, {MemberState::failed, "failed"}}};
inline constexpr std::array<std::pair<DeviceState, std::string_view>, 6> device_names{{
    {DeviceState::up_to_date, "up_to_date"}, {DeviceState::outdated, "outdated"}, {DeviceState::updating, "updating"},
    {DeviceState::failed, "failed"}, {DeviceState::offline, "offline"}, {DeviceState::unknown, "unknown"}}};
}  // namespace detail

[[nodiscard]] constexpr std::string_view to_string(RolloutState s) { return detail::name_of(detail::rollout_names, s); }
[[nodiscard]] constexpr std::string_view to_string(WaveState s) { return detail::name_of(detail::wave_names, s); }
[[nodiscard]] constexpr std::string_view to_string(MemberState s) { return detail::name_of(detail::member_names, s); }
[[nodiscard]] constexpr std::string_view to_string(DeviceState s) { return detail::name_of(detail::device_names, s); }
[[nodiscard]] constexpr std::optional<RolloutState> parse_rollout_state(std::string_view s) {
    return detail::parse_name(detail::rollout_names, s);
}
[[nodiscard]] constexpr std::optional<WaveState> parse_wave_state(std::string_view s) {
    return detail::parse_name(detail::wave_names, s);
}
[[nodiscard]] constexpr std::optional<MemberState> parse_member_state(std::string_view s) {
    return detail::parse_name(detail::member_names, s);
}

// A rollout an operator can still act on, whose members are kept in memory.
[[nodiscard]] constexpr bool is_live(RolloutState s) {
    return s == RolloutState::active || s == RolloutState::paused || s == RolloutState::halted;
}
// A wave whose message has been published (devices may have received it).
[[nodiscard]] constexpr bool is_published(WaveState s) {
    return s == WaveState::open || s == WaveState::soaking || s == WaveState::done || s == WaveState::halted;
}
// A member that will report nothing more for this rollout unless retried.
[[nodiscard]] constexpr bool is_final(MemberState s) {
    return s == MemberState::succeeded || s == MemberState::done || s == MemberState::failed;
}

}  // namespace ota::controller
