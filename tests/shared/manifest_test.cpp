#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "ota/json.hpp"
#include "ota/manifest.hpp"

using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const ota::Timestamp t0 = *ota::parse_utc("2026-03-10T12:00:00Z");

ota::Manifest sample() {
    ota::Manifest m;
    m.component = "detection-model";
    m.version = "2026-03-10";
    m.version_scheme = ota::VersionScheme::date;
    m.channel = "stable";
    m.artifact.url = "https://artifacts.example/models/model-2026-03-10.trt";
    m.artifact.size = 1234;
    m.artifact.sha256 = std::string(64, 'a');
    m.install = {ota::InstallType::file, "/var/lib/models", ""};
    m.compatibility = {{"linux/arm64"}, "0.1.0"};
    m.created = t0;
    m.expires = t0 + std::chrono::days{90};
    m.key_id = "0123456789abcdef";
    return m;
}

json sample_json() { return json::parse(sample().to_json().dump()); }

}  // namespace

TEST(Manifest, RoundTripsThroughJson) {
    auto m = sample();
    m.artifact.encryption = ota::Encryption{"aes-256-gcm", "fleet-key-1", "AAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAA=="};
    m.rollback = true;
    auto back = ota::Manifest::from_json(json::parse(m.to_json().dump()));
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(*back, m);
    auto plain = ota::Manifest::from_json(sample_json());
    ASSERT_TRUE(plain) << plain.error().message;
    EXPECT_EQ(*plain, sample());
}

TEST(Manifest, EachMissingRequiredFieldIsNamed) {
    const std::vector<std::vector<std::string>> required = {
        {"component"}, {"version"}, {"version_scheme"}, {"channel"}, {"artifact"}, {"artifact", "url"},
        {"artifact", "size"}, {"artifact", "sha256"}, {"install"}, {"install", "type"}, {"install", "target"},
        {"created"}, {"key_id"},
    };
    for (const auto& path : required) {
        auto j = sample_json();
        std::string dotted = "manifest";
        json* node = &j;
        for (std::size_t i = 0; i + 1 < path.size(); ++i) node = &(*node)[path[i]];
        node->erase(path.back());
        for (const auto& p : path) dotted += "." + p;
        auto m = ota::Manifest::from_json(j);
        ASSERT_FALSE(m) << dotted;
        EXPECT_EQ(m.error().code, ota::ErrorCode::manifest_invalid) << dotted;
        EXPECT_EQ(m.error().message.rfind(dotted + ": missing", 0), 0u) << m.error().message;
    }
}

TEST(Manifest, EachWrongFieldGivesItsOwnError) {
    struct Case {
        const char* pointer;  // JSON pointer into the manifest
        json value;
        const char* expected_start;
    };
    const Case cases[] = {
        {"/component", 5, "manifest.component: expected a string"},
        {"/component", "a/b", "manifest.component: \"a/b\" is not a valid name"},
        {"/component", "", "manifest.component: must not be empty"},
        {"/version", "2026-13-10", "manifest.version: version '2026-13-10' is not a valid date version"},
        {"/version_scheme", "calver", "manifest.version_scheme: unknown version scheme 'calver'"},
        {"/channel", "#", "manifest.channel: \"#\" is not a valid name"},
        {"/artifact/url", "http://insecure.example/x", "manifest.artifact.url: must be an https:// URL"},
        {"/artifact/size", -1, "manifest.artifact.size: expected a non-negative integer"},
        {"/artifact/size", "12", "manifest.artifact.size: expected a non-negative integer"},
        {"/artifact/size", 0, "manifest.artifact.size: must be greater than 0"},
        {"/artifact/size", 1.5, "manifest.artifact.size: expected a non-negative integer"},
        {"/artifact/sha256", "ABC", "manifest.artifact.sha256: expected 64 lowercase hex"},
        {"/artifact/encryption", json{{"alg", "aes-128-cbc"}, {"key_id", "k"}, {"iv", "AAAAAAAAAAAAAAAA"}, {"tag", "AAAAAAAAAAAAAAAAAAAAAA=="}},
         "manifest.artifact.encryption.alg: unsupported algorithm"},
        {"/artifact/encryption", json{{"alg", "aes-256-gcm"}, {"key_id", "k"}, {"iv", "AAAA"}, {"tag", "AAAAAAAAAAAAAAAAAAAAAA=="}},
         "manifest.artifact.encryption.iv: expected base64 of 12 bytes"},
        {"/install/type", "rpm", "manifest.install.type: unknown install type \"rpm\""},
        {"/install/target", "relative/dir", "manifest.install.target: must be an absolute path"},
        {"/install/target", "/var/../etc", "manifest.install.target: must not contain '..'"},
        {"/compatibility/platforms", json::array({"Linux ARM"}), "manifest.compatibility.platforms[0]: \"Linux ARM\" is not a platform"},
        {"/compatibility/platforms", "linux/arm64", "manifest.compatibility.platforms: expected a list of strings"},
        {"/compatibility/min_agent_version", "one", "manifest.compatibility.min_agent_version: version 'one'"},
        {"/created", "2026-03-10 12:00", "manifest.created: expected a UTC time"},
        {"/expires", "2026-03-01T00:00:00Z", "manifest.expires: must be later than created"},
        {"/rollback", "yes", "manifest.rollback: expected true or false"},
        {"/key_id", "xyz", "manifest.key_id: expected 16 lowercase hex characters"},
        {"/surprise", 1, "manifest.surprise: unknown field"},
        {"/artifact/mirror", "https://x", "manifest.artifact.mirror: unknown field"},
    };
    for (const auto& c : cases) {
        auto j = sample_json();
        j[json::json_pointer(c.pointer)] = c.value;
        auto m = ota::Manifest::from_json(j);
        ASSERT_FALSE(m) << c.pointer;
        EXPECT_EQ(m.error().code, ota::ErrorCode::manifest_invalid) << c.pointer;
        EXPECT_EQ(m.error().message.rfind(c.expected_start, 0), 0u) << c.pointer << " gave: " << m.error().message;
    }
}

TEST(Manifest, DockerImageNeedsAService) {
    auto j = sample_json();
    j["install"] = {{"type", "docker-image"}};
    auto m = ota::Manifest::from_json(j);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().message.rfind("manifest.install.service: missing", 0), 0u) << m.error().message;
    j["install"]["service"] = "annotations";
    EXPECT_TRUE(ota::Manifest::from_json(j));
}

TEST(Manifest, UnknownSchemaIsRefusedClearly) {
    auto j = sample_json();
    j["schema"] = 2;
    auto m = ota::Manifest::from_json(j);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().code, ota::ErrorCode::schema_unsupported);
    EXPECT_NE(m.error().message.find("schema 1"), std::string::npos) << m.error().message;
}

TEST(SignedBytes, AreTheDocumentedCanonicalForm) {
    // Keys sorted, no whitespace, prefixed by the version line (docs/protocol.md).
    const json j = json::parse(R"({ "b": "x\ny", "a": {"d": 2, "c": [1, "é"]} })");
    EXPECT_EQ(ota::signed_bytes(j), "ota-release-v1\n{\"a\":{\"c\":[1,\"é\"],\"d\":2},\"b\":\"x\\ny\"}");
}

class Envelope : public ::testing::Test {
protected:
    ota::crypto::PrivateKey key = ota::crypto::PrivateKey::generate();
    ota::crypto::PrivateKey other = ota::crypto::PrivateKey::generate();
    ota::crypto::TrustStore trusted;
    void SetUp() override { trusted.add(key.public_key()); }
    [[nodiscard]] ota::Expected<ota::VerifiedRelease> open(const std::string& text) const {
        return ota::open_envelope(text, trusted, t0 + 1h, "test.json");
    }
};

TEST_F(Envelope, SignedEnvelopeVerifies) {
    const auto text = ota::make_envelope(sample(), key);
    auto r = open(text);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->manifest.key_id, key.public_key().key_id());
    EXPECT_EQ(r->manifest.version, "2026-03-10");
    EXPECT_EQ(r->envelope, text);
    // Pretty-printed or with keys reordered it is the same manifest: still valid.
    auto pretty = json::parse(text).dump(4);
    EXPECT_TRUE(open(pretty));
}

TEST_F(Envelope, EveryOneByteChangeFailsVerification) {
    const auto text = ota::make_envelope(sample(), key);
    int refused = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        for (const unsigned flip : {0x01u, 0x20u}) {
            auto tampered = text;
            tampered[i] = static_cast<char>(static_cast<unsigned char>(tampered[i]) ^ flip);
            auto r = open(tampered);
            EXPECT_FALSE(r) << "byte " << i << " ^ " << int(flip) << " accepted: " << tampered;
            refused += r ? 0 : 1;
        }
    }
    EXPECT_EQ(refused, static_cast<int>(text.size()) * 2);
}

TEST_F(Envelope, TamperedValueIsASignatureError) {
    auto j = json::parse(ota::make_envelope(sample(), key));
    j["manifest"]["artifact"]["size"] = 1235;
    auto r = open(j.dump());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ota::ErrorCode::signature_invalid);
    EXPECT_EQ(r.error().message.rfind("test.json: ", 0), 0u) << r.error().message;
}

TEST_F(Envelope, UnknownKeyIdFails) {
    auto r = open(ota::make_envelope(sample(), other));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ota::ErrorCode::unknown_key);
    EXPECT_NE(r.error().message.find(other.public_key().key_id()), std::string::npos);
}

TEST_F(Envelope, SignatureFromAnotherKeyUnderATrustedIdFails) {
    auto j = json::parse(ota::make_envelope(sample(), other));
    j["manifest"]["key_id"] = key.public_key().key_id();  // claim the trusted key
    auto r = open(j.dump());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ota::ErrorCode::signature_invalid);
}

TEST_F(Envelope, ASecondTrustedKeyPasses) {
    trusted.add(other.public_key());
    auto r1 = open(ota::make_envelope(sample(), other));
    ASSERT_TRUE(r1) << r1.error().message;
    EXPECT_EQ(r1->manifest.key_id, other.public_key().key_id());
    EXPECT_TRUE(open(ota::make_envelope(sample(), key)));
}

TEST_F(Envelope, ExpiredManifestIsRefused) {
    const auto text = ota::make_envelope(sample(), key);
    auto r = ota::open_envelope(text, trusted, t0 + std::chrono::days{91}, "t");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ota::ErrorCode::manifest_expired);
    EXPECT_NE(r.error().message.find("2026-06-08T12:00:00Z"), std::string::npos) << r.error().message;
}

TEST_F(Envelope, MalformedInputsAreNamedErrors) {
    struct Case {
        std::string text;
        ota::ErrorCode code;
        const char* needle;
    };
    const auto good = json::parse(ota::make_envelope(sample(), key));
    auto no_sig = good;
    no_sig.erase("signature");
    auto extra = good;
    extra["comment"] = "x";
    auto bad_b64 = good;
    bad_b64["signature"] = "not base64!";
    auto schema2 = good;
    schema2["manifest"]["schema"] = 2;
    const Case cases[] = {
        {"", ota::ErrorCode::json_invalid, "malformed JSON"},
        {"{\"manifest\": {", ota::ErrorCode::json_invalid, "malformed JSON"},
        {"[]", ota::ErrorCode::manifest_invalid, "envelope: expected a JSON object"},
        {no_sig.dump(), ota::ErrorCode::manifest_invalid, "envelope.signature: missing"},
        {extra.dump(), ota::ErrorCode::manifest_invalid, "envelope.comment: unknown field"},
        {bad_b64.dump(), ota::ErrorCode::signature_invalid, "envelope.signature: expected base64"},
        {schema2.dump(), ota::ErrorCode::schema_unsupported, "manifest.schema: 2 is not supported"},
    };
    for (const auto& c : cases) {
        auto r = open(c.text);
        ASSERT_FALSE(r) << c.text;
        EXPECT_EQ(r.error().code, c.code) << c.text << ": " << r.error().message;
        EXPECT_NE(r.error().message.find(c.needle), std::string::npos) << r.error().message;
        EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << "one line: " << r.error().message;
    }
}

// The example in docs/protocol.md is a real envelope and key: it must keep verifying, so the
// documented signed bytes stay true.
TEST(ProtocolDoc, ExampleEnvelopeVerifiesWithTheDocumentedKey) {
    std::ifstream in(std::string(OTA_SOURCE_DIR) + "/docs/protocol.md");
    ASSERT_TRUE(in) << "docs/protocol.md";
    const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto json_start = doc.find("```json\n{");
    ASSERT_NE(json_start, std::string::npos);
    const auto json_end = doc.find("\n```", json_start + 8);
    const auto envelope = doc.substr(json_start + 8, json_end - json_start - 8);
    const auto key_start = doc.find("-----BEGIN PUBLIC KEY-----");
    const auto key_end = doc.find("-----END PUBLIC KEY-----");
    ASSERT_NE(key_start, std::string::npos);
    auto key = ota::crypto::PublicKey::from_pem(doc.substr(key_start, key_end + 24 - key_start) + "\n");
    ASSERT_TRUE(key) << key.error().message;
    ota::crypto::TrustStore trusted;
    trusted.add(*key);
    const auto created = json::parse(envelope)["manifest"]["created"].get<std::string>();
    auto r = ota::open_envelope(envelope, trusted, *ota::parse_utc(created), "docs/protocol.md");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->manifest.component, "detection-model");
}
