// The agent with a root of trust (root_key): the keyset published by ota-publish decides which
// release keys it trusts; revocation, replay of an old keyset, expiry (a freeze) and a keyset
// that arrives after the offer. Real broker, nginx and ota-publish.
#include <gmock/gmock.h>

#include <thread>

#include "agent_fixture.hpp"
#include "ota/keyset.hpp"

namespace {

class AgentKeysetTest : public AgentTest {
protected:
    fs::path key(const std::string& name) const { return keys->path() / name; }

    void keygen(const std::string& name) {
        if (fs::exists(key(name + ".key"))) return;
        auto r = kit::run({OTA_PUBLISH_BIN, "keygen", "--out", key(name).string()});
        ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    void SetUp() override {
        AgentTest::SetUp();
        for (const char* k : {"root", "k2", "k3"}) keygen(k);
    }
    kit::RunResult keyset_cli(std::vector<std::string> args) {
        args.insert(args.begin(), {OTA_PUBLISH_BIN, "keyset"});
        return kit::run(args, 20s);
    }
    // Sign the keyset file with the root and publish it retained, as the root's operator and CI do.
    void sign_and_publish(const fs::path& file) {
        auto s = keyset_cli({"sign", file.string(), "--root-key", key("root.key").string()});
        ASSERT_EQ(s.exit_code, 0) << s.err;
        publish_document(file);
    }
    void publish_document(const fs::path& file) {
        auto p = keyset_cli({"publish", file.string(), "--broker", broker->url(), "--cafile", pki.ca().string(), "--cert",
                             pki.cert("ci").string(), "--key", pki.key("ci").string(), "--timeout", "5"});
        ASSERT_EQ(p.exit_code, 0) << p.err;
    }
    fs::path config() { return write_config({{"root_key", key("root.pub").string()}}); }
    std::string key_id(const std::string& name) { return ota::crypto::PublicKey::load(key(name + ".pub"))->key_id(); }
};

}  // namespace

TEST_F(AgentKeysetTest, TheKeysetDecidesTheTrustedKeysRevokesAndIgnoresAReplay) {
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    const auto cfg = config();
    assign();
    const auto ks = dir / "keyset.json";
    ASSERT_EQ(keyset_cli({"create", "--out", ks.string(), "--root-pub", key("root.pub").string(), "--key",
                          key("k2.pub").string()}).exit_code, 0);
    sign_and_publish(ks);
    const auto v1 = kit::read_file(ks);
    auto first = run_once(cfg, 3);
    ASSERT_EQ(first.exit_code, 0) << first.err;
    EXPECT_THAT(first.err, ::testing::HasSubstr("keyset accepted"));
    EXPECT_TRUE(fs::exists(dir / "state" / "keyset.json")) << "persisted before use";

    // the provisioned key is no longer trusted; the keyset's key is
    offer(make_release("2026-12-01", "release"));
    ASSERT_EQ(run_once(cfg).exit_code, 0);
    EXPECT_EQ(status()["stage"], "rejected");
    EXPECT_EQ(status()["error"]["code"], "unknown_key");
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"});
    offer(make_release("2026-12-02", "k2"));
    ASSERT_EQ(run_once(cfg).exit_code, 0);
    EXPECT_EQ(status()["stage"], "succeeded") << status();
    EXPECT_EQ(installed_files(), (std::vector<std::string>{"model-2026-03-10.trt", "model-2026-12-02.trt"}));

    // k2 leaks: the root revokes it and trusts k3
    ASSERT_EQ(keyset_cli({"add", ks.string(), "--pubkey", key("k3.pub").string()}).exit_code, 0);
    ASSERT_EQ(keyset_cli({"revoke", ks.string(), "--key-id", key_id("k2")}).exit_code, 0);
    sign_and_publish(ks);
    offer(make_release("2026-12-03", "k2"));
    ASSERT_EQ(run_once(cfg).exit_code, 0);
    EXPECT_EQ(status()["stage"], "rejected");
    EXPECT_EQ(status()["error"]["code"], "unknown_key");
    // the holder of k2 replays the old keyset (it is signed by the root, but older): ignored
    kit::write_file(dir / "old-keyset.json", v1);
    publish_document(dir / "old-keyset.json");
    offer(make_release("2026-12-04", "k2"));
    auto replayed = run_once(cfg);
    ASSERT_EQ(replayed.exit_code, 0);
    EXPECT_EQ(status()["stage"], "rejected");
    EXPECT_EQ(status()["error"]["code"], "unknown_key");
    offer(make_release("2026-12-05", "k3"));
    ASSERT_EQ(run_once(cfg).exit_code, 0);
    EXPECT_EQ(status()["stage"], "succeeded") << status();
    EXPECT_EQ(installed_files(), (std::vector<std::string>{"model-2026-03-10.trt", "model-2026-12-02.trt", "model-2026-12-05.trt"}));
}

// A keyset that expires while nobody publishes a new one (an attacker who withholds it) stops
// new installs with keyset_expired, and a fresh keyset lets the waiting offer through.
TEST_F(AgentKeysetTest, AnExpiredKeysetFreezesNewInstallsUntilAFreshOneArrives) {
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    const auto cfg = config();
    assign();
    const auto root = *ota::crypto::PrivateKey::load(key("root.key"));
    auto make = [&](std::uint64_t version, std::chrono::seconds valid) {
        ota::Keyset k;
        k.version = version;
        k.created = ota::now_utc() - std::chrono::seconds(1);
        k.expires = ota::now_utc() + valid;
        k.root = root.public_key();
        k.keys.push_back({*ota::crypto::PublicKey::load(key("k2.pub")), std::nullopt});
        return std::pair{ota::keyset_document(k, {&root}), k.expires};
    };
    const auto [short_lived, expires] = make(1, std::chrono::seconds(4));
    ASSERT_EQ(kit::mosquitto_pub(*broker, pki, "ci", "ota/v1/keyset", short_lived, true).exit_code, 0);
    ASSERT_EQ(run_once(cfg, 2).exit_code, 0);
    ASSERT_TRUE(fs::exists(dir / "state" / "keyset.json"));
    // the keyset's validity runs out (the time passing is the scenario)
    ASSERT_TRUE(kit::wait_until([&] { return ota::now_utc() > expires; }, 10s, 200ms));
    offer(make_release("2026-12-01", "k2"));
    auto frozen = run_once(cfg, 3);
    ASSERT_EQ(frozen.exit_code, 0);
    EXPECT_EQ(status()["stage"], "rejected");
    EXPECT_EQ(status()["error"]["code"], "keyset_expired");
    EXPECT_THAT(status()["error"]["message"].get<std::string>(), ::testing::HasSubstr("expired at"));
    EXPECT_EQ(installed_files(), std::vector<std::string>{"model-2026-03-10.trt"});
    // a fresh keyset: the offer that waits (retained) is installed
    ASSERT_EQ(kit::mosquitto_pub(*broker, pki, "ci", "ota/v1/keyset", make(2, std::chrono::seconds(3600)).first, true).exit_code, 0);
    ASSERT_EQ(run_once(cfg).exit_code, 0);
    EXPECT_EQ(status()["stage"], "succeeded") << status();
    EXPECT_EQ(installed_files(), (std::vector<std::string>{"model-2026-03-10.trt", "model-2026-12-01.trt"}));
}

// Garbage and forgeries on the keyset topic change nothing and do not stop the agent.
TEST_F(AgentKeysetTest, AForgedOrMalformedKeysetIsRefusedAndTheAgentGoesOn) {
    kit::write_file(target() / "model-2026-03-10.trt", "installed");
    const auto cfg = config();
    assign();
    const auto forger = ota::crypto::PrivateKey::generate();
    ota::Keyset k;
    k.version = 9;
    k.created = ota::now_utc();
    k.expires = k.created + std::chrono::hours(1);
    k.root = forger.public_key();
    k.keys.push_back({*ota::crypto::PublicKey::load(key("k2.pub")), std::nullopt});
    for (const std::string& bad : {ota::keyset_document(k, {&forger}), std::string("{\"keyset\":1e400}"), std::string("\xff\xfe")}) {
        ASSERT_EQ(kit::mosquitto_pub(*broker, pki, "ci", "ota/v1/keyset", bad, true).exit_code, 0);
        auto r = run_once(cfg, 2);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        EXPECT_THAT(r.err, ::testing::HasSubstr("keyset rejected"));
        EXPECT_FALSE(fs::exists(dir / "state" / "keyset.json"));
    }
    // still on the provisioned key
    offer(make_release("2026-12-01", "release"));
    ASSERT_EQ(run_once(cfg).exit_code, 0);
    EXPECT_EQ(status()["stage"], "succeeded") << status();
}
