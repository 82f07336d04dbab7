// Versions and their ordering schemes.
//
//   semver   1.4.2, v2.0.0-rc.1, 1.0.0+build.5   (SemVer 2.0.0 precedence; build metadata ignored)
//   date     2026-03-10, 2026-03-10.2             (calendar date, optional build number that day)
//   tag      arm64_2026-03-01, jetson_orin_1.2.0  (docker-style: <flavour>_<date|semver|integer>;
//                                                  only tags of the same flavour compare)
//   integer  42
//
// A version is always compared within its scheme; comparing across schemes is an error, never
// a guess, because a wrong "newer" would install a downgrade.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ota/error.hpp"

namespace ota {

enum class VersionScheme { semver, date, tag, integer };

[[nodiscard]] std::string_view to_string(VersionScheme scheme) noexcept;
[[nodiscard]] Expected<VersionScheme> parse_version_scheme(std::string_view name);
// The scheme a version string fits, trying integer, date, tag, then semver.
[[nodiscard]] Expected<VersionScheme> detect_version_scheme(std::string_view text);

class Version {
public:
    [[nodiscard]] static Expected<Version> parse(std::string_view text, VersionScheme scheme);
    // Detects the scheme with detect_version_scheme().
    [[nodiscard]] static Expected<Version> parse(std::string_view text);

    [[nodiscard]] const std::string& text() const { return text_; }
    [[nodiscard]] VersionScheme scheme() const { return scheme_; }
    // For tags: the flavour before the last '_' (e.g. "arm64"); empty otherwise.
    [[nodiscard]] const std::string& flavour() const { return flavour_; }

    // Ordering within one scheme (and one tag flavour); version_incomparable otherwise.
    [[nodiscard]] Expected<std::strong_ordering> compare(const Version& other) const;

private:
    // One comparable part: numbers compare numerically, strings by bytes; a version's parts
    // are compared in order (SemVer pre-release rules are folded into how parts are built).
    struct Part {
        bool alpha{false};  // numeric identifiers order before alphanumeric ones
        std::uint64_t number{0};
        std::string text;
        auto operator<=>(const Part&) const = default;
    };
    std::string text_;
    VersionScheme scheme_{VersionScheme::semver};
    VersionScheme inner_{VersionScheme::semver};  // for tags: the scheme of the part after '_'
    std::string flavour_;
    std::vector<std::uint64_t> core_;              // major.minor.patch / y.m.d.build / n
    std::optional<std::vector<Part>> prerelease_;  // semver only; absent = release

    friend Expected<Version> parse_inner(std::string_view, VersionScheme, std::string_view);
};

// Convenience: is `candidate` strictly newer than `installed`? Errors if incomparable.
[[nodiscard]] Expected<bool> is_newer(const Version& candidate, const Version& installed);

}  // namespace ota
