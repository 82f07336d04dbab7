#include "ota/file_crypto.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>

#include "ota/crypto.hpp"
#include "ota/files.hpp"

namespace ota::crypto {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kChunk = 1 << 20;
constexpr std::size_t kIvSize = 12;
constexpr std::size_t kTagSize = 16;

struct CtxFree {
    void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

struct InFile {
    int fd;
    explicit InFile(int f) : fd(f) {}
    InFile(const InFile&) = delete;
    InFile& operator=(const InFile&) = delete;
    ~InFile() {
        if (fd >= 0) ::close(fd);
    }
};

// EVP_EncryptUpdate or EVP_DecryptUpdate.
using UpdateFn = int (*)(EVP_CIPHER_CTX*, unsigned char*, int*, const unsigned char*, int);

// Run `in` chunk by chunk through `update` into `sink`.
Expected<void> pump(const fs::path& in, EVP_CIPHER_CTX* ctx, UpdateFn update, const PlaintextSink& sink) {
    const InFile file{::open(in.c_str(), O_RDONLY | O_CLOEXEC)};
    const int fd = file.fd;
    if (fd < 0) return fail(ErrorCode::io_error, "cannot read " + in.string() + ": " + std::strerror(errno));
    std::string buf(kChunk, '\0');
    std::string obuf(kChunk + 32, '\0');
    while (true) {
        const auto n = ::read(fd, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail(ErrorCode::io_error, "cannot read " + in.string() + ": " + std::strerror(errno));
        }
        if (n == 0) return {};
        int produced = 0;
        if (update(ctx, reinterpret_cast<unsigned char*>(obuf.data()), &produced, bytes(buf), static_cast<int>(n)) != 1)
            return fail(ErrorCode::internal, "AES-256-GCM update failed on " + in.string());
        if (auto s = sink(std::string_view(obuf.data(), static_cast<std::size_t>(produced))); !s) return s;
    }
}

Expected<void> check_key(std::string_view key) {
    if (key.size() != aes_key_size)
        return fail(ErrorCode::key_invalid, "an AES-256-GCM key is 32 bytes, got " + std::to_string(key.size()));
    return {};
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

Expected<GcmParams> encrypt_file(const fs::path& in, const fs::path& out, std::string_view key) {
    if (auto k = check_key(key); !k) return std::unexpected(k.error());
    std::string iv(kIvSize, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(iv.data()), static_cast<int>(iv.size())) != 1)
        return fail(ErrorCode::internal, "RAND_bytes failed");
    Ctx ctx(EVP_CIPHER_CTX_new());
    if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, bytes(key), bytes(iv)) != 1)
        return fail(ErrorCode::internal, "AES-256-GCM init failed");
    auto writer = AtomicFileWriter::create(out);
    if (!writer) return std::unexpected(writer.error());
    if (auto p = pump(in, ctx.get(), EVP_EncryptUpdate, [&](std::string_view c) { return writer->write(c); }); !p)
        return std::unexpected(p.error());
    unsigned char final_block[32];
    int final_len = 0;
    std::string tag(kTagSize, '\0');
    if (EVP_EncryptFinal_ex(ctx.get(), final_block, &final_len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize), tag.data()) != 1)
        return fail(ErrorCode::internal, "AES-256-GCM finish failed");
    if (auto w = writer->write({reinterpret_cast<const char*>(final_block), static_cast<std::size_t>(final_len)}); !w)
        return std::unexpected(w.error());
    if (auto c = writer->commit(); !c) return std::unexpected(c.error());
    return GcmParams{base64_encode(iv), base64_encode(tag)};
}

Expected<void> decrypt_stream(const fs::path& in, std::string_view key, const GcmParams& params, const PlaintextSink& sink) {
    if (auto k = check_key(key); !k) return k;
    auto iv = base64_decode(params.iv);
    auto tag = base64_decode(params.tag);
    if (!iv || iv->size() != kIvSize)
        return fail(ErrorCode::decrypt_failed, "manifest.artifact.encryption.iv: expected base64 of 12 bytes");
    if (!tag || tag->size() != kTagSize)
        return fail(ErrorCode::decrypt_failed, "manifest.artifact.encryption.tag: expected base64 of 16 bytes");
    Ctx ctx(EVP_CIPHER_CTX_new());
    if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, bytes(key), bytes(*iv)) != 1)
        return fail(ErrorCode::internal, "AES-256-GCM init failed");
    if (auto p = pump(in, ctx.get(), EVP_DecryptUpdate, sink); !p) return p;
    if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize), tag->data()) != 1)
        return fail(ErrorCode::internal, "AES-256-GCM set tag failed");
    unsigned char final_block[32];
    int final_len = 0;
    if (EVP_DecryptFinal_ex(ctx.get(), final_block, &final_len) != 1)
        return fail(ErrorCode::decrypt_failed, "decrypting " + in.string() +
                                                   ": authentication failed (wrong key, or the ciphertext, IV or tag was altered)");
    return sink({reinterpret_cast<const char*>(final_block), static_cast<std::size_t>(final_len)});
}

Expected<void> decrypt_file(const fs::path& in, const fs::path& out, std::string_view key, const GcmParams& params,
                            unsigned mode) {
    auto writer = AtomicFileWriter::create(out, mode);
    if (!writer) return std::unexpected(writer.error());
    if (auto d = decrypt_stream(in, key, params, [&](std::string_view c) { return writer->write(c); }); !d) return d;
    return writer->commit();
}

Expected<std::string> parse_aes_key(std::string_view content, std::string_view source) {
    if (content.size() == aes_key_size) return std::string(content);
    std::string_view text = content;
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
    if (text.size() == 2 * aes_key_size) {
        std::string key;
        for (std::size_t i = 0; i < text.size(); i += 2) {
            const int hi = hex_value(text[i]);
            const int lo = hex_value(text[i + 1]);
            if (hi < 0 || lo < 0) break;
            key.push_back(static_cast<char>(hi * 16 + lo));
        }
        if (key.size() == aes_key_size) return key;
    }
    return fail(ErrorCode::key_invalid, std::string(source) + ": expected 32 raw bytes or 64 hex characters, got " +
                                            std::to_string(content.size()) + " bytes");
}

Expected<std::string> load_aes_key(const fs::path& file) {
    auto content = read_file(file, 4096);
    if (!content) return std::unexpected(content.error());
    return parse_aes_key(*content, file.string());
}

}  // namespace ota::crypto
