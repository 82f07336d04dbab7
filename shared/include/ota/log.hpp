// Structured logging: one line per event, plain ("ts level [module] message key=value ...") or
// JSON lines ({"ts":..,"level":..,"module":..,"msg":..,<fields>}), on stderr. spdlog is behind
// this header.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "ota/error.hpp"

namespace ota::log {

enum class Format { plain, json };
enum class Level { debug, info, warn, error };

[[nodiscard]] Expected<Format> parse_format(std::string_view name);  // "plain" | "json"
[[nodiscard]] Expected<Level> parse_level(std::string_view name);    // "debug" | "info" | "warn" | "error"

// Configure once at program start (defaults: plain, info).
void init(Format format, Level level);

using Field = std::pair<std::string_view, std::string>;
using Fields = std::initializer_list<Field>;

class Logger {
public:
    explicit Logger(std::string module) : module_(std::move(module)) {}
    void debug(std::string_view msg, Fields fields = {}) const { write(Level::debug, msg, fields); }
    void info(std::string_view msg, Fields fields = {}) const { write(Level::info, msg, fields); }
    void warn(std::string_view msg, Fields fields = {}) const { write(Level::warn, msg, fields); }
    void error(std::string_view msg, Fields fields = {}) const { write(Level::error, msg, fields); }
    void write(Level level, std::string_view msg, Fields fields) const;

private:
    std::string module_;
};

// Bounded logging of what arrives from outside (a flood of malformed messages from one device
// must not become a flood of log lines): per key (e.g. "malformed status"), at most `burst` lines
// per `window`; the first line allowed after a held-back stretch learns how many were held back,
// to say so. At most `max_keys` keys are tracked, the rest share one. Not thread-safe: one per
// thread that logs (the controller's engine, the agent's worker).
class Limiter {
public:
    explicit Limiter(std::uint64_t burst = 5, std::chrono::seconds window = std::chrono::seconds(60),
                     std::size_t max_keys = 256)
        : burst_(burst), window_(window), max_keys_(max_keys) {}
    // True when a line for `key` may be written at `now` (time since any fixed epoch, e.g. a
    // clock's time_since_epoch()); `suppressed` is then the number of lines held back for `key` in
    // the window before (to mention in that line).
    [[nodiscard]] bool allow(std::string_view key, std::chrono::nanoseconds now, std::uint64_t& suppressed);

private:
    struct Window {
        std::chrono::nanoseconds start{};
        std::uint64_t written{0}, held{0};
    };
    std::uint64_t burst_;
    std::chrono::seconds window_;
    std::size_t max_keys_;
    std::map<std::string, Window, std::less<>> keys_;
};

// The line a Logger writes, without the timestamp (exposed for tests).
[[nodiscard]] std::string render(Format format, Level level, std::string_view module, std::string_view msg, Fields fields);

}  // namespace ota::log
