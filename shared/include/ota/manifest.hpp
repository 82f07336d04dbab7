// The release manifest and its signed envelope (docs/protocol.md, "Releases").
//
// Envelope on the wire (one JSON object):
//   {"manifest": { ...fields below..., "key_id": "<16 hex>" }, "signature": "<base64 Ed25519>"}
//
// Signed bytes: the ASCII line "ota-release-v1\n" followed by the manifest object in canonical
// form: keys sorted by byte value, no insignificant whitespace, strings as UTF-8 with only the
// escapes JSON requires (\" \\ \b \f \n \r \t, \u00XX for other control characters), integers in
// plain decimal. The manifest holds no floating-point numbers. Key order and whitespace on the
// wire therefore do not matter; any change of a value does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ota/crypto.hpp"
#include "ota/error.hpp"
#include "ota/time.hpp"
#include "ota/version.hpp"

namespace ota {

inline constexpr int manifest_schema = 1;
inline constexpr std::string_view signed_bytes_prefix = "ota-release-v1\n";

enum class InstallType { file, archive, docker_image, binary, self };
[[nodiscard]] std::string_view to_string(InstallType type) noexcept;  // "file" ... "docker-image"
[[nodiscard]] Expected<InstallType> parse_install_type(std::string_view name);

struct Encryption {
    std::string alg{"aes-256-gcm"};
    std::string key_id;  // which provisioned device key decrypts it
    std::string iv;      // base64, 12 bytes
    std::string tag;     // base64, 16 bytes
    bool operator==(const Encryption&) const = default;
};

struct Artifact {
    std::string url;            // https://...
    std::uint64_t size{0};      // bytes at the URL
    std::string sha256;         // lowercase hex of the bytes at the URL
    std::optional<Encryption> encryption;
    bool operator==(const Artifact&) const = default;
};

struct Install {
    InstallType type{InstallType::file};
    std::string target;   // file/archive: directory; binary: path of the binary
    std::string service;  // docker-image: compose service; binary: service to restart (optional)
    bool operator==(const Install&) const = default;
};

struct Compatibility {
    std::vector<std::string> platforms;  // e.g. "linux/arm64"; empty = any platform
    std::string min_agent_version;       // semver; empty = any agent
    bool operator==(const Compatibility&) const = default;
};

struct Manifest {
    int schema{manifest_schema};
    std::string component;
    std::string version;
    VersionScheme version_scheme{VersionScheme::semver};
    std::string channel;
    Artifact artifact;
    Install install;
    Compatibility compatibility;
    Timestamp created{};
    std::optional<Timestamp> expires;
    bool rollback{false};  // a signed rollback: agents may install it over a newer version
    std::string key_id;
    bool operator==(const Manifest&) const = default;

    [[nodiscard]] nlohmann::ordered_json to_json() const;
    // Every problem is a manifest_invalid error naming the field path ("manifest.artifact.size:
    // ..."); an unknown schema is schema_unsupported; unknown fields are refused.
    [[nodiscard]] static Expected<Manifest> from_json(const nlohmann::json& json);
    [[nodiscard]] Expected<Version> parsed_version() const { return Version::parse(version, version_scheme); }
};

// The exact bytes a signature covers (see the top of this file).
[[nodiscard]] std::string signed_bytes(const nlohmann::json& manifest);

// Sign: sets manifest.key_id to the key's id and returns the envelope as compact JSON text.
[[nodiscard]] std::string make_envelope(Manifest manifest, const crypto::PrivateKey& key);

struct VerifiedRelease {
    Manifest manifest;
    std::string envelope;  // the envelope text as received (forwarded unchanged)
};

// Parse and verify an envelope: JSON, envelope shape, schema, trusted key id, signature over the
// signed bytes, manifest fields, then expiry against `now`. `what` names the input in errors
// (a file name or a topic).
[[nodiscard]] Expected<VerifiedRelease> open_envelope(std::string_view text, const crypto::TrustStore& trusted,
                                                      Timestamp now, std::string_view what);

}  // namespace ota
