// The root of trust for release keys (docs/security.md, "Keys"; docs/protocol.md, "Keyset").
//
// An offline root key's only job is to sign the keyset: the list of release keys devices trust,
// with a version that only increases and an expiry. Devices are provisioned with the root's
// public key; from the first keyset they accept on, they trust exactly its keys.
//
// Document on the wire (retained on <prefix>/keyset):
//   {"keyset": {"schema":1, "version":N, "created":"...", "expires":"...",
//               "root": {"key_id":"<16 hex>", "public_key":"<base64 of the raw 32 bytes>"},
//               "keys": [{"key_id":"...", "public_key":"...", "expires":"..." (optional)}],
//               "revoked": ["<key id>", ...]},
//    "signatures": [{"key_id":"<16 hex>", "signature":"<base64 Ed25519>"}]}
// Signed bytes: "ota-keyset-v1\n" + the keyset object in the canonical form of manifest.hpp.
// A keyset is accepted as the successor of the one trusted (or of the provisioned root) when it is
// signed by the trusted root; when it names another root (root rotation), also by that new root,
// which is trusted from then on. Unknown fields are refused.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ota/crypto.hpp"
#include "ota/error.hpp"
#include "ota/time.hpp"

namespace ota {

inline constexpr int keyset_schema = 1;
inline constexpr std::string_view keyset_signed_prefix = "ota-keyset-v1\n";

struct KeysetKey {
    crypto::PublicKey key;
    std::optional<Timestamp> expires;  // none: valid as long as the keyset
};

struct Keyset {
    int schema{keyset_schema};
    std::uint64_t version{1};
    Timestamp created{};
    Timestamp expires{};
    crypto::PublicKey root;           // signs this keyset and its successor
    std::vector<KeysetKey> keys;      // the release keys to trust
    std::vector<std::string> revoked; // key ids taken out (kept so operators can read why)

    [[nodiscard]] nlohmann::ordered_json to_json() const;
    // keyset_invalid naming the field path ("keyset.keys[1].public_key: ...").
    [[nodiscard]] static Expected<Keyset> from_json(const nlohmann::json& json);
    // The release keys valid at `now` (keys past their own expiry left out).
    [[nodiscard]] crypto::TrustStore trust_store(Timestamp now) const;
    [[nodiscard]] const KeysetKey* find(std::string_view key_id) const;
};

struct KeysetSignature {
    std::string key_id;
    std::string signature;  // 64 raw bytes
};

struct SignedKeyset {
    Keyset keyset;
    std::vector<KeysetSignature> signatures;
    std::string text;  // the document as received
};

// The bytes root signatures cover.
[[nodiscard]] std::string keyset_signed_bytes(const Keyset& keyset);
// The document with a signature by each key (an unsigned draft with none).
[[nodiscard]] std::string keyset_document(const Keyset& keyset, const std::vector<const crypto::PrivateKey*>& signers);
// Parse a document (signatures are not checked here); `what` names the input in errors.
[[nodiscard]] Expected<SignedKeyset> parse_keyset(std::string_view text, std::string_view what);
// Signed by `trusted_root`, and by the keyset's own root when that is another key.
// signature_invalid (a signature that does not verify, or a missing one), keyset_invalid.
[[nodiscard]] Expected<void> verify_keyset(const SignedKeyset& doc, const crypto::PublicKey& trusted_root,
                                           std::string_view what);

// A device's trust: the provisioned root and the newest keyset it accepted, kept in one file
// written atomically before it is used.
class KeysetStore {
public:
    enum class Offer { accepted, same, older };

    // Reads `state_file` when it exists (a keyset accepted before; checked against its own root:
    // a damaged file is an error, never silently dropped).
    [[nodiscard]] static Expected<KeysetStore> open(crypto::PublicKey provisioned_root, std::filesystem::path state_file);

    // Verify `text` as the successor of what is trusted and, when it is newer, persist it, then
    // use it. An older version (a replay) is `older`, the same document `same`: both change nothing.
    // Errors: json_invalid, keyset_invalid (also: same version, other content), signature_invalid,
    // unknown_key (signed by a key that is not the trusted root), keyset_expired (already expired),
    // io_error (not persisted: not used either).
    [[nodiscard]] Expected<Offer> offer(std::string_view text, Timestamp now, std::string_view what);

    [[nodiscard]] const std::optional<SignedKeyset>& current() const { return current_; }
    [[nodiscard]] const crypto::PublicKey& root() const;
    // The release keys to trust at `now`: the keyset's once one was accepted, else `provisioned`
    // (the keys a device was set up with). keyset_expired when the accepted keyset has expired:
    // new installs stop until a fresh keyset arrives (a freeze is seen, not silently served).
    [[nodiscard]] Expected<crypto::TrustStore> release_keys(Timestamp now, const crypto::TrustStore& provisioned) const;

private:
    KeysetStore(crypto::PublicKey root, std::filesystem::path file) : provisioned_(std::move(root)), file_(std::move(file)) {}
    crypto::PublicKey provisioned_;
    std::filesystem::path file_;
    std::optional<SignedKeyset> current_;
};

[[nodiscard]] std::string_view to_string(KeysetStore::Offer offer) noexcept;

}  // namespace ota
