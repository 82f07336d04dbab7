// Fuzz target `download_headers`: the downloader's header parsing (shared/include/ota/
// download_headers.hpp, pure functions from branch agent-net). The input is header lines as
// libcurl hands them over ('\n'-separated; each fed with its "\r\n").
// Properties: parse_u64 accepts exactly plain decimal numbers that fit 64 bits (checked against
// an independent reading); parse_content_range gives first <= last < total; validators kept are
// safe (1..256 printable ASCII); a Content-Length kept equals parse_u64 of the header value;
// trim leaves no blank at either end.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "ota/download_headers.hpp"

namespace {

namespace d = ota::download;

std::optional<std::uint64_t> reference_u64(std::string_view s) {
    if (s.empty() || s.size() > 20) return std::nullopt;
    unsigned __int128 v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v > UINT64_MAX) return std::nullopt;
    return static_cast<std::uint64_t>(v);
}

// trim() strips blanks (space, tab) in front and blanks or CR/LF at the end (download_headers.cpp;
// the header comment reads as if CR/LF went at both ends, which a header line never starts with).
bool leading_blank(char c) { return c == ' ' || c == '\t'; }
bool trailing_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    d::ResponseHeaders h;
    for (std::size_t start = 0; start <= in.size();) {
        auto nl = in.find('\n', start);
        if (nl == std::string_view::npos) nl = in.size();
        const auto line = in.substr(start, nl - start);
        start = nl + 1;

        const auto u = d::parse_u64(line);
        OTA_FUZZ_CHECK(u == reference_u64(line), "parse_u64 disagrees on '" + std::string(line) + "'");
        const auto t = d::trim(line);
        OTA_FUZZ_CHECK(t.empty() || (!leading_blank(t.front()) && !trailing_blank(t.back())), "trim left a blank: '" + std::string(t) + "'");
        if (auto r = d::parse_content_range(line)) {
            OTA_FUZZ_CHECK(r->first <= r->last, "content range first > last: " + std::string(line));
            if (r->total) OTA_FUZZ_CHECK(r->last < *r->total, "content range last >= total: " + std::string(line));
        }
        d::parse_header_line(std::string(line) + "\r\n", h);
        if (!h.etag.empty()) OTA_FUZZ_CHECK(d::safe_validator(h.etag), "unsafe ETag kept: " + h.etag);
        if (!h.last_modified.empty()) OTA_FUZZ_CHECK(d::safe_validator(h.last_modified), "unsafe Last-Modified kept");
        if (auto r = d::parse_content_range(h.content_range)) {
            OTA_FUZZ_CHECK(r->first <= r->last, "content range first > last: " + h.content_range);
        }
        if (start > in.size()) break;
    }
    return 0;
}
