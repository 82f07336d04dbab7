#include "ota/crypto.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "ota/files.hpp"

namespace ota::crypto {
namespace {

struct PkeyFree {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxFree {
    void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BioFree {
    void operator()(BIO* p) const { BIO_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using Bio = std::unique_ptr<BIO, BioFree>;

std::string openssl_error() {
    const unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (e == 0) return "unknown OpenSSL error";
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

std::string to_hex(const unsigned char* data, std::size_t size) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out(size * 2, '0');
    for (std::size_t i = 0; i < size; ++i) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 0xf];
    }
    return out;
}

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

Bio mem_bio(std::string_view pem) {
    return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

std::string bio_string(BIO* bio) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    return std::string(data, static_cast<std::size_t>(n));
}

std::string raw_public(EVP_PKEY* key) {
    std::string raw(32, '\0');
    std::size_t len = raw.size();
    EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(raw.data()), &len);
    raw.resize(len);
    return raw;
}

}  // namespace

struct Sha256::Impl {
    MdCtx ctx{EVP_MD_CTX_new()};
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) { EVP_DigestInit_ex(impl_->ctx.get(), EVP_sha256(), nullptr); }
Sha256::~Sha256() = default;
void Sha256::update(std::string_view data) { update(data.data(), data.size()); }
void Sha256::update(const void* data, std::size_t size) { EVP_DigestUpdate(impl_->ctx.get(), data, size); }
std::string Sha256::hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(impl_->ctx.get(), md, &len);
    return to_hex(md, len);
}

std::string sha256_hex(std::string_view data) {
    Sha256 h;
    h.update(data);
    return h.hex();
}

Expected<FileDigest> sha256_file(const std::filesystem::path& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return fail(ErrorCode::io_error, "cannot read " + path.string() + ": " + std::strerror(errno));
    Sha256 h;
    FileDigest d;
    std::vector<char> buf(1 << 20);
    while (true) {
        const auto n = std::fread(buf.data(), 1, buf.size(), f);
        if (n > 0) {
            h.update(buf.data(), n);
            d.size += n;
        }
        if (n < buf.size()) {
            const bool err = std::ferror(f) != 0;
            std::fclose(f);
            if (err) return fail(ErrorCode::io_error, "cannot read " + path.string() + ": read error");
            break;
        }
    }
    d.sha256 = h.hex();
    return d;
}

std::string base64_encode(std::string_view in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes(in), static_cast<int>(in.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

Expected<std::string> base64_decode(std::string_view in) {
    auto bad = [&] { return fail(ErrorCode::json_invalid, "not valid base64"); };
    if (in.size() % 4 != 0) return bad();
    std::size_t pad = 0;
    for (std::size_t i = 0; i < in.size(); ++i) {
        const char c = in[i];
        const bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
        if (c == '=' && i >= in.size() - 2) {
            ++pad;
            continue;
        }
        if (!alpha || pad > 0) return bad();
    }
    std::string out(in.size() / 4 * 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes(in), static_cast<int>(in.size()));
    if (n < 0) return bad();
    out.resize(static_cast<std::size_t>(n) - pad);
    // Canonical form only: unused bits in the last character must be zero, so that one text
    // maps to one byte string (a flipped padding bit must not verify as the same signature).
    if (base64_encode(out) != in) return bad();
    return out;
}

// --- PublicKey ---

Expected<PublicKey> PublicKey::from_raw(std::string_view raw32) {
    if (raw32.size() != 32) return fail(ErrorCode::key_invalid, "an Ed25519 public key is 32 bytes");
    PublicKey k;
    k.raw_ = std::string(raw32);
    k.key_id_ = sha256_hex(raw32).substr(0, 16);
    return k;
}

Expected<PublicKey> PublicKey::from_pem(std::string_view pem) {
    auto bio = mem_bio(pem);
    Pkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    if (!key) {
        // A private key file also holds the public key; accept it for convenience.
        auto bio2 = mem_bio(pem);
        key.reset(PEM_read_bio_PrivateKey(bio2.get(), nullptr, nullptr, nullptr));
    }
    if (!key) return fail(ErrorCode::key_invalid, "not a PEM public key (" + openssl_error() + ")");
    if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_ED25519) {
        ERR_clear_error();
        return fail(ErrorCode::key_invalid, "not an Ed25519 key");
    }
    ERR_clear_error();
    return from_raw(raw_public(key.get()));
}

Expected<PublicKey> PublicKey::load(const std::filesystem::path& file) {
    auto text = read_file(file, 1 << 20);
    if (!text) return std::unexpected(text.error().with_context("public key"));
    auto key = from_pem(*text);
    if (!key) return std::unexpected(key.error().with_context("public key " + file.string()));
    return key;
}

std::string PublicKey::to_pem() const {
    Pkey key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, bytes(raw_), raw_.size()));
    Bio bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_PUBKEY(bio.get(), key.get());
    return bio_string(bio.get());
}

bool PublicKey::verify(std::string_view message, std::string_view signature) const {
    if (signature.size() != 64 || raw_.size() != 32) return false;
    Pkey key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, bytes(raw_), raw_.size()));
    MdCtx ctx(EVP_MD_CTX_new());
    if (!key || !ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) {
        ERR_clear_error();
        return false;
    }
    const int rc = EVP_DigestVerify(ctx.get(), bytes(signature), signature.size(), bytes(message), message.size());
    ERR_clear_error();
    return rc == 1;
}

// --- PrivateKey ---

PrivateKey PrivateKey::generate() {
    std::string seed(32, '\0');
    if (RAND_priv_bytes(reinterpret_cast<unsigned char*>(seed.data()), 32) != 1) std::abort();
    Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, bytes(seed), seed.size()));
    PrivateKey k;
    k.seed_ = seed;
    k.public_ = *PublicKey::from_raw(raw_public(key.get()));
    return k;
}

Expected<PrivateKey> PrivateKey::from_pem(std::string_view pem) {
    auto bio = mem_bio(pem);
    Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (!key) return fail(ErrorCode::key_invalid, "not a PEM private key (" + openssl_error() + ")");
    if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_ED25519) return fail(ErrorCode::key_invalid, "not an Ed25519 key");
    PrivateKey k;
    k.seed_.assign(32, '\0');
    std::size_t len = 32;
    if (EVP_PKEY_get_raw_private_key(key.get(), reinterpret_cast<unsigned char*>(k.seed_.data()), &len) != 1 || len != 32)
        return fail(ErrorCode::key_invalid, "cannot read the Ed25519 private key (" + openssl_error() + ")");
    k.public_ = *PublicKey::from_raw(raw_public(key.get()));
    return k;
}

Expected<PrivateKey> PrivateKey::load(const std::filesystem::path& file) {
    auto text = read_file(file, 1 << 20);
    if (!text) return std::unexpected(text.error().with_context("signing key"));
    auto key = from_pem(*text);
    if (!key) return std::unexpected(key.error().with_context("signing key " + file.string()));
    return key;
}

std::string PrivateKey::to_pem() const {
    Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, bytes(seed_), seed_.size()));
    Bio bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    return bio_string(bio.get());
}

std::string PrivateKey::sign(std::string_view message) const {
    Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, bytes(seed_), seed_.size()));
    MdCtx ctx(EVP_MD_CTX_new());
    std::string sig(64, '\0');
    std::size_t len = sig.size();
    if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
        EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, bytes(message), message.size()) != 1)
        std::abort();  // cannot happen with a valid in-memory key
    return sig;
}

// --- TrustStore ---

void TrustStore::add(const PublicKey& key) { keys_.insert_or_assign(key.key_id(), key); }

Expected<void> TrustStore::load(const std::filesystem::path& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
        std::vector<std::filesystem::path> files;
        for (const auto& e : std::filesystem::directory_iterator(path, ec)) {
            const auto ext = e.path().extension();
            if (e.is_regular_file() && (ext == ".pub" || ext == ".pem")) files.push_back(e.path());
        }
        if (ec) return fail(ErrorCode::io_error, "cannot list trusted keys in " + path.string() + ": " + ec.message());
        if (files.empty()) return fail(ErrorCode::key_invalid, "no *.pub or *.pem keys in " + path.string());
        for (const auto& f : files) {
            auto key = PublicKey::load(f);
            if (!key) return std::unexpected(key.error());
            add(*key);
        }
        return {};
    }
    auto key = PublicKey::load(path);
    if (!key) return std::unexpected(key.error());
    add(*key);
    return {};
}

const PublicKey* TrustStore::find(std::string_view key_id) const {
    const auto it = keys_.find(key_id);
    return it == keys_.end() ? nullptr : &it->second;
}

std::vector<std::string> TrustStore::key_ids() const {
    std::vector<std::string> ids;
    for (const auto& [id, _] : keys_) ids.push_back(id);
    return ids;
}

Expected<void> TrustStore::verify(std::string_view key_id, std::string_view message, std::string_view signature) const {
    const auto* key = find(key_id);
    if (!key) {
        std::string known;
        for (const auto& id : key_ids()) known += (known.empty() ? "" : ", ") + id;
        return fail(ErrorCode::unknown_key, "key id '" + std::string(key_id) + "' is not trusted (trusted: " +
                                                (known.empty() ? "none" : known) + ")");
    }
    if (!key->verify(message, signature))
        return fail(ErrorCode::signature_invalid, "signature does not verify with key " + std::string(key_id));
    return {};
}

}  // namespace ota::crypto
