// `file` install: the artifact (decrypted when encrypted) placed into the target directory by
// rename; rollback and re-runs after a crash; only files the agent placed are cleaned up.
#include <gtest/gtest.h>

#include "install_test_util.hpp"
#include "ota/crypto.hpp"
#include "ota/file_crypto.hpp"

namespace ota::agent::test {
namespace {

class FileInstall : public ::testing::Test {
protected:
    kit::TempDir tmp{"ota-file-install"};
    fs::path models = tmp / "models";
    std::unique_ptr<Installer> installer = make_installer(InstallType::file);

    // A job for version `v` whose artifact holds `content` (written to an artifact file).
    Job job(const std::string& v, const std::string& content) {
        const auto artifact = tmp / ("download-" + v);
        kit::write_file(artifact, content);
        Job j{make_manifest(InstallType::file, models.string(), v, "https://a.example/models/model-" + v + ".trt?sig=1"),
              {}, artifact, tmp / "work"};
        j.config.name = "comp";
        return j;
    }
    void install(const Job& j) {
        auto rec = installer->prepare(j.request());
        ASSERT_TRUE(rec) << rec.error().describe();
        auto a = installer->activate(j.request(), *rec);
        ASSERT_TRUE(a) << a.error().describe();
        auto c = installer->commit(j.request(), *rec);
        ASSERT_TRUE(c) << c.error().describe();
    }
    // Files in the target directory, hidden ones included, except the agent's ledger.
    std::map<std::string, std::string> visible() {
        auto s = snapshot(models);
        std::erase_if(s, [](const auto& kv) { return kv.first.starts_with(".ota-placed."); });
        return s;
    }
};

TEST_F(FileInstall, PrepareActivateCommitPlacesTheFileUnderTheUrlBasename) {
    auto j = job("2026-03-10", "model bytes v2");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec) << rec.error().describe();
    // Staged hidden, nothing visible yet.
    EXPECT_EQ(visible(), (std::map<std::string, std::string>{{".model-2026-03-10.trt.ota-new", "f:420:model bytes v2"}}));
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    EXPECT_EQ(visible(), (std::map<std::string, std::string>{{"model-2026-03-10.trt", "f:420:model bytes v2"}}));
    ASSERT_TRUE(installer->commit(j.request(), *rec));
    EXPECT_EQ(visible(), (std::map<std::string, std::string>{{"model-2026-03-10.trt", "f:420:model bytes v2"}}));
    EXPECT_TRUE(fs::exists(models / ".ota-placed.comp.json"));
    EXPECT_EQ(kit::read_file(j.artifact), "model bytes v2") << "the staged artifact is input only";
}

TEST_F(FileInstall, CommitKeepsPreviousReleasesAndNeverDeletesFilesItDidNotPlace) {
    fs::create_directories(models);
    kit::write_file(models / "model-2026-01-01.trt", "hand-placed, older");
    kit::write_file(models / "notes.txt", "not ours");
    install(job("2026-03-08", "v8"));
    install(job("2026-03-09", "v9"));
    // Someone replaces the agent's v9 file with their own copy: no longer the file the agent placed.
    fs::remove(models / "model-2026-03-09.trt");
    kit::write_file(models / "model-2026-03-09.trt", "operator's own v9");
    install(job("2026-03-10", "v10"));
    install(job("2026-03-11", "v11"));  // keep_previous = 1: v10 stays, v8 goes
    EXPECT_EQ(visible(), (std::map<std::string, std::string>{
                             {"model-2026-01-01.trt", "f:420:hand-placed, older"},
                             {"notes.txt", "f:420:not ours"},
                             {"model-2026-03-09.trt", "f:420:operator's own v9"},
                             {"model-2026-03-10.trt", "f:420:v10"},
                             {"model-2026-03-11.trt", "f:420:v11"},
                         }));
    auto j = job("2026-03-12", "v12");
    j.config.keep_previous = 0;
    install(j);
    EXPECT_FALSE(fs::exists(models / "model-2026-03-10.trt"));
    EXPECT_FALSE(fs::exists(models / "model-2026-03-11.trt"));
    EXPECT_TRUE(fs::exists(models / "model-2026-03-09.trt"));
    EXPECT_TRUE(fs::exists(models / "model-2026-01-01.trt"));
}

TEST_F(FileInstall, RollbackAfterActivateRestoresExactlyThePreviousState) {
    install(job("2026-03-09", "v9"));
    kit::write_file(models / "notes.txt", "not ours");
    const auto before = snapshot(models);
    auto j = job("2026-03-10", "v10");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(fs::exists(models / "model-2026-03-10.trt"));
    ASSERT_TRUE(installer->rollback(j.request(), *rec));
    EXPECT_EQ(snapshot(models), before) << dump(snapshot(models));
    ASSERT_TRUE(installer->rollback(j.request(), *rec)) << "a re-run after a crash";
    EXPECT_EQ(snapshot(models), before);
}

TEST_F(FileInstall, RollbackWhenOnlyPrepareRanOrWithoutARecord) {
    install(job("2026-03-09", "v9"));
    const auto before = snapshot(models);
    auto j = job("2026-03-10", "v10");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(installer->rollback(j.request(), *rec));
    EXPECT_EQ(snapshot(models), before);
    // Prepare interrupted before its record was journalled: rollback({}) still cleans up.
    ASSERT_TRUE(installer->prepare(j.request()));
    ASSERT_TRUE(installer->rollback(j.request(), nlohmann::json::object()));
    EXPECT_EQ(snapshot(models), before) << dump(snapshot(models));
}

TEST_F(FileInstall, EveryStepRunTwiceReachesTheSameEndState) {
    install(job("2026-03-09", "v9"));
    auto j = job("2026-03-10", "v10");
    ASSERT_TRUE(installer->prepare(j.request()));
    auto rec = installer->prepare(j.request());  // the crash came before the record was journalled
    ASSERT_TRUE(rec);
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(installer->commit(j.request(), *rec));
    ASSERT_TRUE(installer->commit(j.request(), *rec));
    EXPECT_EQ(visible(), (std::map<std::string, std::string>{{"model-2026-03-09.trt", "f:420:v9"},
                                                             {"model-2026-03-10.trt", "f:420:v10"}}));
}

TEST_F(FileInstall, SameNameIsReplacedAndRestoredOnRollback) {
    fs::create_directories(models);
    kit::write_file(models / "model-2026-03-10.trt", "the old bytes under the same name");
    const auto before = snapshot(models);
    auto j = job("2026-03-10", "new bytes");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    EXPECT_EQ(kit::read_file(models / "model-2026-03-10.trt"), "new bytes");
    ASSERT_TRUE(installer->rollback(j.request(), *rec));
    EXPECT_EQ(snapshot(models), before) << dump(snapshot(models));

    // The crash came between the backup link and the rename: activate again, then commit.
    rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    ASSERT_EQ(::link((models / "model-2026-03-10.trt").c_str(), (models / ".model-2026-03-10.trt.ota-prev").c_str()), 0);
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(installer->commit(j.request(), *rec));
    EXPECT_EQ(visible(), (std::map<std::string, std::string>{{"model-2026-03-10.trt", "f:420:new bytes"}}));
}

TEST_F(FileInstall, RefusesATargetThatIsNotAFileAndAUrlWithoutAName) {
    fs::create_directories(models / "model-2026-03-10.trt");
    auto j = job("2026-03-10", "x");
    auto rec = installer->prepare(j.request());
    ASSERT_FALSE(rec);
    EXPECT_EQ(rec.error().code, ErrorCode::install_failed);
    j.manifest.artifact.url = "https://a.example/models/";
    rec = installer->prepare(j.request());
    ASSERT_FALSE(rec);
    EXPECT_NE(rec.error().message.find("basename"), std::string::npos) << rec.error().message;
}

// ---- encrypted artifacts ----------------------------------------------------------------------

class EncryptedFileInstall : public FileInstall {
protected:
    fs::path keys = tmp / "keys";
    std::string key = std::string("0123456789abcdef0123456789abcdef");
    std::string plaintext;

    void SetUp() override {
        fs::create_directories(keys);
        kit::write_file(keys / "fleet-2026.key", key);
        for (std::uint64_t i = 0; plaintext.size() < 3 * 1024 * 1024 + 17; ++i) plaintext += std::to_string(i * 7919) + ";";
    }
    Job encrypted_job(const std::string& v) {
        auto j = job(v, plaintext);
        const auto enc = tmp / ("download-" + v + ".enc");
        auto params = crypto::encrypt_file(j.artifact, enc, key);
        EXPECT_TRUE(params) << params.error().describe();
        j.artifact = enc;
        j.manifest.artifact.encryption = Encryption{"aes-256-gcm", "fleet-2026", params->iv, params->tag};
        j.config.decrypt_keys_dir = keys;
        return j;
    }
    void expect_decrypt_failed(const Job& j) {
        const auto before = snapshot(models);
        auto rec = installer->prepare(j.request());
        ASSERT_FALSE(rec);
        EXPECT_EQ(rec.error().code, ErrorCode::decrypt_failed) << rec.error().describe();
        EXPECT_EQ(snapshot(models), before) << "nothing placed, nothing staged\n" << dump(snapshot(models));
    }
};

TEST_F(EncryptedFileInstall, RightKeyPlacesThePlaintext) {
    auto j = encrypted_job("2026-03-10");
    EXPECT_NE(kit::read_file(j.artifact), plaintext);
    EXPECT_EQ(kit::read_file(j.artifact).size(), plaintext.size()) << "GCM adds no padding";
    install(j);
    EXPECT_EQ(kit::read_file(models / "model-2026-03-10.trt"), plaintext);
}

TEST_F(EncryptedFileInstall, KeyFileMayHoldHex) {
    auto j = encrypted_job("2026-03-10");
    std::string hex;
    for (const char ch : key) {
        static const char* digits = "0123456789abcdef";
        const auto c = static_cast<unsigned char>(ch);
        hex += digits[c >> 4];
        hex += digits[c & 15];
    }
    kit::write_file(keys / "fleet-2026.key", hex + "\n");
    install(j);
    EXPECT_EQ(kit::read_file(models / "model-2026-03-10.trt"), plaintext);
}

TEST_F(EncryptedFileInstall, WrongKeyIsDecryptFailedAndNothingPlaced) {
    install(job("2026-03-09", "v9"));
    auto j = encrypted_job("2026-03-10");
    kit::write_file(keys / "fleet-2026.key", std::string(32, 'k'));
    expect_decrypt_failed(j);
}

TEST_F(EncryptedFileInstall, FlippedCiphertextByteIsDecryptFailedAndNothingPlaced) {
    auto j = encrypted_job("2026-03-10");
    auto bytes = kit::read_file(j.artifact);
    bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
    kit::write_file(j.artifact, bytes);
    expect_decrypt_failed(j);
}

TEST_F(EncryptedFileInstall, AlteredTagMissingKeyOrNoKeyDirIsDecryptFailed) {
    auto j = encrypted_job("2026-03-10");
    auto good_tag = j.manifest.artifact.encryption->tag;
    j.manifest.artifact.encryption->tag = crypto::base64_encode(std::string(16, 'x'));
    expect_decrypt_failed(j);
    j.manifest.artifact.encryption->tag = good_tag;
    j.manifest.artifact.encryption->key_id = "other-key";
    expect_decrypt_failed(j);
    j.config.decrypt_keys_dir.clear();
    expect_decrypt_failed(j);
}

}  // namespace
}  // namespace ota::agent::test
