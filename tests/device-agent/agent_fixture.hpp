// The fixture of the agent's end-to-end tests: a real Mosquitto (TLS, ACL), a real nginx,
// releases signed by ota-publish, wave messages published as the controller, the agent run as a
// process (OTA_AGENT_BIN). Each test binary that includes it is one CTest test per case, so each
// case gets its own broker and server.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include <set>
#include <thread>

#include "kit.hpp"
#include "ota/crypto.hpp"

namespace kit = ota::testkit;
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

struct Release {
    std::string envelope;
    std::string version;
    std::string content;
};

class AgentTest : public ::testing::Test {
protected:
    static inline std::unique_ptr<kit::Broker> broker;
    static inline std::unique_ptr<kit::ArtifactServer> server;
    static inline std::unique_ptr<kit::TempDir> keys;
    static inline std::string setup_error;

    static void SetUpTestSuite() {
        try {
            broker = std::make_unique<kit::Broker>(kit::shared_pki());
            server = std::make_unique<kit::ArtifactServer>(kit::shared_pki());
            keys = std::make_unique<kit::TempDir>("ota-agent-keys");
            for (const char* name : {"release", "untrusted"}) {
                auto r = kit::run({OTA_PUBLISH_BIN, "keygen", "--out", (keys->path() / name).string()});
                if (r.exit_code != 0) setup_error = r.err;
            }
        } catch (const std::exception& e) {
            setup_error = e.what();
        }
    }
    static void TearDownTestSuite() {
        broker.reset();
        server.reset();
        keys.reset();
    }
    void SetUp() override {
        ASSERT_TRUE(broker && server && setup_error.empty()) << setup_error;
        // Each test (a process of its own under CTest) starts its own broker; the fleet name keeps
        // artifacts of different tests apart on the shared server root.
        device = "device-001";
        fleet = std::string(::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::replace(fleet.begin(), fleet.end(), '/', '-');
        if (fleet.size() > 64) fleet = fleet.substr(fleet.size() - 64);
        clear_retained();
        fs::create_directories(target());
    }

    const kit::Pki& pki = kit::shared_pki();
    kit::TempDir dir{"ota-agent-test"};
    std::string device;
    std::string fleet;

    fs::path target() const { return dir / "models"; }

    void clear_retained() {
        for (const char* c : {"detection-model"}) {
            (void)kit::mosquitto_pub(*broker, pki, device, "ota/v1/devices/" + device + "/status/" + c, "", true);
        }
        (void)kit::mosquitto_pub(*broker, pki, "controller", "ota/v1/devices/" + device + "/assignment", "", true);
    }

    // An artifact on the server (`content` under the URL name `name`) and its signed release of
    // detection-model with the given install arguments ("--install", type, "--target", ...).
    Release sign_release(const std::string& version, const std::string& content, const std::string& name,
                         const std::vector<std::string>& install, const std::string& key = "release",
                         const std::vector<std::string>& extra = {}) {
        Release r;
        r.version = version;
        r.content = content;
        const auto file = dir / ("artifact-" + version);
        kit::write_file(file, r.content);
        std::vector<std::string> args = {OTA_PUBLISH_BIN, "publish", "--dry-run", "--signing-key",
                                         (keys->path() / (key + ".key")).string(), "--component", "detection-model",
                                         "--version", version, "--artifact", file.string(), "--url",
                                         server->url("models/" + fleet + "/" + name), "--copy-to", server->root().string()};
        args.insert(args.end(), install.begin(), install.end());
        args.insert(args.end(), extra.begin(), extra.end());
        auto out = kit::run(args);
        EXPECT_EQ(out.exit_code, 0) << out.err;
        r.envelope = json::parse(out.out).dump();
        return r;
    }

    // A model file release (install type file into target()) of `size` bytes.
    Release make_release(const std::string& version, const std::string& key = "release",
                         std::vector<std::string> extra = {}, std::size_t size = 200000) {
        std::string content = "model " + version + " ";
        content.reserve(size);
        for (std::size_t i = content.size(); i < size; ++i) content.push_back(static_cast<char>('a' + (i * 7919 % 26)));
        return sign_release(version, content, "model-" + version + ".trt", {"--install", "file", "--target", target().string()},
                            key, extra);
    }

    void assign(const std::string& wave = "canary") {
        auto r = kit::mosquitto_pub(*broker, pki, "controller", "ota/v1/devices/" + device + "/assignment",
                                    json{{"fleet", fleet}, {"wave", wave}}.dump(), true);
        ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    void offer(const Release& rel, const std::string& state = "open", bool retain = true, const std::string& wave = "canary") {
        json msg{{"rollout", "r-" + rel.version}, {"state", state}, {"release", json::parse(rel.envelope)}};
        auto r = kit::mosquitto_pub(*broker, pki, "controller", "ota/v1/fleets/" + fleet + "/waves/" + wave + "/detection-model",
                                    msg.dump(), retain);
        ASSERT_EQ(r.exit_code, 0) << r.err;
    }

    // A command on devices/<id>/cmd from the controller (queued in the device's persistent
    // session while the agent is offline).
    void command(const json& cmd) {
        auto r = kit::mosquitto_pub(*broker, pki, "controller", "ota/v1/devices/" + device + "/cmd", cmd.dump(), false);
        ASSERT_EQ(r.exit_code, 0) << r.err;
    }

    fs::path write_config(json extra = json::object()) {
        json cfg{{"device_id", device},
                 {"platform", "linux/arm64"},
                 {"mqtt", {{"broker", broker->url()}, {"cafile", pki.ca().string()}, {"cert", pki.cert(device).string()},
                           {"key", pki.key(device).string()}}},
                 {"trusted_keys", (keys->path() / "release.pub").string()},
                 {"state_dir", (dir / "state").string()},
                 {"download", {{"cafile", pki.ca().string()}, {"low_speed_time_s", 5}, {"attempts", 2}, {"retry_window_s", 0}}},
                 {"components",
                  {{"detection-model",
                    {{"version_source", {{"type", "files"}, {"dir", target().string()}, {"pattern", "model-(.*)\\.trt"}}}}}}},
                 {"log", {{"level", "debug"}}}};
        cfg.merge_patch(extra);
        fs::create_directories(target());
        const auto path = dir / "agent.json";
        kit::write_file(path, cfg.dump(2));
        return path;
    }

    kit::RunResult run_once(const fs::path& config, int wait_s = 15) {
        return kit::run({OTA_AGENT_BIN, "--config", config.string(), "--once", "--once-wait", std::to_string(wait_s)},
                        std::chrono::seconds(wait_s + 30));
    }

    json status() {
        auto got = kit::mosquitto_sub(*broker, pki, "operator", "ota/v1/devices/" + device + "/status/detection-model", 1, 1500ms);
        if (got.messages.empty() || got.messages[0].second.empty()) return nullptr;
        return json::parse(got.messages[0].second);
    }

    // The installed version of detection-model in the retained inventory (null: unknown or none).
    json inventory_version() {
        auto inv = kit::mosquitto_sub(*broker, pki, "operator", "ota/v1/devices/" + device + "/inventory", 1, 1500ms);
        if (inv.messages.empty() || inv.messages[0].second.empty()) return nullptr;
        return json::parse(inv.messages[0].second)["components"]["detection-model"];
    }

    std::vector<std::string> installed_files() {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(target()))
            if (!e.path().filename().string().starts_with(".")) names.push_back(e.path().filename().string());
        std::sort(names.begin(), names.end());
        return names;
    }
};

