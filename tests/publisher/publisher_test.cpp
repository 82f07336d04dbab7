#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "publisher.hpp"

namespace fs = std::filesystem;
using ota::publisher::ReleaseRequest;

namespace {
const ota::Timestamp t0 = *ota::parse_utc("2026-03-10T12:00:00Z");

struct Artifact {
    fs::path path = fs::temp_directory_path() / ("ota-pub-unit-" + std::to_string(::getpid()) + ".trt");
    Artifact() { std::ofstream(path) << "model bytes"; }
    ~Artifact() { fs::remove(path); }
};

ReleaseRequest request(const fs::path& artifact) {
    ReleaseRequest rq;
    rq.component = "detection-model";
    rq.version = "2026-03-10";
    rq.artifact = artifact;
    rq.url = "https://artifacts.example/models/model-2026-03-10.trt";
    rq.install_type = "file";
    rq.target = "/var/lib/models";
    return rq;
}
}  // namespace

TEST(BuildManifest, HashesTheArtifactAndDetectsTheScheme) {
    Artifact a;
    auto m = ota::publisher::build_manifest(request(a.path), t0);
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_EQ(m->artifact.size, 11u);
    EXPECT_EQ(m->artifact.sha256, ota::crypto::sha256_hex("model bytes"));
    EXPECT_EQ(m->version_scheme, ota::VersionScheme::date);
    EXPECT_EQ(m->channel, "stable");
    ASSERT_TRUE(m->expires);
    EXPECT_EQ(*m->expires, t0 + std::chrono::days{90});
}

TEST(BuildManifest, BadRequestsAreNamedErrors) {
    Artifact a;
    struct Case {
        void (*mutate)(ReleaseRequest&);
        const char* needle;
    };
    const Case cases[] = {
        {[](ReleaseRequest& r) { r.artifact = "/nonexistent/model.trt"; }, "artifact: cannot read /nonexistent/model.trt"},
        {[](ReleaseRequest& r) { r.version = "latest"; }, "--version: version 'latest' fits no scheme"},
        {[](ReleaseRequest& r) { r.version_scheme = "semver"; }, "--version: version '2026-03-10' is not a valid semver"},
        {[](ReleaseRequest& r) { r.component = "a/b"; }, "component 'a/b'"},
        {[](ReleaseRequest& r) { r.channel = "+"; }, "channel '+'"},
        {[](ReleaseRequest& r) { r.url = "http://x/y"; }, "--url: must be an https:// URL"},
        {[](ReleaseRequest& r) { r.install_type = "rpm"; }, "--install: unknown install type"},
        {[](ReleaseRequest& r) { r.target = ""; }, "manifest.install.target: missing"},
        {[](ReleaseRequest& r) { r.platforms = {"Linux ARM"}; }, "manifest.compatibility.platforms[0]"},
    };
    for (const auto& c : cases) {
        auto rq = request(a.path);
        c.mutate(rq);
        auto m = ota::publisher::build_manifest(rq, t0);
        ASSERT_FALSE(m) << c.needle;
        EXPECT_NE(m.error().message.find(c.needle), std::string::npos) << m.error().message;
    }
}

TEST(CopyDestination, FollowsTheUrlPathAndRefusesEscapes) {
    EXPECT_EQ(*ota::publisher::copy_destination("/srv/a", "https://h:8443/models/m.trt?x=1"), fs::path("/srv/a/models/m.trt"));
    EXPECT_FALSE(ota::publisher::copy_destination("/srv/a", "https://h/../etc/passwd"));
    EXPECT_FALSE(ota::publisher::copy_destination("/srv/a", "https://h"));
}
