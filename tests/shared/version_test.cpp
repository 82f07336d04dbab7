#include <gtest/gtest.h>

#include "ota/version.hpp"

using ota::Version;
using ota::VersionScheme;

namespace {

// "a < b" within the given scheme.
void expect_less(std::string_view a, std::string_view b, VersionScheme scheme) {
    auto va = Version::parse(a, scheme);
    auto vb = Version::parse(b, scheme);
    ASSERT_TRUE(va) << va.error().message;
    ASSERT_TRUE(vb) << vb.error().message;
    auto c = va->compare(*vb);
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(*c, std::strong_ordering::less) << a << " < " << b;
    EXPECT_EQ(*vb->compare(*va), std::strong_ordering::greater) << b << " > " << a;
}

struct OrderCase {
    const char* older;
    const char* newer;
    VersionScheme scheme;
};

}  // namespace

TEST(Version, OrdersEachScheme) {
    const OrderCase cases[] = {
        // semver precedence, SemVer 2.0.0 section 11
        {"1.0.0", "2.0.0", VersionScheme::semver},
        {"1.9.0", "1.10.0", VersionScheme::semver},
        {"1.0.0-alpha", "1.0.0", VersionScheme::semver},
        {"1.0.0-alpha", "1.0.0-alpha.1", VersionScheme::semver},
        {"1.0.0-alpha.1", "1.0.0-alpha.beta", VersionScheme::semver},
        {"1.0.0-alpha.beta", "1.0.0-beta", VersionScheme::semver},
        {"1.0.0-beta.2", "1.0.0-beta.11", VersionScheme::semver},
        {"1.0.0-rc.1", "1.0.0", VersionScheme::semver},
        {"v1.2.3", "1.2.4", VersionScheme::semver},
        // dates, with an optional build number that day
        {"2026-03-01", "2026-03-10", VersionScheme::date},
        {"2025-12-31", "2026-01-01", VersionScheme::date},
        {"2026-03-10", "2026-03-10.1", VersionScheme::date},
        {"2026-03-10.2", "2026-03-10.10", VersionScheme::date},
        // docker-style tags within one flavour
        {"arm64_2026-03-01", "arm64_2026-03-10", VersionScheme::tag},
        {"jetson_orin_1.9.0", "jetson_orin_1.10.0", VersionScheme::tag},
        {"amd64_9", "amd64_10", VersionScheme::tag},
        // integers compare numerically, not as text
        {"9", "10", VersionScheme::integer},
        {"41", "42", VersionScheme::integer},
    };
    for (const auto& c : cases) expect_less(c.older, c.newer, c.scheme);
}

TEST(Version, BuildMetadataAndEqualVersionsAreEqual) {
    auto a = Version::parse("1.0.0+build.1", VersionScheme::semver);
    auto b = Version::parse("1.0.0+build.2", VersionScheme::semver);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(*a->compare(*b), std::strong_ordering::equal);
    EXPECT_FALSE(*ota::is_newer(*a, *b));
    auto d = Version::parse("2026-03-10", VersionScheme::date);
    EXPECT_EQ(*d->compare(*d), std::strong_ordering::equal);
}

TEST(Version, DetectsTheScheme) {
    EXPECT_EQ(*ota::detect_version_scheme("42"), VersionScheme::integer);
    EXPECT_EQ(*ota::detect_version_scheme("2026-03-10"), VersionScheme::date);
    EXPECT_EQ(*ota::detect_version_scheme("arm64_2026-03-01"), VersionScheme::tag);
    EXPECT_EQ(*ota::detect_version_scheme("1.4.2"), VersionScheme::semver);
    EXPECT_EQ(*ota::detect_version_scheme("v2.0.0-rc.1"), VersionScheme::semver);
    auto none = ota::detect_version_scheme("latest");
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().code, ota::ErrorCode::version_invalid);
    EXPECT_NE(none.error().message.find("latest"), std::string::npos);
    auto tag = Version::parse("arm64_2026-03-01");
    ASSERT_TRUE(tag);
    EXPECT_EQ(tag->flavour(), "arm64");
}

TEST(Version, RejectsMalformedVersionsWithTheReason) {
    const std::pair<const char*, VersionScheme> bad[] = {
        {"1.2", VersionScheme::semver},        {"01.2.3", VersionScheme::semver},
        {"1.2.3-", VersionScheme::semver},     {"1.2.3-01", VersionScheme::semver},
        {"1.2.x", VersionScheme::semver},      {"2026-02-30", VersionScheme::date},
        {"2026-13-01", VersionScheme::date},   {"26-03-10", VersionScheme::date},
        {"2026-03-10.x", VersionScheme::date}, {"arm64-2026-03-01", VersionScheme::tag},
        {"_2026-03-01", VersionScheme::tag},   {"arm64_", VersionScheme::tag},
        {"arm64_latest", VersionScheme::tag},  {"-1", VersionScheme::integer},
        {"12a", VersionScheme::integer},       {"", VersionScheme::integer},
        {"99999999999999999999999", VersionScheme::integer},
    };
    for (const auto& [text, scheme] : bad) {
        auto v = Version::parse(text, scheme);
        ASSERT_FALSE(v) << text;
        EXPECT_EQ(v.error().code, ota::ErrorCode::version_invalid) << text;
        EXPECT_FALSE(v.error().message.empty());
    }
}

TEST(Version, RefusesToOrderAcrossSchemesOrFlavours) {
    auto date = Version::parse("2026-03-10", VersionScheme::date);
    auto semver = Version::parse("1.0.0", VersionScheme::semver);
    auto arm = Version::parse("arm64_2026-03-01", VersionScheme::tag);
    auto amd = Version::parse("amd64_2026-03-10", VersionScheme::tag);
    auto c1 = date->compare(*semver);
    ASSERT_FALSE(c1);
    EXPECT_EQ(c1.error().code, ota::ErrorCode::version_incomparable);
    auto c2 = arm->compare(*amd);
    ASSERT_FALSE(c2);
    EXPECT_NE(c2.error().message.find("arm64"), std::string::npos);
    EXPECT_FALSE(ota::is_newer(*amd, *arm));
}
