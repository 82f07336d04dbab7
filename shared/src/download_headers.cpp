// HTTP response headers as the downloader reads them (see download_headers.hpp).
#include "ota/download_headers.hpp"

#include <algorithm>
#include <charconv>

namespace ota::download {
namespace {

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               const auto lx = (x >= 'A' && x <= 'Z') ? static_cast<char>(x - 'A' + 'a') : x;
               const auto ly = (y >= 'A' && y <= 'Z') ? static_cast<char>(y - 'A' + 'a') : y;
               return lx == ly;
           });
}

}  // namespace

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
    return s;
}

std::optional<std::uint64_t> parse_u64(std::string_view s) noexcept {
    if (s.empty() || s.size() > 20) return std::nullopt;
    std::uint64_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

bool safe_validator(std::string_view v) noexcept {
    return !v.empty() && v.size() <= 256 &&
           std::all_of(v.begin(), v.end(), [](char c) { return c >= 0x20 && c <= 0x7E; });
}

std::optional<ContentRange> parse_content_range(std::string_view v) noexcept {
    if (v.rfind("bytes ", 0) != 0) return std::nullopt;
    v.remove_prefix(6);
    const auto dash = v.find('-');
    const auto slash = v.find('/');
    if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) return std::nullopt;
    const auto first = parse_u64(v.substr(0, dash));
    const auto last = parse_u64(v.substr(dash + 1, slash - dash - 1));
    if (!first || !last || *last < *first) return std::nullopt;
    ContentRange r{*first, *last, std::nullopt};
    const auto total = v.substr(slash + 1);
    if (total != "*") {
        r.total = parse_u64(total);
        if (!r.total || *r.total <= *last) return std::nullopt;
    }
    return r;
}

void parse_header_line(std::string_view line, ResponseHeaders& hd) noexcept {
    try {
        if (line.rfind("HTTP/", 0) == 0) {  // a new response (after a redirect): forget the last one
            hd = ResponseHeaders{};
            const auto sp = line.find(' ');
            if (sp != std::string_view::npos) {
                const auto code = trim(line.substr(sp + 1)).substr(0, 3);
                hd.status = static_cast<long>(parse_u64(code).value_or(0));
            }
            return;
        }
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) return;
        const auto name = trim(line.substr(0, colon));
        const auto value = trim(line.substr(colon + 1));
        if (iequals(name, "etag")) hd.etag = safe_validator(value) ? std::string(value) : std::string();
        else if (iequals(name, "last-modified")) hd.last_modified = safe_validator(value) ? std::string(value) : std::string();
        else if (iequals(name, "content-range")) {
            // Kept for error messages: printable ASCII only (parsing needs nothing else).
            hd.content_range.assign(value.substr(0, 256));
            for (auto& c : hd.content_range)
                if (c < 0x20 || c > 0x7E) c = '?';
        }
        else if (iequals(name, "content-length")) hd.content_length = parse_u64(value);
    } catch (...) {
        // std::bad_alloc copying a header: the response is judged without it.
    }
}

}  // namespace ota::download
