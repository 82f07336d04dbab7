// A controller engine on a real SQLite file, driven without a broker: messages in with a test
// clock, publishes out. Shared by the controller's unit tests.
#pragma once

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine.hpp"
#include "kit.hpp"
#include "ota/manifest.hpp"
#include "policy.hpp"
#include "store.hpp"

namespace ota::controller::testing {

namespace kit = ota::testkit;
using json = nlohmann::json;

inline json base_config(json waves) {
    return json{{"mqtt", {{"broker", "mqtts://127.0.0.1:1"}}},
                {"trusted_keys", "/nonexistent"},
                {"fleets", json::array({{{"name", "plant"}, {"waves", waves}}})}};
}

struct EngineRig {
    kit::TempDir dir{"ota-engine"};
    ota::crypto::PrivateKey key = ota::crypto::PrivateKey::generate();
    ControllerConfig cfg;
    std::unique_ptr<Store> store;
    std::unique_ptr<Engine> engine;
    TimePoint now = Clock::now();

    explicit EngineRig(json waves) {
        cfg = *parse_controller_config(base_config(std::move(waves)));
        open();
    }
    void open() {
        engine.reset();
        store.reset();
        store = std::move(*Store::open(dir / "c.db"));
        ota::crypto::TrustStore t;
        t.add(key.public_key());
        engine = std::make_unique<Engine>(cfg, *store, t);
        engine->load(now);
    }
    void msg(const std::string& topic, const json& payload) { msg(topic, payload.dump()); }
    void msg(const std::string& topic, const std::string& payload) {
        engine->on_message({.topic = topic, .payload = payload, .qos = 1, .retained = false}, now);
        engine->flush(now);
    }
    void device(const std::string& id, const std::string& version) {
        msg("ota/v1/devices/" + id + "/inventory",
            json{{"device", id}, {"platform", "linux/amd64"}, {"labels", json::object()}, {"components", {{"app", version}}}});
    }
    void release(const std::string& version) {
        ota::Manifest m;
        m.component = "app";
        m.version = version;
        m.channel = "stable";
        m.artifact = {.url = "https://x/a", .size = 1, .sha256 = std::string(64, 'a'), .encryption = std::nullopt};
        m.install.type = ota::InstallType::file;
        m.install.target = "/x";
        m.created = ota::now_utc();
        msg("ota/v1/releases/app/stable", ota::make_envelope(m, key));
    }
    void status(const std::string& id, int seq, const std::string& stage, const std::string& rollout) {
        msg("ota/v1/devices/" + id + "/status/app", json{{"device", id}, {"seq", seq}, {"stage", stage}, {"rollout", rollout}});
    }
    json state(const std::string& id) { return json::parse(engine->rollout_state(id)->dump()); }
    std::vector<Outgoing> out() { return engine->take_outgoing(); }
};

inline std::string dev(int i) {
    char b[32];
    std::snprintf(b, sizeof b, "device-%03d", i);
    return b;
}

}  // namespace ota::controller::testing
