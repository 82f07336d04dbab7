// AES-256-GCM file encryption (ota/file_crypto.hpp): what ota-publish writes and agents decrypt.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>

#include "ota/crypto.hpp"
#include "ota/file_crypto.hpp"
#include "ota/files.hpp"

namespace fs = std::filesystem;
using namespace ota::crypto;
using ota::ErrorCode;

namespace {

class FileCrypto : public ::testing::Test {
protected:
    fs::path dir = fs::temp_directory_path() / ("ota-file-crypto-" + std::to_string(::getpid()));
    const std::string key = std::string(32, '\x5a');
    void SetUp() override { fs::create_directories(dir); }
    void TearDown() override { fs::remove_all(dir); }
    void write(const fs::path& p, const std::string& content) { ASSERT_TRUE(ota::write_file_atomic(p, content)); }
    std::string read(const fs::path& p) { return ota::read_file(p).value_or("<unreadable>"); }
    std::size_t entries() const { return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), {})); }
};

TEST_F(FileCrypto, RoundTripOfEmptyShortAndMultiChunkFiles) {
    std::string big;
    for (std::uint64_t i = 0; big.size() < 3 * 1024 * 1024 + 17; ++i) big += std::to_string(i * 7919) + ";";
    for (const std::string& content : {std::string(), std::string("short"), big}) {
        write(dir / "in", content);
        auto p = encrypt_file(dir / "in", dir / "enc", key);
        ASSERT_TRUE(p) << p.error().describe();
        EXPECT_EQ(base64_decode(p->iv)->size(), 12U);
        EXPECT_EQ(base64_decode(p->tag)->size(), 16U);
        const auto cipher = read(dir / "enc");
        EXPECT_EQ(cipher.size(), content.size()) << "GCM adds no padding";
        if (!content.empty()) {
            EXPECT_NE(cipher, content);
        }
        auto d = decrypt_file(dir / "enc", dir / "out", key, *p);
        ASSERT_TRUE(d) << d.error().describe();
        EXPECT_EQ(read(dir / "out"), content);
    }
    EXPECT_EQ(entries(), 3U) << "in, enc, out: no temp files left";
}

TEST_F(FileCrypto, EachEncryptionUsesAFreshIv) {
    write(dir / "in", "same plaintext");
    auto a = encrypt_file(dir / "in", dir / "a", key);
    auto b = encrypt_file(dir / "in", dir / "b", key);
    ASSERT_TRUE(a && b);
    EXPECT_NE(a->iv, b->iv);
    EXPECT_NE(read(dir / "a"), read(dir / "b"));
}

TEST_F(FileCrypto, WrongKeyAlteredBytesOrTagAreDecryptFailedAndWriteNothing) {
    write(dir / "in", std::string(100000, 'p'));
    auto p = encrypt_file(dir / "in", dir / "enc", key);
    ASSERT_TRUE(p);
    auto expect_failed = [&](const fs::path& in, const std::string& k, const GcmParams& params) {
        auto d = decrypt_file(in, dir / "out", k, params);
        ASSERT_FALSE(d);
        EXPECT_EQ(d.error().code, ErrorCode::decrypt_failed) << d.error().describe();
        EXPECT_FALSE(fs::exists(dir / "out"));
    };
    expect_failed(dir / "enc", std::string(32, 'k'), *p);
    auto flipped = read(dir / "enc");
    flipped[500] = static_cast<char>(flipped[500] ^ 1);
    write(dir / "flipped", flipped);
    expect_failed(dir / "flipped", key, *p);
    expect_failed(dir / "enc", key, {p->iv, base64_encode(std::string(16, 'x'))});
    expect_failed(dir / "enc", key, {base64_encode(std::string(12, 'x')), p->tag});
    expect_failed(dir / "enc", key, {"not base64", p->tag});
    EXPECT_EQ(entries(), 3U) << "in, enc, flipped: no temp files left";
}

TEST_F(FileCrypto, TheStreamHandsOverPlaintextAndStopsAtASinkError) {
    write(dir / "in", std::string(3 << 20, 'q'));
    auto p = encrypt_file(dir / "in", dir / "enc", key);
    ASSERT_TRUE(p);
    std::size_t got = 0;
    ASSERT_TRUE(decrypt_stream(dir / "enc", key, *p, [&](std::string_view c) -> ota::Expected<void> {
        got += c.size();
        return {};
    }));
    EXPECT_EQ(got, 3U << 20);
    int calls = 0;
    auto stopped = decrypt_stream(dir / "enc", key, *p, [&](std::string_view) -> ota::Expected<void> {
        ++calls;
        return ota::fail(ErrorCode::disk_full, "no space");
    });
    ASSERT_FALSE(stopped);
    EXPECT_EQ(stopped.error().code, ErrorCode::disk_full);
    EXPECT_EQ(calls, 1);
}

TEST_F(FileCrypto, KeysAre32RawBytesOr64HexCharacters) {
    std::string hex;
    for (int i = 0; i < 32; ++i) hex += "A5";
    EXPECT_EQ(parse_aes_key(std::string(32, '\0'), "k"), std::string(32, '\0'));
    EXPECT_EQ(parse_aes_key("  " + hex + "\n", "k"), std::string(32, '\xa5'));
    for (const std::string& bad : {std::string(31, 'x'), std::string(33, 'x'), hex.substr(2) + "zz", std::string()}) {
        auto k = parse_aes_key(bad, "fleet.key");
        ASSERT_FALSE(k) << bad;
        EXPECT_EQ(k.error().code, ErrorCode::key_invalid);
        EXPECT_NE(k.error().message.find("fleet.key: expected 32 raw bytes or 64 hex characters"), std::string::npos)
            << k.error().message;
    }
    write(dir / "fleet.key", hex + "\n");
    EXPECT_EQ(load_aes_key(dir / "fleet.key"), std::string(32, '\xa5'));
    auto missing = load_aes_key(dir / "absent.key");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::io_error);
    auto e = encrypt_file(dir / "fleet.key", dir / "enc", "short key");
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().code, ErrorCode::key_invalid);
    EXPECT_FALSE(fs::exists(dir / "enc"));
}

}  // namespace
