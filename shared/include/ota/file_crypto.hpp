// AES-256-GCM for artifacts encrypted at rest (docs/protocol.md, `artifact.encryption`): a
// 32-byte key that CI (`ota-publish publish --encrypt-key`) and the devices
// (<decrypt_keys_dir>/<key_id>.key) hold, a random 12-byte IV and the 16-byte tag, both carried
// in the signed manifest as base64. Files are processed in 1 MiB chunks, so a 1 GiB model is
// never held in memory; GCM adds no padding (the ciphertext is as long as the plaintext).
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "ota/error.hpp"

namespace ota::crypto {

inline constexpr std::string_view aes_256_gcm = "aes-256-gcm";  // the manifest's `alg`
inline constexpr std::size_t aes_key_size = 32;

// The manifest's `iv` and `tag` (standard base64 of 12 and 16 bytes).
struct GcmParams {
    std::string iv;
    std::string tag;
};

// Encrypt `in` into `out` (written atomically: temp file, fsync, rename; see ota/files.hpp) with
// `key` (32 raw bytes) and a fresh random IV. key_invalid for a key of another size.
[[nodiscard]] Expected<GcmParams> encrypt_file(const std::filesystem::path& in, const std::filesystem::path& out,
                                               std::string_view key);

// Decrypt `in` chunk by chunk, handing the plaintext to `sink`. The plaintext is authentic only
// once this returns success: on decrypt_failed (wrong key; altered ciphertext, IV or tag) the
// caller must throw away what `sink` received. A `sink` error ends it with that error.
using PlaintextSink = std::function<Expected<void>(std::string_view chunk)>;
[[nodiscard]] Expected<void> decrypt_stream(const std::filesystem::path& in, std::string_view key, const GcmParams& params,
                                            const PlaintextSink& sink);

// Decrypt `in` into `out` (atomically, with `mode`): `out` appears only when authentication
// succeeded. decrypt_failed as decrypt_stream.
[[nodiscard]] Expected<void> decrypt_file(const std::filesystem::path& in, const std::filesystem::path& out,
                                          std::string_view key, const GcmParams& params, unsigned mode = 0644);

// A key file's content: 32 raw bytes, or 64 hex characters (surrounding whitespace ignored, so
// `openssl rand -hex 32 > fleet.key` makes one). key_invalid naming `source` otherwise.
[[nodiscard]] Expected<std::string> parse_aes_key(std::string_view content, std::string_view source);
// Read and parse a key file (io_error when it cannot be read).
[[nodiscard]] Expected<std::string> load_aes_key(const std::filesystem::path& file);

}  // namespace ota::crypto
