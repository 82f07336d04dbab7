#include "install/file_crypto.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <memory>

#include "install/fsutil.hpp"
#include "ota/crypto.hpp"
#include "ota/files.hpp"

namespace ota::agent {
namespace {

namespace fs = std::filesystem;
using detail::Fd;
using detail::sys_fail;

constexpr std::size_t kChunk = 1 << 20;
constexpr std::size_t kKeySize = 32;
constexpr std::size_t kIvSize = 12;
constexpr std::size_t kTagSize = 16;

struct CtxFree {
    void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// Read `in` chunk by chunk, run each through `update`, write the output to `out_fd`.
template <typename Update>
Expected<void> pump(int in_fd, const fs::path& in, int out_fd, const fs::path& out, Update&& update) {
    std::string buf(kChunk, '\0');
    std::string obuf(kChunk + 32, '\0');
    while (true) {
        const auto n = ::read(in_fd, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return sys_fail(ErrorCode::io_error, "cannot read", in, errno);
        }
        if (n == 0) return {};
        int produced = 0;
        if (update(reinterpret_cast<unsigned char*>(obuf.data()), &produced,
                   reinterpret_cast<const unsigned char*>(buf.data()), static_cast<int>(n)) != 1)
            return fail(ErrorCode::internal, "AES-256-GCM update failed on " + in.string());
        if (auto w = detail::write_all(out_fd, obuf.data(), static_cast<std::size_t>(produced), out); !w) return w;
    }
}

}  // namespace

Expected<EncryptionParams> encrypt_file(const fs::path& in, const fs::path& out, std::string_view key) {
    if (key.size() != kKeySize)
        return fail(ErrorCode::key_invalid, "AES-256-GCM key must be 32 bytes, got " + std::to_string(key.size()));
    std::string iv(kIvSize, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(iv.data()), static_cast<int>(iv.size())) != 1)
        return fail(ErrorCode::internal, "RAND_bytes failed");
    Fd in_fd(::open(in.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in_fd.valid()) return sys_fail(ErrorCode::io_error, "cannot read", in, errno);
    const auto tmp = fs::path(out.string() + ".tmp");
    Ctx ctx(EVP_CIPHER_CTX_new());
    if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, bytes(key), bytes(iv)) != 1)
        return fail(ErrorCode::internal, "AES-256-GCM init failed");
    Fd out_fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!out_fd.valid()) return sys_fail(ErrorCode::io_error, "cannot create", tmp, errno);
    std::string tag(kTagSize, '\0');
    auto written = [&]() -> Expected<void> {
        auto p = pump(in_fd.get(), in, out_fd.get(), tmp, [&](unsigned char* o, int* ol, const unsigned char* i, int il) {
            return EVP_EncryptUpdate(ctx.get(), o, ol, i, il);
        });
        if (!p) return p;
        unsigned char final_block[32];
        int final_len = 0;
        if (EVP_EncryptFinal_ex(ctx.get(), final_block, &final_len) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize), tag.data()) != 1)
            return fail(ErrorCode::internal, "AES-256-GCM finish failed");
        if (auto w = detail::write_all(out_fd.get(), reinterpret_cast<const char*>(final_block),
                                       static_cast<std::size_t>(final_len), tmp);
            !w)
            return w;
        return detail::fsync_fd(out_fd.get(), tmp);
    }();
    out_fd.reset();
    if (!written) {
        ::unlink(tmp.c_str());
        return std::unexpected(written.error());
    }
    if (auto r = detail::rename_durable(tmp, out); !r) {
        ::unlink(tmp.c_str());
        return std::unexpected(r.error());
    }
    return EncryptionParams{crypto::base64_encode(iv), crypto::base64_encode(tag)};
}

Expected<void> decrypt_file(const fs::path& in, const fs::path& out, std::string_view key, const Encryption& enc,
                            unsigned mode) {
    if (enc.alg != "aes-256-gcm")
        return fail(ErrorCode::decrypt_failed, "unsupported encryption algorithm \"" + enc.alg + "\"");
    if (key.size() != kKeySize)
        return fail(ErrorCode::decrypt_failed, "key '" + enc.key_id + "' is not 32 bytes");
    auto iv = crypto::base64_decode(enc.iv);
    auto tag = crypto::base64_decode(enc.tag);
    if (!iv || iv->size() != kIvSize)
        return fail(ErrorCode::decrypt_failed, "manifest.artifact.encryption.iv: expected base64 of 12 bytes");
    if (!tag || tag->size() != kTagSize)
        return fail(ErrorCode::decrypt_failed, "manifest.artifact.encryption.tag: expected base64 of 16 bytes");

    Fd in_fd(::open(in.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in_fd.valid()) return sys_fail(ErrorCode::io_error, "cannot read", in, errno);
    Ctx ctx(EVP_CIPHER_CTX_new());
    if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, bytes(key), bytes(*iv)) != 1)
        return fail(ErrorCode::internal, "AES-256-GCM init failed");
    if (::unlink(out.c_str()) != 0 && errno != ENOENT) return sys_fail(ErrorCode::io_error, "removing", out, errno);
    Fd out_fd(::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, static_cast<mode_t>(mode)));
    if (!out_fd.valid()) return sys_fail(ErrorCode::io_error, "cannot create", out, errno);
    auto done = [&]() -> Expected<void> {
        if (::fchmod(out_fd.get(), static_cast<mode_t>(mode)) != 0)
            return sys_fail(ErrorCode::io_error, "chmod", out, errno);
        auto p = pump(in_fd.get(), in, out_fd.get(), out, [&](unsigned char* o, int* ol, const unsigned char* i, int il) {
            return EVP_DecryptUpdate(ctx.get(), o, ol, i, il);
        });
        if (!p) return p;
        if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize), tag->data()) != 1)
            return fail(ErrorCode::internal, "AES-256-GCM set tag failed");
        unsigned char final_block[32];
        int final_len = 0;
        if (EVP_DecryptFinal_ex(ctx.get(), final_block, &final_len) != 1)
            return fail(ErrorCode::decrypt_failed,
                        "decrypting " + in.string() + " with key '" + enc.key_id +
                            "': authentication failed (wrong key, or the ciphertext, IV or tag was altered)");
        if (auto w = detail::write_all(out_fd.get(), reinterpret_cast<const char*>(final_block),
                                       static_cast<std::size_t>(final_len), out);
            !w)
            return w;
        return detail::fsync_fd(out_fd.get(), out);
    }();
    out_fd.reset();
    if (!done) ::unlink(out.c_str());
    return done;
}

Expected<std::string> load_decrypt_key(const fs::path& keys_dir, std::string_view key_id) {
    if (keys_dir.empty())
        return fail(ErrorCode::decrypt_failed,
                    "the artifact is encrypted with key '" + std::string(key_id) + "' but no decrypt_keys_dir is configured");
    if (!detail::is_safe_name(key_id))
        return fail(ErrorCode::decrypt_failed, "invalid key id '" + std::string(key_id) + "'");
    const auto path = keys_dir / (std::string(key_id) + ".key");
    auto content = read_file(path, 4096);
    if (!content)
        return fail(ErrorCode::decrypt_failed, "no key for key id '" + std::string(key_id) + "': " + content.error().message);
    if (content->size() == kKeySize) return *content;
    std::string_view text(*content);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
    if (text.size() == 2 * kKeySize) {
        std::string key;
        auto hexval = [](char c) -> int {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        for (std::size_t i = 0; i < text.size(); i += 2) {
            const int hi = hexval(text[i]);
            const int lo = hexval(text[i + 1]);
            if (hi < 0 || lo < 0) {
                key.clear();
                break;
            }
            key.push_back(static_cast<char>(hi * 16 + lo));
        }
        if (key.size() == kKeySize) return key;
    }
    return fail(ErrorCode::decrypt_failed, path.string() + ": expected 32 raw bytes or 64 hex characters, got " +
                                               std::to_string(content->size()) + " bytes");
}

}  // namespace ota::agent
