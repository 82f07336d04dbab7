#include "ota/version.hpp"

#include <algorithm>
#include <chrono>
#include <limits>

namespace ota {
namespace {

std::optional<std::uint64_t> parse_uint(std::string_view s, bool allow_leading_zero = true) {
    if (s.empty() || s.size() > 20) return std::nullopt;
    if (!allow_leading_zero && s.size() > 1 && s[0] == '0') return std::nullopt;
    std::uint64_t value = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
    }
    return value;
}

bool is_ident_char(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (true) {
        const auto pos = s.find(sep, start);
        out.push_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
        if (pos == std::string_view::npos) break;
        start = pos + 1;
    }
    return out;
}

std::unexpected<Error> invalid(std::string_view text, std::string_view scheme, std::string_view why) {
    return fail(ErrorCode::version_invalid,
                "version '" + std::string(text) + "' is not a valid " + std::string(scheme) +
                    " version: " + std::string(why));
}

}  // namespace

std::string_view to_string(VersionScheme scheme) noexcept {
    switch (scheme) {
        case VersionScheme::semver: return "semver";
        case VersionScheme::date: return "date";
        case VersionScheme::tag: return "tag";
        case VersionScheme::integer: return "integer";
    }
    return "semver";
}

Expected<VersionScheme> parse_version_scheme(std::string_view name) {
    for (auto s : {VersionScheme::semver, VersionScheme::date, VersionScheme::tag, VersionScheme::integer}) {
        if (name == to_string(s)) return s;
    }
    return fail(ErrorCode::version_invalid, "unknown version scheme '" + std::string(name) +
                                                "' (expected semver, date, tag or integer)");
}

// Parses `text` as `scheme` into a Version. `whole` is the full text for messages (differs from
// `text` for the part of a tag after its flavour).
Expected<Version> parse_inner(std::string_view text, VersionScheme scheme, std::string_view whole) {
    Version v;
    v.text_ = std::string(whole);
    v.scheme_ = scheme;
    v.inner_ = scheme;
    const auto name = to_string(scheme);
    switch (scheme) {
        case VersionScheme::integer: {
            const auto n = parse_uint(text);
            if (!n) return invalid(whole, name, "expected only digits");
            v.core_ = {*n};
            return v;
        }
        case VersionScheme::date: {
            // YYYY-MM-DD with an optional ".N" build number for several builds a day.
            std::string_view date = text;
            std::uint64_t build = 0;
            if (const auto dot = text.find('.'); dot != std::string_view::npos) {
                const auto b = parse_uint(text.substr(dot + 1));
                if (!b) return invalid(whole, name, "the build number after '.' must be digits");
                build = *b;
                date = text.substr(0, dot);
            }
            if (date.size() != 10 || date[4] != '-' || date[7] != '-')
                return invalid(whole, name, "expected YYYY-MM-DD");
            const auto y = parse_uint(date.substr(0, 4));
            const auto m = parse_uint(date.substr(5, 2));
            const auto d = parse_uint(date.substr(8, 2));
            if (!y || !m || !d) return invalid(whole, name, "expected YYYY-MM-DD");
            const std::chrono::year_month_day ymd{std::chrono::year{static_cast<int>(*y)},
                                                  std::chrono::month{static_cast<unsigned>(*m)},
                                                  std::chrono::day{static_cast<unsigned>(*d)}};
            if (!ymd.ok()) return invalid(whole, name, "no such calendar date");
            v.core_ = {*y, *m, *d, build};
            return v;
        }
        case VersionScheme::semver: {
            std::string_view s = text;
            if (!s.empty() && s[0] == 'v') s.remove_prefix(1);
            if (const auto plus = s.find('+'); plus != std::string_view::npos) {
                for (auto id : split(s.substr(plus + 1), '.')) {
                    if (id.empty() || !std::all_of(id.begin(), id.end(), is_ident_char))
                        return invalid(whole, name, "bad build metadata after '+'");
                }
                s = s.substr(0, plus);  // build metadata does not take part in ordering
            }
            if (const auto dash = s.find('-'); dash != std::string_view::npos) {
                std::vector<Version::Part> pre;
                for (auto id : split(s.substr(dash + 1), '.')) {
                    if (id.empty() || !std::all_of(id.begin(), id.end(), is_ident_char))
                        return invalid(whole, name, "bad pre-release identifier after '-'");
                    if (std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; })) {
                        const auto n = parse_uint(id, false);
                        if (!n) return invalid(whole, name, "numeric pre-release identifier with a leading zero");
                        pre.push_back({.alpha = false, .number = *n, .text = {}});
                    } else {
                        pre.push_back({.alpha = true, .number = 0, .text = std::string(id)});
                    }
                }
                v.prerelease_ = std::move(pre);
                s = s.substr(0, dash);
            }
            const auto nums = split(s, '.');
            if (nums.size() != 3) return invalid(whole, name, "expected MAJOR.MINOR.PATCH");
            for (auto n : nums) {
                const auto value = parse_uint(n, false);
                if (!value) return invalid(whole, name, "MAJOR, MINOR and PATCH must be numbers without leading zeros");
                v.core_.push_back(*value);
            }
            return v;
        }
        case VersionScheme::tag: {
            const auto us = text.rfind('_');
            if (us == std::string_view::npos || us == 0 || us + 1 == text.size())
                return invalid(whole, name, "expected <flavour>_<version>, e.g. arm64_2026-03-01");
            const auto flavour = text.substr(0, us);
            const auto ok_flavour = std::all_of(flavour.begin(), flavour.end(), [](char c) {
                return is_ident_char(c) || c == '.' || c == '_';
            });
            if (!ok_flavour) return invalid(whole, name, "the flavour may hold only letters, digits, '.', '-' and '_'");
            const auto rest = text.substr(us + 1);
            for (auto inner : {VersionScheme::date, VersionScheme::integer, VersionScheme::semver}) {
                if (auto parsed = parse_inner(rest, inner, whole)) {
                    parsed->scheme_ = VersionScheme::tag;
                    parsed->flavour_ = std::string(flavour);
                    return parsed;
                }
            }
            return invalid(whole, name, "the part after '_' is not a date, an integer or a semver version");
        }
    }
    return invalid(whole, name, "unknown scheme");
}

Expected<Version> Version::parse(std::string_view text, VersionScheme scheme) {
    if (text.empty()) return fail(ErrorCode::version_invalid, "version is empty");
    if (text.size() > 128) return fail(ErrorCode::version_invalid, "version is longer than 128 characters");
    return parse_inner(text, scheme, text);
}

Expected<VersionScheme> detect_version_scheme(std::string_view text) {
    for (auto s : {VersionScheme::integer, VersionScheme::date, VersionScheme::tag, VersionScheme::semver}) {
        if (Version::parse(text, s)) return s;
    }
    return fail(ErrorCode::version_invalid,
                "version '" + std::string(text) +
                    "' fits no scheme (semver 1.2.3, date YYYY-MM-DD, tag flavour_version, integer)");
}

Expected<Version> Version::parse(std::string_view text) {
    auto scheme = detect_version_scheme(text);
    if (!scheme) return std::unexpected(scheme.error());
    return parse(text, *scheme);
}

Expected<std::strong_ordering> Version::compare(const Version& other) const {
    if (scheme_ != other.scheme_ || inner_ != other.inner_ || flavour_ != other.flavour_) {
        return fail(ErrorCode::version_incomparable,
                    "cannot order '" + text_ + "' (" + std::string(to_string(scheme_)) +
                        (flavour_.empty() ? "" : " " + flavour_) + ") against '" + other.text_ + "' (" +
                        std::string(to_string(other.scheme_)) +
                        (other.flavour_.empty() ? "" : " " + other.flavour_) + ")");
    }
    if (auto c = core_ <=> other.core_; c != 0) return c;
    // SemVer: a release is newer than any of its pre-releases.
    if (prerelease_.has_value() != other.prerelease_.has_value())
        return prerelease_.has_value() ? std::strong_ordering::less : std::strong_ordering::greater;
    if (prerelease_) return *prerelease_ <=> *other.prerelease_;
    return std::strong_ordering::equal;
}

Expected<bool> is_newer(const Version& candidate, const Version& installed) {
    auto c = candidate.compare(installed);
    if (!c) return std::unexpected(c.error());
    return *c == std::strong_ordering::greater;
}

}  // namespace ota
