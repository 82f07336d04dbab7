// The fixture of the controller's integration tests: a real Mosquitto (TLS, the project's ACL),
// ota-controller as a process, ota-ctl as the operator (certificate `operator`), console logins
// alice (operator) and victor (viewer) on the broker's console listener, releases signed in the test with a key
// the controller trusts, and simulated devices (sim_fleet.hpp). Each test case is its own CTest
// test, so each gets its own broker and database.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "kit.hpp"
#include "ota/crypto.hpp"
#include "ota/manifest.hpp"
#include "ota/time.hpp"
#include "sim_fleet.hpp"

namespace kit = ota::testkit;
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

class ControllerTest : public ::testing::Test {
protected:
    static constexpr int fleet_size = 20;
    static constexpr const char* alice_password = "alice-pw-5b21";
    static constexpr const char* victor_password = "victor-pw-c8e0";
    static inline std::unique_ptr<kit::Broker> broker;
    static inline std::string setup_error;

    static void SetUpTestSuite() {
        try {
            // With the console listener: alice (operator) and victor (viewer) log in there.
            broker = std::make_unique<kit::Broker>(
                kit::shared_pki(fleet_size),
                kit::BrokerOptions{.console_users = {{"alice", alice_password, kit::ConsoleRole::operator_},
                                                     {"victor", victor_password, kit::ConsoleRole::viewer}}});
        } catch (const std::exception& e) {
            setup_error = e.what();
        }
    }
    static void TearDownTestSuite() { broker.reset(); }

    void SetUp() override {
        ASSERT_TRUE(broker && setup_error.empty()) << setup_error;
        fs::create_directories(dir / "keys");
        kit::write_file(dir / "keys" / "release.pub", key.public_key().to_pem());
        metrics_port = kit::free_port();
    }

    void TearDown() override {
        if (controller && HasFailure()) std::cerr << "controller log:\n" << controller->log() << "\n";
        controller.reset();
        sims.reset();
    }

    const kit::Pki& pki = kit::shared_pki(fleet_size);
    kit::TempDir dir{"ota-controller-test"};
    ota::crypto::PrivateKey key = ota::crypto::PrivateKey::generate();
    std::unique_ptr<kit::Process> controller;
    std::unique_ptr<kit::SimFleet> sims;
    int metrics_port{0};

    static std::string dev(int i) {
        char b[32];
        std::snprintf(b, sizeof b, "device-%03d", i);
        return b;
    }

    // A fleet "plant" with the given waves (policy fields inside each wave) for every device.
    json config(json waves, json defaults = json::object()) const {
        return json{{"mqtt", {{"broker", broker->url()}, {"cafile", pki.ca()}, {"cert", pki.cert("controller")},
                              {"key", pki.key("controller")}}},
                    {"trusted_keys", (dir / "keys").string()},
                    {"database", (dir / "controller.db").string()},
                    {"metrics_listen", "127.0.0.1:" + std::to_string(metrics_port)},
                    {"tick_ms", 50},
                    {"state_interval_ms", 100},
                    {"fleets", json::array({{{"name", "plant"}, {"channel", "stable"}, {"defaults", defaults},
                                             {"waves", waves}}})},
                    {"log", {{"level", "debug"}}}};
    }

    // The usual three waves: canary = device-001..002, early = label ring=early, broad = the rest.
    static json three_waves(json canary = json::object(), json early = json::object(), json broad = json::object()) {
        json c{{"name", "canary"}, {"devices", {dev(1), dev(2)}}};
        json e{{"name", "early"}, {"labels", {{"ring", "early"}}}};
        json b{{"name", "broad"}, {"percent", 100}};
        for (auto [w, extra] : {std::pair{&c, &canary}, {&e, &early}, {&b, &broad}})
            if (extra->is_object()) w->update(*extra);
        return json::array({c, e, b});
    }

    void start_controller(const json& cfg) {
        kit::write_file(dir / "controller.json", cfg.dump(2));
        // A restart writes a log of its own: "controller running" must be this start's.
        if (fs::exists(dir / "controller.log")) fs::rename(dir / "controller.log", dir / "controller.log.1");
        controller = std::make_unique<kit::Process>(
            std::vector<std::string>{OTA_CONTROLLER_BIN, "--config", (dir / "controller.json").string()},
            dir / "controller.log");
        ASSERT_TRUE(kit::wait_until([&] { return controller->log().find("controller running") != std::string::npos; }, 15s))
            << controller->log();
    }

    // Devices 1..n: 1-2 canary, 3-8 labelled ring=early, the rest broad; all at `app` 1.0.0.
    void start_devices(int n = fleet_size, kit::SimBehaviour b = {}, const std::string& version = "1.0.0") {
        sims = std::make_unique<kit::SimFleet>(*broker, pki);
        for (int i = 1; i <= n; ++i) {
            std::map<std::string, std::string> labels;
            if (i >= 3 && i <= 8) labels["ring"] = "early";
            sims->add(dev(i), labels, {{"app", version}}, b);
        }
        // Every device placed in its wave (assignment received) before a release comes.
        ASSERT_TRUE(kit::wait_until([&] {
            for (auto* d : sims->all())
                if (d->assignment().empty()) return false;
            return true;
        }, 15s)) << controller->log();
    }

    std::string sign(const std::string& component, const std::string& version) const {
        ota::Manifest m;
        m.component = component;
        m.version = version;
        m.version_scheme = ota::VersionScheme::semver;
        m.channel = "stable";
        m.artifact.url = "https://127.0.0.1:1/" + component + "-" + version;
        m.artifact.size = 1;
        m.artifact.sha256 = std::string(64, 'a');
        m.install.type = ota::InstallType::file;
        m.install.target = "/var/lib/" + component;
        m.created = ota::now_utc();
        m.expires = m.created + std::chrono::hours(24);
        return ota::make_envelope(m, key);
    }

    void publish_release(const std::string& component, const std::string& version) {
        auto r = kit::mosquitto_pub(*broker, pki, "ci", "ota/v1/releases/" + component + "/stable", sign(component, version), true);
        ASSERT_EQ(r.exit_code, 0) << r.err;
    }

    kit::RunResult ctl(std::vector<std::string> args, const std::string& who = "operator") const {
        return ctl_as(pki.cert(who), pki.key(who), std::move(args));
    }
    kit::RunResult ctl_as(const fs::path& cert, const fs::path& key_file, std::vector<std::string> args,
                          const std::map<std::string, std::string>& env = {}) const {
        std::vector<std::string> argv{OTA_CTL_BIN, "--broker", broker->url(), "--cafile", pki.ca().string(),
                                      "--cert", cert.string(), "--key", key_file.string(), "--timeout", "10"};
        argv.insert(argv.end(), args.begin(), args.end());
        auto e = env;
        e.emplace("HOME", dir.path().string());
        return kit::run(argv, 60s, e);
    }

    json ctl_json(std::vector<std::string> args) const {
        args.insert(args.begin(), "--json");
        auto r = ctl(args);
        if (r.exit_code != 0) return json{{"error", r.err}};
        return json::parse(r.out, nullptr, false);
    }

    std::optional<std::string> retained(const std::string& topic) const {
        auto got = kit::mosquitto_sub(*broker, pki, "operator", topic, 1, 1500ms);
        if (got.messages.empty()) return std::nullopt;
        return got.messages.front().second;
    }

    json state(const std::string& rollout) const {
        auto s = retained("ota/v1/rollouts/" + rollout);
        return s ? json::parse(*s, nullptr, false) : json();
    }

    bool wait_state(const std::string& rollout, const std::string& want, std::chrono::milliseconds timeout = 30s) const {
        return kit::wait_until([&] { return ctl_json({"status", rollout}).value("state", "") == want; }, timeout, 200ms);
    }

    // Until wave `index` of the rollout is in `want` (ota-ctl status, bounded).
    bool wait_wave(const std::string& rollout, std::size_t index, const std::string& want, std::chrono::milliseconds timeout = 30s) const {
        return kit::wait_until([&] {
            auto s = ctl_json({"status", rollout});
            return s.contains("waves") && s["waves"][index]["state"] == want;
        }, timeout, 200ms);
    }

    std::vector<std::string> audit_actions(const std::string& rollout) const {
        std::vector<std::string> out;
        for (const auto& a : ctl_json({"audit", "--rollout", rollout, "--limit", "1000"}))
            out.push_back(a.value("action", "") + (a.value("detail", "").starts_with("wave ")
                                                       ? " " + a.value("detail", "").substr(5, a.value("detail", "").find(':') - 5)
                                                       : ""));
        return out;
    }

    std::string metrics() const {
        auto r = kit::run({"curl", "-s", "http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics"}, 10s);
        return r.out;
    }
};
