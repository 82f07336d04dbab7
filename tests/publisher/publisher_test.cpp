#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ota/file_crypto.hpp"
#include "ota/files.hpp"
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

// --encrypt-key: what is placed under --copy-to is the ciphertext, the manifest describes it and
// carries artifact.encryption; the key decrypts it to the original, another key does not.
class EncryptedRelease : public ::testing::Test {
protected:
    fs::path dir = fs::temp_directory_path() / ("ota-pub-enc-" + std::to_string(::getpid()));
    fs::path served = dir / "www" / "models" / "model-2026-03-10.trt";
    std::string plaintext;
    void SetUp() override {
        fs::create_directories(dir);
        for (int i = 0; plaintext.size() < 1500000; ++i) plaintext += std::to_string(i) + ",";
        std::ofstream(dir / "model.trt") << plaintext;
        std::ofstream(dir / "fleet.key") << std::string(64, 'c') << "\n";  // hex, as devices keep it
    }
    void TearDown() override { fs::remove_all(dir); }
    ReleaseRequest encrypted_request() {
        auto rq = request(dir / "model.trt");
        auto key = ota::publisher::load_encryption_key(dir / "fleet.key", "fleet-2026");
        EXPECT_TRUE(key) << key.error().describe();
        rq.encrypt = *key;
        return rq;
    }
};

TEST_F(EncryptedRelease, ManifestDescribesTheCiphertextWhichDecryptsToTheArtifact) {
    auto m = ota::publisher::prepare_release(encrypted_request(), dir / "www", t0);
    ASSERT_TRUE(m) << m.error().describe();
    ASSERT_TRUE(m->artifact.encryption);
    const auto& enc = *m->artifact.encryption;
    EXPECT_EQ(enc.alg, "aes-256-gcm");
    EXPECT_EQ(enc.key_id, "fleet-2026");
    auto digest = ota::crypto::sha256_file(served);
    ASSERT_TRUE(digest) << digest.error().describe();
    EXPECT_EQ(m->artifact.size, digest->size);
    EXPECT_EQ(m->artifact.sha256, digest->sha256);
    EXPECT_NE(m->artifact.sha256, ota::crypto::sha256_hex(plaintext)) << "the ciphertext is served, not the plaintext";
    EXPECT_EQ(std::distance(fs::directory_iterator(served.parent_path()), fs::directory_iterator{}), 1)
        << "no staged file left beside it";
    // The manifest round-trips through the parser a device uses.
    auto parsed = ota::Manifest::from_json(nlohmann::json::parse(m->to_json().dump()));
    ASSERT_TRUE(parsed) << parsed.error().describe();
    EXPECT_EQ(parsed->artifact.encryption, m->artifact.encryption);

    ASSERT_TRUE(ota::crypto::decrypt_file(served, dir / "out", std::string(32, '\xcc'), {enc.iv, enc.tag}));
    EXPECT_TRUE(*ota::read_file(dir / "out") == plaintext);
    auto wrong = ota::crypto::decrypt_file(served, dir / "wrong", std::string(32, '\xcd'), {enc.iv, enc.tag});
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error().code, ota::ErrorCode::decrypt_failed) << wrong.error().describe();
    EXPECT_FALSE(fs::exists(dir / "wrong"));
}

TEST_F(EncryptedRelease, BadRequestsPlaceNothing) {
    auto no_copy = ota::publisher::prepare_release(encrypted_request(), {}, t0);
    ASSERT_FALSE(no_copy);
    EXPECT_NE(no_copy.error().message.find("--encrypt-key needs --copy-to"), std::string::npos) << no_copy.error().message;
    auto rq = encrypted_request();
    rq.version = "latest";
    auto bad = ota::publisher::prepare_release(rq, dir / "www", t0);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("--version"), std::string::npos) << bad.error().message;
    EXPECT_TRUE(!fs::exists(served.parent_path()) || fs::is_empty(served.parent_path())) << "nothing placed, nothing staged";
}

TEST_F(EncryptedRelease, KeyFilesAndKeyIdsAreChecked) {
    std::ofstream(dir / "short.key") << "0123456789";
    auto short_key = ota::publisher::load_encryption_key(dir / "short.key", "fleet");
    ASSERT_FALSE(short_key);
    EXPECT_EQ(short_key.error().code, ota::ErrorCode::key_invalid);
    EXPECT_NE(short_key.error().message.find("--encrypt-key: " + (dir / "short.key").string()), std::string::npos)
        << short_key.error().message;
    EXPECT_FALSE(ota::publisher::load_encryption_key(dir / "absent.key", "fleet"));
    for (const std::string& id : std::vector<std::string>{"", ".hidden", "a/b", std::string(65, 'k')}) {
        auto k = ota::publisher::load_encryption_key(dir / "fleet.key", id);
        ASSERT_FALSE(k) << id;
        EXPECT_NE(k.error().message.find("--encrypt-key-id"), std::string::npos) << k.error().message;
    }
    auto raw = ota::publisher::load_encryption_key(dir / "fleet.key", "fleet_2026.v2");
    ASSERT_TRUE(raw);
    EXPECT_EQ(raw->key, std::string(32, '\xcc'));
}
