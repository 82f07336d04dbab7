// Encrypted artifacts end to end: ota-publish encrypts the model (--encrypt-key, AES-256-GCM)
// and puts the ciphertext on nginx; the agent takes the retained wave message, downloads and
// verifies the ciphertext, decrypts it with its device key (<decrypt_keys_dir>/<key_id>.key)
// and places the plaintext. A device without that key id, or with another key under that id,
// ends `failed` with `decrypt_failed` and keeps the installed version.
#include "agent_fixture.hpp"

class AgentEncryptedTest : public AgentTest {
protected:
    // The fleet's key as CI holds it (hex) and the device's copy (raw bytes: both formats work).
    const std::string fleet_key = std::string(16, '\x42') + std::string(16, '\x17');
    fs::path ci_key() const { return dir / "ci-fleet-2026.key"; }
    fs::path device_keys() const { return dir / "device-keys"; }

    void SetUp() override {
        AgentTest::SetUp();
        std::string hex;
        for (const char ch : fleet_key) {
            static const char* digits = "0123456789abcdef";
            hex += digits[static_cast<unsigned char>(ch) >> 4];
            hex += digits[static_cast<unsigned char>(ch) & 15];
        }
        kit::write_file(ci_key(), hex + "\n");
        fs::create_directories(device_keys());
    }
    fs::path config_with_keys() {
        return write_config({{"components", {{"detection-model", {{"decrypt_keys_dir", device_keys().string()}}}}}});
    }
    Release encrypted_release(const std::string& version, const std::string& key_id = "fleet-2026") {
        return make_release(version, "release",
                            {"--encrypt-key", ci_key().string(), "--encrypt-key-id", key_id});
    }
    // What nginx serves for a release of make_release().
    std::string served(const std::string& version) const {
        return kit::read_file(server->root() / "models" / fleet / ("model-" + version + ".trt"));
    }
    // A device with 2026-03-10 installed and `key_file` holding `key_content` in its keys dir is
    // offered the encrypted 2026-04-01.
    kit::RunResult offer_2026_04_01_to_a_device_with(const std::string& key_file, const std::string& key_content) {
        kit::write_file(target() / "model-2026-03-10.trt", "installed");
        kit::write_file(device_keys() / key_file, key_content);
        const auto config = config_with_keys();
        assign();
        offer(encrypted_release("2026-04-01"));
        auto r = run_once(config);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return r;
    }
    // The installed 2026-03-10 model stays exactly as it was; 2026-04-01 failed with decrypt_failed.
    void expect_decrypt_failed_and_untouched(const kit::RunResult& r) {
        auto s = status();
        EXPECT_EQ(s["stage"], "failed") << r.err;
        EXPECT_EQ(s["version"], "2026-04-01");
        EXPECT_EQ(s["error"]["code"], "decrypt_failed") << s.dump();
        EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"});
        EXPECT_EQ(kit::read_file(target() / "model-2026-03-10.trt"), "installed");
        EXPECT_EQ(inventory_version(), "2026-03-10");
        for (const auto& e : fs::directory_iterator(target()))
            EXPECT_FALSE(e.path().filename().string().find("2026-04-01") != std::string::npos)
                << "nothing of the failed release is left: " << e.path();
    }
};

TEST_F(AgentEncryptedTest, EncryptedFileReleaseIsDecryptedAndPlaced) {
    kit::write_file(device_keys() / "fleet-2026.key", fleet_key);
    const auto config = config_with_keys();
    assign();
    auto rel = encrypted_release("2026-04-01");
    const auto manifest = json::parse(rel.envelope)["manifest"];
    ASSERT_TRUE(manifest["artifact"].contains("encryption")) << manifest.dump();
    EXPECT_EQ(manifest["artifact"]["encryption"]["key_id"], "fleet-2026");
    const auto cipher = served("2026-04-01");
    EXPECT_NE(cipher, rel.content) << "nginx serves the ciphertext";
    EXPECT_EQ(manifest["artifact"]["sha256"], ota::crypto::sha256_hex(cipher));
    offer(rel);
    auto r = run_once(config);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto s = status();
    EXPECT_EQ(s["stage"], "succeeded") << r.err;
    EXPECT_EQ(s["version"], "2026-04-01");
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-04-01.trt"});
    EXPECT_TRUE(kit::read_file(target() / "model-2026-04-01.trt") == rel.content) << "the plaintext is placed";
    EXPECT_EQ(inventory_version(), "2026-04-01");
}

TEST_F(AgentEncryptedTest, DeviceWithoutTheKeyIdFailsWithDecryptFailed) {
    // The right bytes, but under another key id.
    auto r = offer_2026_04_01_to_a_device_with("fleet-2025.key", fleet_key);
    expect_decrypt_failed_and_untouched(r);
    EXPECT_NE(status()["error"]["message"].get<std::string>().find("fleet-2026"), std::string::npos) << status().dump();
}

TEST_F(AgentEncryptedTest, DeviceWithTheWrongKeyFailsWithDecryptFailed) {
    // Another key (in hex) under the right key id.
    auto r = offer_2026_04_01_to_a_device_with("fleet-2026.key", std::string(64, 'f') + "\n");
    expect_decrypt_failed_and_untouched(r);
    EXPECT_NE(status()["error"]["message"].get<std::string>().find("authentication failed"), std::string::npos)
        << status().dump();
}
