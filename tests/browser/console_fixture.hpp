// The fixture of the console's browser tests: the controller tests' stack (a real Mosquitto with
// TLS and the project's ACL, ota-controller, simulated devices, releases signed in the test) plus
// the broker's console listener with two logins (alice: operator, victor: viewer), websockify,
// nginx serving the built console over HTTPS, and Chromium. Each test case is its own CTest
// test (own broker, own database, own browser).
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "browser.hpp"
#include "kit.hpp"
#include "ota/crypto.hpp"
#include "ota/manifest.hpp"
#include "ota/time.hpp"
#include "sim_fleet.hpp"

namespace kit = ota::testkit;
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;
using kit::tid;

class ConsoleTest : public ::testing::Test {
protected:
    static constexpr int fleet_size = 12;
    static constexpr const char* alice_password = "alice-pw-3f9c";
    static constexpr const char* victor_password = "victor-pw-77a1";

    void SetUp() override {
        try {
            broker = std::make_unique<kit::Broker>(
                pki, kit::BrokerOptions{.console_users = {{"alice", alice_password, kit::ConsoleRole::operator_},
                                                          {"victor", victor_password, kit::ConsoleRole::viewer}}});
            websockify = std::make_unique<kit::Websockify>(broker->console_port());
            server = std::make_unique<kit::ConsoleServer>(pki, websockify->port());
            browser = std::make_unique<kit::Browser>(server->spki());
        } catch (const std::exception& e) {
            FAIL() << e.what();
        }
        fs::create_directories(dir / "keys");
        kit::write_file(dir / "keys" / "release.pub", key.public_key().to_pem());
    }

    void TearDown() override {
        if (HasFailure()) {
            if (browser) std::cerr << "page events: " << browser->events("p") << "\ndriver log:\n" << browser->log() << "\n";
            if (controller) std::cerr << "controller log:\n" << controller->log() << "\n";
            if (websockify) std::cerr << "websockify log:\n" << websockify->log() << "\n";
        }
        browser.reset();
        controller.reset();
        sims.reset();
    }

    const kit::Pki& pki = kit::shared_pki(fleet_size);
    kit::TempDir dir{"ota-console-test"};
    ota::crypto::PrivateKey key = ota::crypto::PrivateKey::generate();
    std::unique_ptr<kit::Broker> broker;
    std::unique_ptr<kit::Websockify> websockify;
    std::unique_ptr<kit::ConsoleServer> server;
    std::unique_ptr<kit::Browser> browser;
    std::unique_ptr<kit::Process> controller;
    std::unique_ptr<kit::SimFleet> sims;

    static std::string dev(int i) {
        char b[32];
        std::snprintf(b, sizeof b, "device-%03d", i);
        return b;
    }

    // Fleet "plant": canary = device-001..002, early = label ring=early (device-003..006), broad = the rest.
    json config(json canary = json::object(), json early = json::object(), json broad = json::object(),
                json defaults = json::object()) const {
        json c{{"name", "canary"}, {"devices", {dev(1), dev(2)}}};
        json e{{"name", "early"}, {"labels", {{"ring", "early"}}}};
        json b{{"name", "broad"}, {"percent", 100}};
        for (auto [w, extra] : {std::pair{&c, &canary}, {&e, &early}, {&b, &broad}})
            if (extra->is_object()) w->update(*extra);
        return json{{"mqtt", {{"broker", broker->url()}, {"cafile", pki.ca()}, {"cert", pki.cert("controller")},
                              {"key", pki.key("controller")}}},
                    {"trusted_keys", (dir / "keys").string()},
                    {"database", (dir / "controller.db").string()},
                    {"tick_ms", 50},
                    {"state_interval_ms", 100},
                    {"fleets", json::array({{{"name", "plant"}, {"channel", "stable"}, {"defaults", defaults},
                                             {"waves", json::array({c, e, b})}}})}};
    }

    void start_controller(const json& cfg) {
        kit::write_file(dir / "controller.json", cfg.dump(2));
        if (fs::exists(dir / "controller.log")) fs::rename(dir / "controller.log", dir / "controller.log.1");
        controller = std::make_unique<kit::Process>(
            std::vector<std::string>{OTA_CONTROLLER_BIN, "--config", (dir / "controller.json").string()},
            dir / "controller.log");
        ASSERT_TRUE(kit::wait_until([&] { return controller->log().find("controller running") != std::string::npos; }, 15s))
            << controller->log();
    }

    void start_devices(int n = fleet_size, kit::SimBehaviour b = {}, const std::string& version = "1.0.0") {
        sims = std::make_unique<kit::SimFleet>(*broker, pki);
        for (int i = 1; i <= n; ++i) {
            std::map<std::string, std::string> labels{{"site", "plant"}};
            if (i >= 3 && i <= 6) labels["ring"] = "early";
            sims->add(dev(i), labels, {{"app", version}}, b);
        }
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

    kit::RunResult ctl(std::vector<std::string> args) const {
        std::vector<std::string> argv{OTA_CTL_BIN, "--broker", broker->url(), "--cafile", pki.ca().string(),
                                      "--cert", pki.cert("operator").string(), "--key", pki.key("operator").string(),
                                      "--timeout", "10", "--json"};
        argv.insert(argv.end(), args.begin(), args.end());
        return kit::run(argv, 60s, {{"HOME", dir.path().string()}});
    }
    json ctl_json(std::vector<std::string> args) const {
        auto r = ctl(std::move(args));
        return r.exit_code == 0 ? json::parse(r.out, nullptr, false) : json{{"error", r.err}};
    }

    std::optional<json> retained(const std::string& topic) const {
        auto got = kit::mosquitto_sub(*broker, pki, "operator", topic, 1, 1500ms);
        if (got.messages.empty()) return std::nullopt;
        return json::parse(got.messages.front().second, nullptr, false);
    }

    // Open the console and log in; true once the page says "connected".
    ::testing::AssertionResult login(const std::string& user, const std::string& password, const std::string& page = "p") {
        auto r = browser->open(page, server->url(""));
        if (!r.ok) return ::testing::AssertionFailure() << "open: " << r.error;
        for (auto [sel, value] : {std::pair{"login-user", user}, {"login-password", password}})
            if (r = browser->fill(page, tid(sel), value); !r.ok) return ::testing::AssertionFailure() << sel << ": " << r.error;
        if (r = browser->click(page, tid("login-submit")); !r.ok) return ::testing::AssertionFailure() << "submit: " << r.error;
        if (r = browser->wait(page, tid("connection"), "^connected$", 10s); !r.ok)
            return ::testing::AssertionFailure() << "connection: " << r.error << " " << browser->events(page);
        return ::testing::AssertionSuccess();
    }

    // A screenshot of the page into <build>/screenshots/<name>.png (docs/console.md shows them).
    void shot(const std::string& name, const std::string& page = "p") {
        fs::create_directories(OTA_SCREENSHOT_DIR);
        auto r = browser->screenshot(page, fs::path(OTA_SCREENSHOT_DIR) / (name + ".png"));
        EXPECT_TRUE(r.ok) << r.error;
    }
};
