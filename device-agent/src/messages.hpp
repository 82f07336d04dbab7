// What the agent reads from the broker, as pure functions that never throw: one per message kind
// (docs/protocol.md). The agent's handlers (offers.cpp) call them first; a fuzz target can call
// them directly, without a broker:
//   parse_assignment(payload)         devices/<id>/assignment
//   parse_wave(payload, component)    fleets/<fleet>/waves/<wave>/<component>
//   parse_cmd(payload)                devices/<id>/cmd
// Every error message is printable (bytes of the input that are not UTF-8 appear as \xNN).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ota/error.hpp"

namespace ota::agent {

struct Assignment {
    std::string fleet;
    std::string wave;
};
// {"fleet": "<segment>", "wave": "<segment>"}; other fields are ignored.
[[nodiscard]] Expected<Assignment> parse_assignment(std::string_view payload) noexcept;

// {"rollout": "r-...", "state": "open" | "halted" | ..., "release": <signed envelope>}. The
// release is an object (or a string holding one); `envelope` is its JSON text, verified later.
struct WaveOffer {
    std::string rollout;  // as far as it could be read, also when `error` is set
    std::string state;
    std::string envelope;
    std::optional<Error> error;  // manifest_invalid / json_invalid naming the field
};
[[nodiscard]] WaveOffer parse_wave(std::string_view payload, std::string_view component) noexcept;

enum class CommandKind { check, report, retry, install, rollback };
[[nodiscard]] std::string_view to_string(CommandKind kind);

struct Command {
    CommandKind kind{CommandKind::check};
    std::string component;  // required for retry, install, rollback
    std::string rollout;    // install
    nlohmann::json release;  // install: the signed envelope as sent
};
// {"cmd": "...", "component": ..., "rollout": ..., "release": ...}; an unknown cmd, a missing
// component or release, or a field of the wrong type is an error naming it.
[[nodiscard]] Expected<Command> parse_cmd(std::string_view payload) noexcept;

// JSON text of `value` that never throws: strings that are not UTF-8 are written replaced (U+FFFD).
[[nodiscard]] std::string dump_safe(const nlohmann::json& value) noexcept;
[[nodiscard]] std::string dump_safe(const nlohmann::ordered_json& value) noexcept;

}  // namespace ota::agent
