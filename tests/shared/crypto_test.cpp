#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "ota/crypto.hpp"

namespace fs = std::filesystem;
using namespace ota::crypto;

TEST(Sha256, MatchesKnownVectors) {
    EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    Sha256 streamed;
    streamed.update("a");
    streamed.update("bc");
    EXPECT_EQ(streamed.hex(), sha256_hex("abc"));
}

TEST(Sha256, StreamsAFile) {
    const auto path = fs::temp_directory_path() / ("ota-sha-" + std::to_string(::getpid()));
    std::string data(3 * 1024 * 1024 + 17, '\0');
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 % 251);
    std::ofstream(path, std::ios::binary) << data;
    auto d = sha256_file(path);
    fs::remove(path);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->size, data.size());
    EXPECT_EQ(d->sha256, sha256_hex(data));
    auto missing = sha256_file(path);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ota::ErrorCode::io_error);
    EXPECT_NE(missing.error().message.find(path.string()), std::string::npos);
}

TEST(Base64, RoundTripsAndRejectsGarbage) {
    for (const std::string& s : std::vector<std::string>{"", "f", "fo", "foo", "foob", "fooba", "foobar", std::string("\0\xff\x10", 3)})
        EXPECT_EQ(*base64_decode(base64_encode(s)), s);
    EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
    for (const char* bad : {"Zm9", "Zm9v!mFy", "Zm=v", "=Zm9"}) EXPECT_FALSE(base64_decode(bad)) << bad;
}

TEST(Ed25519, SignsAndVerifiesAndKeysRoundTripThroughPem) {
    const auto key = PrivateKey::generate();
    const auto sig = key.sign("hello");
    EXPECT_EQ(sig.size(), 64u);
    EXPECT_TRUE(key.public_key().verify("hello", sig));
    EXPECT_FALSE(key.public_key().verify("hellp", sig));
    auto reloaded = PrivateKey::from_pem(key.to_pem());
    ASSERT_TRUE(reloaded);
    EXPECT_EQ(reloaded->public_key().key_id(), key.public_key().key_id());
    auto pub = PublicKey::from_pem(key.public_key().to_pem());
    ASSERT_TRUE(pub);
    EXPECT_TRUE(pub->verify("hello", sig));
    EXPECT_EQ(pub->key_id().size(), 16u);
}

TEST(Ed25519, LoadsKeysMadeByTheOpensslCli) {
    const auto dir = fs::temp_directory_path() / ("ota-keys-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const auto cmd = "openssl genpkey -algorithm ed25519 -out " + (dir / "k.key").string() +
                     " && openssl pkey -in " + (dir / "k.key").string() + " -pubout -out " + (dir / "k.pub").string();
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    auto priv = PrivateKey::load(dir / "k.key");
    auto pub = PublicKey::load(dir / "k.pub");
    ASSERT_TRUE(priv) << priv.error().message;
    ASSERT_TRUE(pub) << pub.error().message;
    EXPECT_EQ(priv->public_key().key_id(), pub->key_id());
    TrustStore store;
    ASSERT_TRUE(store.load(dir));
    EXPECT_TRUE(store.verify(pub->key_id(), "m", priv->sign("m")));
    fs::remove_all(dir);
}

TEST(Ed25519, BadKeyFilesAreNamedErrors) {
    const auto dir = fs::temp_directory_path() / ("ota-badkeys-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::ofstream(dir / "garbage.key") << "not a key";
    ASSERT_EQ(std::system(("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " +
                           (dir / "ec.key").string() + " 2>/dev/null").c_str()), 0);
    auto g = PrivateKey::load(dir / "garbage.key");
    ASSERT_FALSE(g);
    EXPECT_EQ(g.error().code, ota::ErrorCode::key_invalid);
    EXPECT_NE(g.error().message.find("garbage.key"), std::string::npos);
    auto ec = PrivateKey::load(dir / "ec.key");
    ASSERT_FALSE(ec);
    EXPECT_NE(ec.error().message.find("not an Ed25519 key"), std::string::npos);
    auto missing = PrivateKey::load(dir / "missing.key");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ota::ErrorCode::io_error);
    fs::remove_all(dir);
}

TEST(TrustStore, UnknownKeyAndBadSignatureAreDistinct) {
    const auto a = PrivateKey::generate(), b = PrivateKey::generate();
    TrustStore store;
    store.add(a.public_key());
    auto unknown = store.verify(b.public_key().key_id(), "m", b.sign("m"));
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ota::ErrorCode::unknown_key);
    auto bad = store.verify(a.public_key().key_id(), "m", b.sign("m"));
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, ota::ErrorCode::signature_invalid);
    EXPECT_TRUE(store.verify(a.public_key().key_id(), "m", a.sign("m")));
}
