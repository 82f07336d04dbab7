// A weekly time window in UTC ("sat sun 22:00-04:00"): the agent's update window and the
// controller's maintenance windows. Config form:
//   {"days": ["sat", "sun"], "start": "22:00", "end": "04:00"}
// Empty days = every day; start == end = all day; a window that ends before it starts wraps past
// midnight, and the part after midnight belongs to the day it started.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ota/json.hpp"

namespace ota {

struct TimeWindow {
    std::vector<int> days;  // 0 = Sunday ... 6 = Saturday
    int start_minute{0};    // minutes after midnight, UTC
    int end_minute{0};

    [[nodiscard]] bool contains(std::chrono::system_clock::time_point t) const;
    // The first moment at or after `t` inside the window (t itself when inside); searched over
    // the next 8 days, minute by minute at worst.
    [[nodiscard]] std::chrono::system_clock::time_point next_open(std::chrono::system_clock::time_point t) const;
    [[nodiscard]] nlohmann::ordered_json to_json() const;
};

// Read the optional object `key` of `parent` as a window; problems become parent's error
// ("<path>.<key>.start: expected HH:MM (UTC), got \"25:00\"").
[[nodiscard]] std::optional<TimeWindow> read_window(ObjectReader& parent, std::string_view key);

}  // namespace ota
