// Hashing, Ed25519 signing keys and trusted key sets (OpenSSL EVP behind this header).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ota/error.hpp"

namespace ota::crypto {

// Streaming SHA-256.
class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    void update(std::string_view data);
    void update(const void* data, std::size_t size);
    // Lowercase hex of the digest; the object cannot be updated afterwards.
    [[nodiscard]] std::string hex();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

[[nodiscard]] std::string sha256_hex(std::string_view data);

struct FileDigest {
    std::uint64_t size{0};
    std::string sha256;  // lowercase hex
};
// Stream a file through SHA-256 (1 MiB reads).
[[nodiscard]] Expected<FileDigest> sha256_file(const std::filesystem::path& path);

// Standard base64 (with padding). decode returns nullopt-like error on bad input.
[[nodiscard]] std::string base64_encode(std::string_view bytes);
[[nodiscard]] Expected<std::string> base64_decode(std::string_view text);

// An Ed25519 public key. Its key id is the first 8 bytes of SHA-256 over the raw 32-byte key,
// in lowercase hex (16 characters).
class PublicKey {
public:
    [[nodiscard]] static Expected<PublicKey> from_pem(std::string_view pem);
    [[nodiscard]] static Expected<PublicKey> load(const std::filesystem::path& pem_file);
    [[nodiscard]] static Expected<PublicKey> from_raw(std::string_view raw32);
    [[nodiscard]] const std::string& raw() const { return raw_; }
    [[nodiscard]] const std::string& key_id() const { return key_id_; }
    [[nodiscard]] std::string to_pem() const;
    // True only when `signature` (64 raw bytes) is a valid Ed25519 signature of `message`.
    [[nodiscard]] bool verify(std::string_view message, std::string_view signature) const;

private:
    std::string raw_;
    std::string key_id_;
};

class PrivateKey {
public:
    [[nodiscard]] static PrivateKey generate();
    [[nodiscard]] static Expected<PrivateKey> from_pem(std::string_view pem);
    [[nodiscard]] static Expected<PrivateKey> load(const std::filesystem::path& pem_file);
    [[nodiscard]] std::string to_pem() const;  // PKCS#8, as `openssl genpkey -algorithm ed25519`
    [[nodiscard]] const PublicKey& public_key() const { return public_; }
    [[nodiscard]] std::string sign(std::string_view message) const;  // 64 raw bytes

private:
    std::string seed_;  // the raw 32-byte private key
    PublicKey public_;
};

// The keys a verifier trusts, by key id. Holding several lets keys rotate: sign with the new
// key while devices still trust the old one, then drop the old one.
class TrustStore {
public:
    void add(const PublicKey& key);
    // Load a PEM public key file, or every *.pub / *.pem file in a directory.
    [[nodiscard]] Expected<void> load(const std::filesystem::path& file_or_dir);
    [[nodiscard]] const PublicKey* find(std::string_view key_id) const;
    [[nodiscard]] std::size_t size() const { return keys_.size(); }
    [[nodiscard]] std::vector<std::string> key_ids() const;
    // unknown_key if the id is not trusted, signature_invalid if it does not verify.
    [[nodiscard]] Expected<void> verify(std::string_view key_id, std::string_view message,
                                        std::string_view signature) const;

private:
    std::map<std::string, PublicKey, std::less<>> keys_;
};

// The subject CN of the first certificate in a PEM file: the MQTT user name the broker takes
// from a client certificate (use_identity_as_username). io_error if the file cannot be read,
// key_invalid if it holds no certificate or the certificate has no CN.
[[nodiscard]] Expected<std::string> certificate_common_name(const std::filesystem::path& pem_file);

}  // namespace ota::crypto
