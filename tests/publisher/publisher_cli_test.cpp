// ota-publish as CI runs it, against a real Mosquitto (TLS, client certificates, the project's
// ACL) and a real nginx from the test kit.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "kit.hpp"
#include "ota/crypto.hpp"
#include "ota/file_crypto.hpp"
#include "ota/keyset.hpp"
#include "ota/manifest.hpp"

namespace kit = ota::testkit;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

class PublisherCli : public ::testing::Test {
protected:
    static inline std::unique_ptr<kit::Broker> broker;
    static inline std::unique_ptr<kit::TempDir> dir;
    static inline std::string setup_error;

    // A failure in SetUpTestSuite would only mark the tests skipped; keep it and fail each test.
    static void SetUpTestSuite() {
        try {
            broker = std::make_unique<kit::Broker>(kit::shared_pki());
            dir = std::make_unique<kit::TempDir>("ota-publish-test");
            auto r = kit::run({OTA_PUBLISH_BIN, "keygen", "--out", (dir->path() / "release").string()});
            if (r.exit_code != 0) setup_error = "keygen failed: " + r.err;
            kit::write_file(dir->path() / "model.trt", std::string(100000, 'm'));
        } catch (const std::exception& e) {
            setup_error = e.what();
        }
    }
    void SetUp() override { ASSERT_TRUE(broker && setup_error.empty()) << setup_error; }
    static void TearDownTestSuite() {
        broker.reset();
        dir.reset();
    }

    const kit::Pki& pki = kit::shared_pki();

    // The arguments CI passes, as `who` (a certificate of the dev PKI).
    std::vector<std::string> publish_args(const std::string& component, const std::string& who = "ci") const {
        return {OTA_PUBLISH_BIN, "publish", "--broker", broker->url(), "--cafile", pki.ca().string(),
                "--cert", pki.cert(who).string(), "--key", pki.key(who).string(),
                "--signing-key", (dir->path() / "release.key").string(), "--component", component,
                "--version", "2026-03-10", "--channel", "stable", "--artifact", (dir->path() / "model.trt").string(),
                "--url", "https://artifacts.example/models/model-2026-03-10.trt", "--install", "file",
                "--target", "/var/lib/models", "--timeout", "3"};
    }
    // What an operator sees retained on a release topic (empty if nothing was published).
    std::vector<std::pair<std::string, std::string>> retained(const std::string& component) const {
        return kit::mosquitto_sub(*broker, pki, "operator", "ota/v1/releases/" + component + "/stable", 1, 1500ms).messages;
    }
    static void expect_one_line_error(const kit::RunResult& r, const std::string& needle) {
        EXPECT_NE(r.exit_code, 0);
        EXPECT_TRUE(r.out.empty()) << r.out;
        ASSERT_FALSE(r.err.empty());
        EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line expected: " << r.err;
        EXPECT_EQ(r.err.rfind("ota-publish: ", 0), 0u) << r.err;
        EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    }
};

TEST_F(PublisherCli, KeygenWritesAPrivateKeyOnlyRootCanRead) {
    struct stat st {};
    ASSERT_EQ(::stat((dir->path() / "release.key").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    auto again = kit::run({OTA_PUBLISH_BIN, "keygen", "--out", (dir->path() / "release").string()});
    EXPECT_NE(again.exit_code, 0);
    EXPECT_NE(again.err.find("--force"), std::string::npos);
}

TEST_F(PublisherCli, RetainedReleaseReachesALateSubscriberAndVerifies) {
    auto r = kit::run(publish_args("late-sub"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("published late-sub 2026-03-10 (stable) to ota/v1/releases/late-sub/stable"), std::string::npos);

    // The subscriber connects only now: the broker must hand it the retained release.
    auto got = retained("late-sub");
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].first, "ota/v1/releases/late-sub/stable");
    ota::crypto::TrustStore trusted;
    ASSERT_TRUE(trusted.load(dir->path() / "release.pub"));
    auto release = ota::open_envelope(got[0].second, trusted, ota::now_utc(), "received");
    ASSERT_TRUE(release) << release.error().message;
    EXPECT_EQ(release->manifest.artifact.size, 100000u);
    EXPECT_EQ(release->manifest.artifact.sha256, ota::crypto::sha256_hex(std::string(100000, 'm')));
    EXPECT_EQ(release->manifest.install.target, "/var/lib/models");

    // The verify command agrees, reading the envelope from stdin.
    auto v = kit::run({OTA_PUBLISH_BIN, "verify", "--pubkey", (dir->path() / "release.pub").string(), "-"}, 10s, {},
                      got[0].second);
    EXPECT_EQ(v.exit_code, 0) << v.err;
    EXPECT_EQ(v.out.rfind("OK: late-sub 2026-03-10 (stable)", 0), 0u) << v.out;
}

TEST_F(PublisherCli, DryRunPrintsTheEnvelopeAndPublishesNothing) {
    auto args = publish_args("dry-run");
    args.push_back("--dry-run");
    auto r = kit::run(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto env = nlohmann::json::parse(r.out);
    EXPECT_EQ(env["manifest"]["component"], "dry-run");
    EXPECT_TRUE(env["signature"].is_string());
    EXPECT_TRUE(retained("dry-run").empty());
}

TEST_F(PublisherCli, CopyToPlacesTheArtifactWhereNginxServesIt) {
    kit::ArtifactServer server(pki);
    auto args = publish_args("copied");
    args.back() = "5";
    args.insert(args.end(), {"--copy-to", server.root().string()});
    auto r = kit::run(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto fetched = kit::run({"curl", "-sS", "--fail", "--cacert", pki.ca().string(),
                             server.url("models/model-2026-03-10.trt")});
    ASSERT_EQ(fetched.exit_code, 0) << fetched.err;
    EXPECT_EQ(fetched.out, std::string(100000, 'm'));
}

TEST_F(PublisherCli, MissingArtifactFailsAndPublishesNothing) {
    auto args = publish_args("no-artifact");
    std::replace(args.begin(), args.end(), (dir->path() / "model.trt").string(), (dir->path() / "absent.trt").string());
    auto r = kit::run(args);
    expect_one_line_error(r, "absent.trt");
    EXPECT_NE(r.err.find("io_error"), std::string::npos);
    EXPECT_TRUE(retained("no-artifact").empty());
}

TEST_F(PublisherCli, UnreadableSigningKeyFailsAndPublishesNothing) {
    kit::write_file(dir->path() / "garbage.key", "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n");
    auto args = publish_args("bad-key");
    std::replace(args.begin(), args.end(), (dir->path() / "release.key").string(), (dir->path() / "garbage.key").string());
    auto r = kit::run(args);
    expect_one_line_error(r, "key_invalid: signing key " + (dir->path() / "garbage.key").string());
    EXPECT_TRUE(retained("bad-key").empty());

    std::replace(args.begin(), args.end(), (dir->path() / "garbage.key").string(), (dir->path() / "none.key").string());
    auto missing = kit::run(args);
    expect_one_line_error(missing, "none.key");
}

TEST_F(PublisherCli, BrokerDownFailsWithinTheTimeout) {
    auto args = publish_args("broker-down");
    std::replace(args.begin(), args.end(), broker->url(), "mqtts://127.0.0.1:" + std::to_string(kit::free_port()));
    const auto start = std::chrono::steady_clock::now();
    auto r = kit::run(args, 20s);
    expect_one_line_error(r, "mqtt_connect_failed");
    EXPECT_LT(std::chrono::steady_clock::now() - start, 15s);
    EXPECT_TRUE(retained("broker-down").empty());
}

TEST_F(PublisherCli, WrongCaFailsAndPublishesNothing) {
    kit::TempDir other("ota-other-ca");
    auto mk = kit::run({(kit::source_dir() / "scripts" / "make-dev-certs").string(), other.path().string(), "--devices", "0"}, 60s);
    ASSERT_EQ(mk.exit_code, 0) << mk.err;
    auto args = publish_args("wrong-ca");
    std::replace(args.begin(), args.end(), pki.ca().string(), (other.path() / "ca.pem").string());
    auto r = kit::run(args, 20s);
    expect_one_line_error(r, "mqtt_connect_failed");
    EXPECT_TRUE(retained("wrong-ca").empty());
}

TEST_F(PublisherCli, ADeviceCertificateCannotPublishARelease) {
    auto r = kit::run(publish_args("from-device", "device-001"));
    expect_one_line_error(r, "mqtt_publish_failed");
    EXPECT_TRUE(retained("from-device").empty());
}

TEST_F(PublisherCli, VerifyNamesWhyATamperedEnvelopeFails) {
    auto args = publish_args("tamper");
    args.push_back("--dry-run");
    auto r = kit::run(args);
    ASSERT_EQ(r.exit_code, 0);
    auto env = nlohmann::json::parse(r.out);
    env["manifest"]["artifact"]["url"] = "https://evil.example/model.trt";
    kit::write_file(dir->path() / "tampered.json", env.dump());
    auto v = kit::run({OTA_PUBLISH_BIN, "verify", "--pubkey", (dir->path() / "release.pub").string(),
                       (dir->path() / "tampered.json").string()});
    EXPECT_EQ(v.exit_code, 1);
    EXPECT_NE(v.err.find("signature_invalid: " + (dir->path() / "tampered.json").string()), std::string::npos) << v.err;
}

// --encrypt-key: nginx serves the ciphertext, the retained manifest carries artifact.encryption
// and the size and hash of what is served; the key decrypts it to the artifact, another key does
// not (decrypt_failed).
TEST_F(PublisherCli, EncryptedArtifactIsServedAsCiphertextThatOnlyTheKeyDecrypts) {
    kit::ArtifactServer server(pki);
    kit::write_file(dir->path() / "fleet-2026.key", std::string(64, 'a') + "\n");
    auto args = publish_args("encrypted");
    args.back() = "5";
    args.insert(args.end(), {"--copy-to", server.root().string(), "--encrypt-key", (dir->path() / "fleet-2026.key").string(),
                             "--encrypt-key-id", "fleet-2026"});
    auto r = kit::run(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("encrypted for device key fleet-2026"), std::string::npos) << r.out;

    auto got = retained("encrypted");
    ASSERT_EQ(got.size(), 1u);
    ota::crypto::TrustStore trusted;
    ASSERT_TRUE(trusted.load(dir->path() / "release.pub"));
    auto release = ota::open_envelope(got[0].second, trusted, ota::now_utc(), "received");
    ASSERT_TRUE(release) << release.error().message;
    const auto& artifact = release->manifest.artifact;
    ASSERT_TRUE(artifact.encryption);
    EXPECT_EQ(artifact.encryption->alg, "aes-256-gcm");
    EXPECT_EQ(artifact.encryption->key_id, "fleet-2026");

    const auto fetched = dir->path() / "fetched.enc";
    auto curl = kit::run({"curl", "-sS", "--fail", "--cacert", pki.ca().string(), "-o", fetched.string(),
                          server.url("models/model-2026-03-10.trt")});
    ASSERT_EQ(curl.exit_code, 0) << curl.err;
    const auto cipher = kit::read_file(fetched);
    EXPECT_NE(cipher, std::string(100000, 'm'));
    EXPECT_EQ(artifact.size, cipher.size());
    EXPECT_EQ(artifact.sha256, ota::crypto::sha256_hex(cipher));

    const ota::crypto::GcmParams params{artifact.encryption->iv, artifact.encryption->tag};
    auto ok = ota::crypto::decrypt_file(fetched, dir->path() / "plain", std::string(32, '\xaa'), params);
    ASSERT_TRUE(ok) << ok.error().describe();
    EXPECT_EQ(kit::read_file(dir->path() / "plain"), std::string(100000, 'm'));
    auto wrong = ota::crypto::decrypt_file(fetched, dir->path() / "wrong", std::string(32, '\xab'), params);
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error().code, ota::ErrorCode::decrypt_failed);
}

TEST_F(PublisherCli, EncryptKeyNeedsItsIdAndCopyTo) {
    kit::write_file(dir->path() / "k.key", std::string(32, 'k'));
    const auto www = (dir->path() / "www").string();
    auto base = publish_args("enc-usage");
    base.insert(base.end(), {"--dry-run", "--encrypt-key", (dir->path() / "k.key").string()});
    auto no_id = base;
    no_id.insert(no_id.end(), {"--copy-to", www});
    auto r1 = kit::run(no_id);
    EXPECT_EQ(r1.exit_code, 2) << r1.err;
    EXPECT_NE(r1.err.find("--encrypt-key requires --encrypt-key-id"), std::string::npos) << r1.err;
    auto no_copy = base;
    no_copy.insert(no_copy.end(), {"--encrypt-key-id", "k"});
    auto r2 = kit::run(no_copy);
    EXPECT_EQ(r2.exit_code, 2) << r2.err;
    EXPECT_NE(r2.err.find("--encrypt-key requires --copy-to"), std::string::npos) << r2.err;

    kit::write_file(dir->path() / "bad.key", "not a key\n");
    auto bad = no_copy;
    bad.insert(bad.end(), {"--copy-to", www});
    std::replace(bad.begin(), bad.end(), (dir->path() / "k.key").string(), (dir->path() / "bad.key").string());
    auto r3 = kit::run(bad);
    expect_one_line_error(r3, "key_invalid: --encrypt-key: " + (dir->path() / "bad.key").string());
    EXPECT_FALSE(fs::exists(dir->path() / "www" / "models" / "model-2026-03-10.trt"));
}

// The keyset commands as an operator of the root key runs them: nothing unsigned or signed by
// another key is published; a signed keyset is retained where every device can read it and
// verifies against the root devices hold; a device cannot replace it.
TEST_F(PublisherCli, KeysetIsSignedByTheRootPublishedRetainedAndReadableByDevices) {
    const auto d = dir->path();
    const auto ks = (d / "keyset.json").string();
    auto run = [](std::vector<std::string> a) {
        a.insert(a.begin(), OTA_PUBLISH_BIN);
        return kit::run(a, 20s);
    };
    ASSERT_EQ(run({"keygen", "--out", (d / "root").string()}).exit_code, 0);
    ASSERT_EQ(run({"keygen", "--out", (d / "release2").string()}).exit_code, 0);
    auto created = run({"keyset", "create", "--out", ks, "--root-pub", (d / "root.pub").string(), "--key",
                        (d / "release.pub").string(), "--expires-in-days", "30"});
    ASSERT_EQ(created.exit_code, 0) << created.err;
    EXPECT_NE(created.out.find("version 1"), std::string::npos) << created.out;
    const std::vector<std::string> broker_args{"--broker", broker->url(), "--cafile", pki.ca().string(),
                                               "--cert", pki.cert("ci").string(), "--key", pki.key("ci").string(),
                                               "--timeout", "5"};
    auto publish = [&] {
        std::vector<std::string> a{"keyset", "publish", ks};
        a.insert(a.end(), broker_args.begin(), broker_args.end());
        return run(a);
    };
    auto retained_keyset = [&](const std::string& who) {
        auto got = kit::mosquitto_sub(*broker, pki, who, "ota/v1/keyset", 1, 1500ms).messages;
        return got.empty() ? std::string() : got.front().second;
    };
    // unsigned, or signed by a release key: refused before connecting, nothing retained
    expect_one_line_error(publish(), "signature_invalid");
    expect_one_line_error(run({"keyset", "sign", ks, "--root-key", (d / "release.key").string()}), "unknown_key");
    EXPECT_EQ(retained_keyset("operator"), "");
    // signed by the root: verified and published
    ASSERT_EQ(run({"keyset", "sign", ks, "--root-key", (d / "root.key").string()}).exit_code, 0);
    auto verified = run({"keyset", "verify", ks, "--root-pub", (d / "root.pub").string()});
    EXPECT_EQ(verified.exit_code, 0) << verified.err;
    auto p = publish();
    ASSERT_EQ(p.exit_code, 0) << p.err;
    EXPECT_NE(p.out.find("ota/v1/keyset"), std::string::npos) << p.out;
    const auto seen = retained_keyset("device-001");
    auto doc = ota::parse_keyset(seen, "retained keyset");
    ASSERT_TRUE(doc) << doc.error().describe();
    EXPECT_TRUE(ota::verify_keyset(*doc, *ota::crypto::PublicKey::load(d / "root.pub"), "keyset"));
    ASSERT_EQ(doc->keyset.keys.size(), 1u);
    EXPECT_EQ(doc->keyset.keys[0].key.key_id(), ota::crypto::PublicKey::load(d / "release.pub")->key_id());
    // an edit makes a new unsigned version, which is not published until the root signs it
    auto added = run({"keyset", "add", ks, "--pubkey", (d / "release2.pub").string()});
    ASSERT_EQ(added.exit_code, 0) << added.err;
    EXPECT_NE(added.out.find("version 2"), std::string::npos) << added.out;
    expect_one_line_error(publish(), "signature_invalid");
    EXPECT_EQ(retained_keyset("operator"), seen);
    // a device cannot replace the keyset (the ACL drops its publish)
    (void)kit::mosquitto_pub(*broker, pki, "device-001", "ota/v1/keyset", "{}", true);
    EXPECT_EQ(retained_keyset("operator"), seen);
}
