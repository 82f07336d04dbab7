// The downloader's reading of an HTTP response's headers, as pure functions (no I/O, no
// exceptions): what fetch() (download.hpp) judges a response by, and what a fuzz target drives.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ota::download {

// The headers of one response that the downloader uses.
struct ResponseHeaders {
    long status{0};                              // 0: no status line seen
    std::string etag, last_modified, content_range;
    std::optional<std::uint64_t> content_length;  // absent, or not a plain decimal number
};

// Feed one header line as libcurl hands it over ("HTTP/1.1 206 Partial Content\r\n",
// "ETag: \"abc\"\r\n", ...). A status line starts a new response (after a redirect): the
// fields of the previous one are forgotten. Unknown headers and malformed lines are ignored.
// A validator (ETag, Last-Modified) that is not printable ASCII or longer than 256 bytes is
// dropped: it is echoed in If-Range and stored in the sidecar, so it must be safe for both.
void parse_header_line(std::string_view line, ResponseHeaders& headers) noexcept;

// "bytes 100-199/300" or "bytes 100-199/*" (total unknown). Nullopt for anything else,
// including last < first, total <= last and numbers beyond 64 bits.
struct ContentRange {
    std::uint64_t first{0}, last{0};
    std::optional<std::uint64_t> total;
};
[[nodiscard]] std::optional<ContentRange> parse_content_range(std::string_view value) noexcept;

// A decimal number of at most 20 digits that fits in 64 bits, nothing else around it.
[[nodiscard]] std::optional<std::uint64_t> parse_u64(std::string_view text) noexcept;

// Leading and trailing blanks (and CR/LF) removed.
[[nodiscard]] std::string_view trim(std::string_view text) noexcept;

// True for a validator usable in If-Range and in the sidecar: 1..256 printable ASCII bytes.
[[nodiscard]] bool safe_validator(std::string_view value) noexcept;

}  // namespace ota::download
