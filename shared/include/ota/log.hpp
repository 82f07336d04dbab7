// Structured logging: one line per event, plain ("ts level [module] message key=value ...") or
// JSON lines ({"ts":..,"level":..,"module":..,"msg":..,<fields>}), on stderr. spdlog is behind
// this header.
#pragma once

#include <initializer_list>
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

// The line a Logger writes, without the timestamp (exposed for tests).
[[nodiscard]] std::string render(Format format, Level level, std::string_view module, std::string_view msg, Fields fields);

}  // namespace ota::log
