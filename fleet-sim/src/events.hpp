// Measurement output: one JSON line per event (--events FILE) with both clocks, so a benchmark
// script can join the simulator's events with other processes' (CLOCK_MONOTONIC is shared by all
// processes of the machine; the wall clock is for humans and other machines).
//   {"mono_us":123456789,"wall_us":1767225600123456,"device":"device-00001","event":"connected"}
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ota/error.hpp"

namespace ota::fleetsim {

[[nodiscard]] std::int64_t mono_us();  // CLOCK_MONOTONIC, microseconds
[[nodiscard]] std::int64_t wall_us();  // CLOCK_REALTIME, microseconds since the epoch

class EventLog {
public:
    EventLog() = default;
    ~EventLog();
    EventLog(const EventLog&) = delete;
    EventLog& operator=(const EventLog&) = delete;

    [[nodiscard]] Expected<void> open(const std::filesystem::path& path);
    [[nodiscard]] bool enabled() const { return file_ != nullptr; }
    // `fields` (an object, may be empty) are added after "event".
    void write(std::string_view device, std::string_view event, const nlohmann::json& fields = nlohmann::json::object());
    void flush();
    [[nodiscard]] std::uint64_t lines() const { return lines_; }

private:
    std::FILE* file_{nullptr};
    std::uint64_t lines_{0};
};

}  // namespace ota::fleetsim
