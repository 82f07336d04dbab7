// UTC timestamps as RFC 3339 text: "2026-03-10T12:00:00Z".
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "ota/error.hpp"

namespace ota {

using Timestamp = std::chrono::sys_seconds;

[[nodiscard]] Timestamp now_utc();
[[nodiscard]] std::string format_utc(Timestamp t);
// Accepts "YYYY-MM-DDTHH:MM:SSZ" (the 'Z' is required: every time on the wire is UTC).
[[nodiscard]] Expected<Timestamp> parse_utc(std::string_view text);

}  // namespace ota
