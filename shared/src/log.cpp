#include "ota/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "ota/json.hpp"
#include "ota/systemd.hpp"
#include "ota/time.hpp"

namespace ota::log {
namespace {

std::atomic<Format> g_format{Format::plain};
std::atomic<Level> g_level{Level::info};

std::string_view name(Level level) {
    switch (level) {
        case Level::debug: return "debug";
        case Level::info: return "info";
        case Level::warn: return "warn";
        case Level::error: return "error";
    }
    return "info";
}

spdlog::logger& sink() {
    static auto logger = [] {
        auto l = std::make_shared<spdlog::logger>("ota", std::make_shared<spdlog::sinks::stderr_sink_mt>());
        l->set_level(spdlog::level::trace);
        return l;
    }();
    return *logger;
}

// stderr is the journal (a systemd service): it stamps each line itself, and reads a "<N>"
// syslog priority prefix as the line's level.
const bool g_journal = systemd::stderr_is_journal();

void apply_pattern() {
    // JSON lines carry their own timestamp field; plain lines get one from spdlog, except in the
    // journal.
    if (g_format == Format::json || g_journal) sink().set_pattern("%v", spdlog::pattern_time_type::utc);
    else sink().set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %v", spdlog::pattern_time_type::utc);
}

// sd-daemon(3)'s SD_DEBUG .. SD_ERR
std::string_view journal_prefix(Level level) {
    switch (level) {
        case Level::debug: return "<7>";
        case Level::info: return "<6>";
        case Level::warn: return "<4>";
        case Level::error: return "<3>";
    }
    return "<6>";
}

bool needs_quotes(std::string_view v) {
    if (v.empty() || v.find_first_of(" \"=\\") != std::string_view::npos) return true;
    for (const char c : v)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F) return true;
    return false;
}

// A value for a plain line: as it is when it is a plain token, else a JSON string; bytes that are
// not UTF-8 become \xNN (never an exception: the text may come from any device).
std::string plain_value(std::string_view v) {
    if (!needs_quotes(v)) return std::string(v);
    return nlohmann::json(printable(v, 4096)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

Expected<Format> parse_format(std::string_view n) {
    if (n == "plain") return Format::plain;
    if (n == "json") return Format::json;
    return fail(ErrorCode::config_invalid, "log format \"" + std::string(n) + "\" is not plain or json");
}

Expected<Level> parse_level(std::string_view n) {
    for (auto l : {Level::debug, Level::info, Level::warn, Level::error})
        if (n == name(l)) return l;
    if (n == "warning") return Level::warn;
    return fail(ErrorCode::config_invalid, "log level \"" + std::string(n) + "\" is not debug, info, warn or error");
}

void init(Format format, Level level) {
    g_format = format;
    g_level = level;
    apply_pattern();
}

std::string render(Format format, Level level, std::string_view module, std::string_view msg, Fields fields) {
    if (format == Format::json) {
        nlohmann::ordered_json j;
        const auto now = std::chrono::system_clock::now();
        const auto secs = std::chrono::floor<std::chrono::seconds>(now);
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - secs).count();
        auto ts = format_utc(secs);  // "...:SSZ" -> "...:SS.mmmZ"
        char frac[8];
        std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms));
        ts.replace(ts.size() - 1, 1, frac);
        j["ts"] = ts;
        j["level"] = name(level);
        j["module"] = module;
        j["msg"] = printable(msg, 4096);
        for (const auto& [k, v] : fields) j[std::string(k)] = printable(v, 4096);
        return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    std::string line = std::string(name(level)) + " [" + std::string(module) + "] " + printable(msg, 4096);
    for (const auto& [k, v] : fields) {
        line += ' ';
        line += k;
        line += '=';
        line += plain_value(v);
    }
    return line;
}

void Logger::write(Level level, std::string_view msg, Fields fields) const {
    if (level < g_level.load()) return;
    static const bool once = (apply_pattern(), true);
    (void)once;
    auto line = render(g_format, level, module_, msg, fields);
    if (g_journal) line.insert(0, journal_prefix(level));
    switch (level) {
        case Level::debug: sink().debug(line); break;
        case Level::info: sink().info(line); break;
        case Level::warn: sink().warn(line); break;
        case Level::error: sink().error(line); break;
    }
}

bool Limiter::allow(std::string_view key, std::chrono::nanoseconds now, std::uint64_t& suppressed) {
    suppressed = 0;
    auto it = keys_.find(key);
    if (it == keys_.end()) it = keys_.try_emplace(keys_.size() < max_keys_ ? std::string(key) : std::string("*")).first;
    auto& w = it->second;
    if (w.written == 0 || now - w.start >= window_) {
        suppressed = w.held;
        w = Window{now, 0, 0};
    }
    if (w.written < burst_) {
        ++w.written;
        return true;
    }
    ++w.held;
    return false;
}

}  // namespace ota::log
