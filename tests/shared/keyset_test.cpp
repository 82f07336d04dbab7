// The root of trust for release keys: a device trusts exactly the keys of the newest keyset its
// root signed, persisted before use; replays, forgeries, expiry and root rotation.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kit.hpp"
#include "ota/keyset.hpp"
#include "ota/manifest.hpp"

namespace kit = ota::testkit;
using ota::ErrorCode;
using ota::Keyset;
using ota::KeysetStore;
using ota::crypto::PrivateKey;
using namespace std::chrono_literals;

namespace {

const ota::Timestamp t0 = *ota::parse_utc("2026-12-01T00:00:00Z");

Keyset keyset(std::uint64_t version, const PrivateKey& root, std::vector<const PrivateKey*> keys,
              std::chrono::hours valid = std::chrono::hours(24 * 365)) {
    Keyset k;
    k.version = version;
    k.created = t0;
    k.expires = t0 + valid;
    k.root = root.public_key();
    for (const auto* key : keys) k.keys.push_back({key->public_key(), std::nullopt});
    return k;
}

std::string release(const PrivateKey& key, const std::string& version) {
    ota::Manifest m;
    m.component = "app";
    m.version = version;
    m.channel = "stable";
    m.artifact = {.url = "https://x/a", .size = 1, .sha256 = std::string(64, 'a'), .encryption = std::nullopt};
    m.install.target = "/x";
    m.created = t0;
    return ota::make_envelope(m, key);
}

struct Rig {
    kit::TempDir dir{"ota-keyset"};
    PrivateKey root = PrivateKey::generate();
    PrivateKey release_a = PrivateKey::generate(), release_b = PrivateKey::generate();
    ota::crypto::TrustStore provisioned;  // the release keys a device was set up with
    std::filesystem::path file() const { return dir / "keyset.json"; }
    KeysetStore open() { return std::move(*KeysetStore::open(root.public_key(), file())); }
    Rig() { provisioned.add(release_a.public_key()); }
};

// Can a release signed by `key` be installed with the store's trust at `now`?
ota::Expected<void> installable(const KeysetStore& s, const Rig& rig, const PrivateKey& key, ota::Timestamp now) {
    auto keys = s.release_keys(now, rig.provisioned);
    if (!keys) return std::unexpected(keys.error());
    auto r = ota::open_envelope(release(key, "1.0.0"), *keys, now, "release");
    if (!r) return std::unexpected(r.error());
    return {};
}

}  // namespace

TEST(Keyset, AcceptedOnlyWhenTheRootSignedItThenItsKeysAreExactlyTheTrustedOnes) {
    Rig rig;
    auto store = rig.open();
    // before any keyset: the provisioned keys
    EXPECT_TRUE(installable(store, rig, rig.release_a, t0 + 1h));
    EXPECT_EQ(installable(store, rig, rig.release_b, t0 + 1h).error().code, ErrorCode::unknown_key);

    // unsigned, signed by a release key, signed by a stranger: refused, nothing persisted
    const auto k1 = keyset(1, rig.root, {&rig.release_b});
    const auto stranger = PrivateKey::generate();
    EXPECT_EQ(store.offer(ota::keyset_document(k1, {}), t0 + 1h, "keyset").error().code, ErrorCode::signature_invalid);
    EXPECT_EQ(store.offer(ota::keyset_document(k1, {&rig.release_a}), t0 + 1h, "keyset").error().code, ErrorCode::unknown_key);
    EXPECT_EQ(store.offer(ota::keyset_document(k1, {&stranger}), t0 + 1h, "keyset").error().code, ErrorCode::unknown_key);
    // a valid signature over other bytes (the version changed after signing)
    auto tampered = nlohmann::json::parse(ota::keyset_document(k1, {&rig.root}));
    tampered["keyset"]["version"] = 7;
    const auto bad = store.offer(tampered.dump(), t0 + 1h, "keyset on ota/v1/keyset");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, ErrorCode::signature_invalid);
    EXPECT_NE(bad.error().message.find("ota/v1/keyset"), std::string::npos) << bad.error().message;
    EXPECT_FALSE(std::filesystem::exists(rig.file()));
    EXPECT_FALSE(store.current());

    // signed by the root: accepted, persisted, and from now on only its keys are trusted
    ASSERT_EQ(store.offer(ota::keyset_document(k1, {&rig.root}), t0 + 1h, "keyset").value(), KeysetStore::Offer::accepted);
    EXPECT_TRUE(std::filesystem::exists(rig.file()));
    EXPECT_TRUE(installable(store, rig, rig.release_b, t0 + 2h));
    EXPECT_EQ(installable(store, rig, rig.release_a, t0 + 2h).error().code, ErrorCode::unknown_key);
    // after a restart: the same, from the file
    auto again = rig.open();
    ASSERT_TRUE(again.current());
    EXPECT_EQ(again.current()->keyset.version, 1u);
    EXPECT_TRUE(installable(again, rig, rig.release_b, t0 + 2h));
}

TEST(Keyset, RevokingAKeyRejectsItsReleasesAndAnOldKeysetReplayedIsIgnored) {
    Rig rig;
    auto store = rig.open();
    const auto v1 = ota::keyset_document(keyset(1, rig.root, {&rig.release_a}), {&rig.root});
    ASSERT_TRUE(store.offer(v1, t0, "keyset"));
    // rotate release keys: b added, then a revoked
    auto k2 = keyset(2, rig.root, {&rig.release_a, &rig.release_b});
    ASSERT_EQ(*store.offer(ota::keyset_document(k2, {&rig.root}), t0, "keyset"), KeysetStore::Offer::accepted);
    EXPECT_TRUE(installable(store, rig, rig.release_a, t0 + 1h));
    EXPECT_TRUE(installable(store, rig, rig.release_b, t0 + 1h));
    auto k3 = keyset(3, rig.root, {&rig.release_b});
    k3.revoked = {rig.release_a.public_key().key_id()};
    ASSERT_EQ(*store.offer(ota::keyset_document(k3, {&rig.root}), t0, "keyset"), KeysetStore::Offer::accepted);
    EXPECT_EQ(installable(store, rig, rig.release_a, t0 + 1h).error().code, ErrorCode::unknown_key);
    EXPECT_TRUE(installable(store, rig, rig.release_b, t0 + 1h));
    // the attacker who holds key a replays v2 (and v1): ignored, a stays revoked
    EXPECT_EQ(*store.offer(ota::keyset_document(k2, {&rig.root}), t0, "keyset"), KeysetStore::Offer::older);
    EXPECT_EQ(*store.offer(v1, t0, "keyset"), KeysetStore::Offer::older);
    EXPECT_EQ(installable(store, rig, rig.release_a, t0 + 1h).error().code, ErrorCode::unknown_key);
    EXPECT_EQ(rig.open().current()->keyset.version, 3u);
    // the same document again (retained, at every connect): same; the same version with other keys: refused
    EXPECT_EQ(*store.offer(ota::keyset_document(k3, {&rig.root}), t0, "keyset"), KeysetStore::Offer::same);
    auto k3b = keyset(3, rig.root, {&rig.release_a});
    EXPECT_EQ(store.offer(ota::keyset_document(k3b, {&rig.root}), t0, "keyset").error().code, ErrorCode::keyset_invalid);
}

TEST(Keyset, AnExpiredKeysetFreezesNewInstallsWithAClearError) {
    Rig rig;
    auto store = rig.open();
    const auto k1 = keyset(1, rig.root, {&rig.release_a}, std::chrono::hours(24));
    // one that has already expired is not accepted
    auto late = store.offer(ota::keyset_document(k1, {&rig.root}), t0 + std::chrono::hours(25), "keyset");
    ASSERT_FALSE(late);
    EXPECT_EQ(late.error().code, ErrorCode::keyset_expired);
    ASSERT_TRUE(store.offer(ota::keyset_document(k1, {&rig.root}), t0 + 1h, "keyset"));
    EXPECT_TRUE(installable(store, rig, rig.release_a, t0 + 23h));
    // the attacker withholds every newer keyset: once it expires, nothing new is installed
    const auto frozen = installable(store, rig, rig.release_a, t0 + std::chrono::hours(24));
    ASSERT_FALSE(frozen);
    EXPECT_EQ(frozen.error().code, ErrorCode::keyset_expired);
    EXPECT_NE(frozen.error().message.find("expired at 2026-12-02T00:00:00Z"), std::string::npos) << frozen.error().message;
    // a fresh keyset ends the freeze
    ASSERT_TRUE(store.offer(ota::keyset_document(keyset(2, rig.root, {&rig.release_a}), {&rig.root}),
                            t0 + std::chrono::hours(30), "keyset"));
    EXPECT_TRUE(installable(store, rig, rig.release_a, t0 + std::chrono::hours(30)));
    // a key may expire before its keyset does
    auto k3 = keyset(3, rig.root, {&rig.release_a, &rig.release_b});
    k3.keys[0].expires = t0 + std::chrono::hours(40);
    ASSERT_TRUE(store.offer(ota::keyset_document(k3, {&rig.root}), t0 + std::chrono::hours(31), "keyset"));
    EXPECT_TRUE(installable(store, rig, rig.release_a, t0 + std::chrono::hours(39)));
    EXPECT_EQ(installable(store, rig, rig.release_a, t0 + std::chrono::hours(41)).error().code, ErrorCode::unknown_key);
    EXPECT_TRUE(installable(store, rig, rig.release_b, t0 + std::chrono::hours(41)));
}

TEST(Keyset, TheRootRotatesOnlyWithASignatureOfTheOldRootAndOfTheNew) {
    Rig rig;
    auto store = rig.open();
    ASSERT_TRUE(store.offer(ota::keyset_document(keyset(1, rig.root, {&rig.release_a}), {&rig.root}), t0, "keyset"));
    const auto root2 = PrivateKey::generate();
    const auto k2 = keyset(2, root2, {&rig.release_a});
    // the new root alone (an attacker with a key of their own), or the old root alone: refused
    EXPECT_EQ(store.offer(ota::keyset_document(k2, {&root2}), t0, "keyset").error().code, ErrorCode::unknown_key);
    EXPECT_FALSE(store.offer(ota::keyset_document(k2, {&rig.root}), t0, "keyset"));
    EXPECT_EQ(store.root().key_id(), rig.root.public_key().key_id());
    // both: accepted; the new root is trusted from now on, also after a restart
    ASSERT_EQ(*store.offer(ota::keyset_document(k2, {&rig.root, &root2}), t0, "keyset"), KeysetStore::Offer::accepted);
    EXPECT_EQ(store.root().key_id(), root2.public_key().key_id());
    auto again = rig.open();
    EXPECT_EQ(again.root().key_id(), root2.public_key().key_id());
    // the old root can sign nothing any more (its compromise no longer matters)
    const auto k3 = keyset(3, root2, {&rig.release_b});
    EXPECT_EQ(again.offer(ota::keyset_document(k3, {&rig.root}), t0, "keyset").error().code, ErrorCode::unknown_key);
    ASSERT_EQ(*again.offer(ota::keyset_document(k3, {&root2}), t0, "keyset"), KeysetStore::Offer::accepted);
    EXPECT_TRUE(installable(again, rig, rig.release_b, t0 + 1h));
}

TEST(Keyset, MalformedDocumentsAreRefusedNamingTheField) {
    Rig rig;
    auto store = rig.open();
    auto doc = [&](const std::function<void(nlohmann::json&)>& edit) {
        auto j = nlohmann::json::parse(ota::keyset_document(keyset(1, rig.root, {&rig.release_a}), {&rig.root}));
        edit(j);
        return j.dump();
    };
    struct Case {
        std::string text;
        ErrorCode code;
        std::string needle;
    } cases[] = {
        {"{nope", ErrorCode::json_invalid, "malformed JSON"},
        {"[]", ErrorCode::keyset_invalid, "expected a JSON object"},
        {doc([](auto& j) { j["keyset"]["version"] = 0; }), ErrorCode::keyset_invalid, "keyset.version"},
        {doc([](auto& j) { j["keyset"]["version"] = "2"; }), ErrorCode::keyset_invalid, "keyset.version"},
        {doc([](auto& j) { j["keyset"]["schema"] = 2; }), ErrorCode::schema_unsupported, "keyset.schema"},
        {doc([](auto& j) { j["keyset"]["expires"] = j["keyset"]["created"]; }), ErrorCode::keyset_invalid, "keyset.expires"},
        {doc([](auto& j) { j["keyset"]["keys"][0]["key_id"] = "0000000000000000"; }), ErrorCode::keyset_invalid, "keyset.keys[0].key_id"},
        {doc([](auto& j) { j["keyset"]["keys"][0]["public_key"] = "AAAA"; }), ErrorCode::keyset_invalid, "keyset.keys[0].public_key"},
        {doc([](auto& j) { j["keyset"]["keys"].push_back(j["keyset"]["keys"][0]); }), ErrorCode::keyset_invalid, "listed twice"},
        {doc([](auto& j) { j["keyset"]["revoked"] = {j["keyset"]["keys"][0]["key_id"]}; }), ErrorCode::keyset_invalid, "both trusted and revoked"},
        {doc([](auto& j) { j["keyset"]["extra"] = 1; }), ErrorCode::keyset_invalid, "keyset.extra: unknown field"},
        {doc([](auto& j) { j["signatures"] = "x"; }), ErrorCode::keyset_invalid, "document.signatures"},
        {doc([](auto& j) { j["signatures"][0]["signature"] = "AAAA"; }), ErrorCode::signature_invalid, "signatures[0].signature"},
        {doc([](auto& j) { j["keyset"]["root"] = 5; }), ErrorCode::keyset_invalid, "keyset.root"},
        {std::string(300000, ' '), ErrorCode::keyset_invalid, "larger than"},
    };
    for (const auto& c : cases) {
        auto r = store.offer(c.text, t0, "keyset on ota/v1/keyset");
        ASSERT_FALSE(r) << c.needle;
        EXPECT_EQ(r.error().code, c.code) << r.error().describe();
        EXPECT_NE(r.error().message.find(c.needle), std::string::npos) << r.error().describe();
        EXPECT_NE(r.error().message.find("ota/v1/keyset"), std::string::npos) << r.error().describe();
    }
    EXPECT_FALSE(store.current());
}

TEST(Keyset, AKeysetThatCannotBePersistedIsNotUsedAndADamagedFileIsAnError) {
    Rig rig;
    auto unwritable = std::move(*KeysetStore::open(rig.root.public_key(), rig.dir / "no-such-dir" / "keyset.json"));
    const auto k1 = ota::keyset_document(keyset(1, rig.root, {&rig.release_b}), {&rig.root});
    auto r = unwritable.offer(k1, t0, "keyset");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::io_error);
    EXPECT_FALSE(unwritable.current());
    EXPECT_TRUE(installable(unwritable, rig, rig.release_a, t0));  // still the trust it had

    auto store = rig.open();
    ASSERT_TRUE(store.offer(k1, t0, "keyset"));
    auto text = kit::read_file(rig.file());
    text[text.find("\"version\": 1")+11] = '9';  // a changed byte on disk
    kit::write_file(rig.file(), text);
    auto damaged = KeysetStore::open(rig.root.public_key(), rig.file());
    ASSERT_FALSE(damaged);
    EXPECT_EQ(damaged.error().code, ErrorCode::signature_invalid);
    EXPECT_NE(damaged.error().message.find(rig.file().string()), std::string::npos) << damaged.error().message;
}
