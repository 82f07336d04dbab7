// Fuzz target `version`: every version scheme (ota/version.hpp).
//
// The input is up to three version strings separated by '\n'. Each is parsed by detection and
// under each scheme explicitly. Properties:
//   - parse(text, s) succeeds iff its scheme is s; the detected scheme parses as itself;
//   - compare is reflexive (a == a), antisymmetric (a < b iff b > a; incomparable both ways),
//     and transitive on the triple (a <= b, b <= c => a <= c; equality likewise);
//   - is_newer(a, b) agrees with compare.
#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "ota/version.hpp"

namespace {

using ota::Version;
using ota::VersionScheme;
constexpr std::array schemes{VersionScheme::semver, VersionScheme::date, VersionScheme::tag, VersionScheme::integer};

std::string show(const Version& v) { return "'" + v.text() + "' (" + std::string(ota::to_string(v.scheme())) + ")"; }

std::optional<std::strong_ordering> cmp(const Version& a, const Version& b) {
    auto r = a.compare(b);
    if (!r) {
        OTA_FUZZ_CHECK(r.error().code == ota::ErrorCode::version_incomparable, r.error().describe());
        return std::nullopt;
    }
    return *r;
}

std::strong_ordering reverse(std::strong_ordering o) {
    return o == std::strong_ordering::less ? std::strong_ordering::greater
           : o == std::strong_ordering::greater ? std::strong_ordering::less
                                                : o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    std::vector<std::string_view> texts;
    for (std::size_t start = 0; texts.size() < 3;) {
        const auto nl = in.find('\n', start);
        texts.push_back(in.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
        if (nl == std::string_view::npos) break;
        start = nl + 1;
    }

    std::vector<Version> versions;  // every successful parse, detected or explicit
    for (const auto text : texts) {
        const auto detected = ota::detect_version_scheme(text);
        const auto parsed = Version::parse(text);
        OTA_FUZZ_CHECK(detected.has_value() == parsed.has_value(), "detect and parse disagree on '" + std::string(text) + "'");
        if (parsed) {
            OTA_FUZZ_CHECK(parsed->scheme() == *detected, show(*parsed));
            OTA_FUZZ_CHECK(parsed->text() == text, show(*parsed));
            versions.push_back(*parsed);
        } else {
            OTA_FUZZ_CHECK(!parsed.error().message.empty(), "empty error message");
        }
        for (const auto s : schemes) {
            auto v = Version::parse(text, s);
            if (!v) {
                OTA_FUZZ_CHECK(v.error().code == ota::ErrorCode::version_invalid, v.error().describe());
                continue;
            }
            OTA_FUZZ_CHECK(v->scheme() == s, show(*v));
            if (s == *detected) OTA_FUZZ_CHECK(cmp(*v, *parsed) == std::strong_ordering::equal, show(*v));
            versions.push_back(*v);
        }
    }
    if (versions.size() > 12) versions.resize(12);  // bounded: at most 12^3 triples

    for (const auto& a : versions) {
        OTA_FUZZ_CHECK(cmp(a, a) == std::strong_ordering::equal, "not reflexive: " + show(a));
        for (const auto& b : versions) {
            const auto ab = cmp(a, b);
            const auto ba = cmp(b, a);
            OTA_FUZZ_CHECK(ab.has_value() == ba.has_value(), "comparable one way only: " + show(a) + " " + show(b));
            if (!ab) continue;
            OTA_FUZZ_CHECK(*ba == reverse(*ab), "not antisymmetric: " + show(a) + " " + show(b));
            const auto newer = ota::is_newer(a, b);
            OTA_FUZZ_CHECK(newer.has_value() && *newer == (*ab == std::strong_ordering::greater),
                           "is_newer disagrees with compare: " + show(a) + " " + show(b));
            for (const auto& c : versions) {
                const auto bc = cmp(b, c);
                if (!bc) continue;
                const auto ac = cmp(a, c);
                OTA_FUZZ_CHECK(ac.has_value(), "comparability not transitive: " + show(a) + " " + show(b) + " " + show(c));
                if (*ab <= 0 && *bc <= 0) OTA_FUZZ_CHECK(*ac <= 0, "<= not transitive: " + show(a) + " " + show(b) + " " + show(c));
                if (*ab == 0 && *bc == 0) OTA_FUZZ_CHECK(*ac == 0, "== not transitive: " + show(a) + " " + show(b) + " " + show(c));
            }
        }
    }
    return 0;
}
