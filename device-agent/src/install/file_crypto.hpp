// AES-256-GCM for artifacts encrypted at rest (docs/protocol.md, `artifact.encryption`):
// a 32-byte key provisioned on the device as <keys_dir>/<key_id>.key, a 12-byte IV and a
// 16-byte tag carried in the signed manifest (base64). Files are processed in 1 MiB chunks,
// so a 1 GiB model is never held in memory.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "ota/error.hpp"
#include "ota/manifest.hpp"

namespace ota::agent {

struct EncryptionParams {
    std::string iv;   // base64 of 12 bytes
    std::string tag;  // base64 of 16 bytes
};

// Encrypt `in` into `out` (written atomically: temp file, fsync, rename) with `key` (32 raw
// bytes) and a random IV. For CI and tests; the manifest then carries
// {"alg": "aes-256-gcm", "key_id": ..., "iv": params.iv, "tag": params.tag} and the size and
// SHA-256 of `out`.
[[nodiscard]] Expected<EncryptionParams> encrypt_file(const std::filesystem::path& in, const std::filesystem::path& out,
                                                      std::string_view key);

// Decrypt `in` into the new file `out` (created with `mode`, fsync'd). decrypt_failed when the
// key is wrong or the ciphertext or tag was altered; `out` is removed on any failure.
[[nodiscard]] Expected<void> decrypt_file(const std::filesystem::path& in, const std::filesystem::path& out,
                                          std::string_view key, const Encryption& encryption, unsigned mode = 0644);

// The key for `key_id` from `<keys_dir>/<key_id>.key`: 32 raw bytes, or 64 hex characters
// (surrounding whitespace ignored). decrypt_failed naming the file when absent or malformed.
[[nodiscard]] Expected<std::string> load_decrypt_key(const std::filesystem::path& keys_dir, std::string_view key_id);

}  // namespace ota::agent
