#include "ota/window.hpp"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <string>

namespace ota {
namespace {

constexpr const char* day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

std::optional<int> parse_hhmm(const std::string& t) {
    if (t.size() != 5 || t[2] != ':') return std::nullopt;
    for (std::size_t i : {0u, 1u, 3u, 4u})
        if (t[i] < '0' || t[i] > '9') return std::nullopt;
    const int h = (t[0] - '0') * 10 + (t[1] - '0'), m = (t[3] - '0') * 10 + (t[4] - '0');
    if (h > 24 || m > 59 || (h == 24 && m != 0)) return std::nullopt;
    return h * 60 + m;
}

std::string hhmm(int minutes) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%02d:%02d", minutes / 60 % 100, minutes % 60);
    return buf;
}

}  // namespace

bool TimeWindow::contains(std::chrono::system_clock::time_point t) const {
    const auto day = std::chrono::floor<std::chrono::days>(t);
    const int minute = static_cast<int>(std::chrono::duration_cast<std::chrono::minutes>(t - day).count());
    auto weekday = [](std::chrono::sys_days d) { return static_cast<int>(std::chrono::weekday{d}.c_encoding()); };
    auto day_ok = [&](int wd) { return days.empty() || std::find(days.begin(), days.end(), wd) != days.end(); };
    if (start_minute == end_minute) return day_ok(weekday(day));
    if (start_minute < end_minute) return day_ok(weekday(day)) && minute >= start_minute && minute < end_minute;
    if (minute >= start_minute) return day_ok(weekday(day));
    if (minute < end_minute) return day_ok(weekday(day - std::chrono::days{1}));
    return false;
}

std::chrono::system_clock::time_point TimeWindow::next_open(std::chrono::system_clock::time_point t) const {
    if (contains(t)) return t;
    auto m = std::chrono::ceil<std::chrono::minutes>(t);
    for (int i = 0; i < 8 * 24 * 60; ++i, m += std::chrono::minutes(1))
        if (contains(m)) return m;
    return t + std::chrono::days(8);  // unreachable for a valid window
}

nlohmann::ordered_json TimeWindow::to_json() const {
    nlohmann::ordered_json w;
    w["days"] = nlohmann::json::array();
    for (int d : days) w["days"].push_back(day_names[d]);
    w["start"] = hhmm(start_minute);
    w["end"] = hhmm(end_minute);
    return w;
}

std::optional<TimeWindow> read_window(ObjectReader& parent, std::string_view key) {
    const auto* obj = parent.object(key, false);
    if (!obj) return std::nullopt;
    ObjectReader r(*obj, parent.path_of(key), parent.code());  // the parent's code: config_invalid, request_invalid
    TimeWindow w;
    for (const auto& d : r.str_list("days", false)) {
        const auto it = std::find(std::begin(day_names), std::end(day_names), d);
        if (it == std::end(day_names)) {
            r.fail("days", "\"" + d + "\" is not one of sun mon tue wed thu fri sat");
            break;
        }
        w.days.push_back(static_cast<int>(it - std::begin(day_names)));
    }
    const auto start = r.str("start"), end = r.str("end");
    const auto s = parse_hhmm(start), e = parse_hhmm(end);
    if (r.ok() && !s) r.fail("start", "expected HH:MM (UTC), got \"" + start + "\"");
    if (r.ok() && !e) r.fail("end", "expected HH:MM (UTC), got \"" + end + "\"");
    r.reject_unknown();
    if (!r.ok()) {
        parent.adopt(r.error());
        return std::nullopt;
    }
    w.start_minute = *s;
    w.end_minute = *e;
    return w;
}

}  // namespace ota
