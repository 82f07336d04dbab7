// The fixture of the console's browser tests: a real Mosquitto with TLS and the project's ACL
// (device listener, simulation listener, console listener with two logins: alice = operator,
// victor = viewer), ota-controller, ota-fleet-sim processes as the devices, releases published
// with ota-publish, websockify, nginx serving the built console over HTTPS, and Chromium. Each
// test case is its own CTest test (own broker, own database, own browser).
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <set>
#include <thread>
#include <mutex>

#include "browser.hpp"
#include "kit.hpp"
#include "ota/mqtt.hpp"

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
    static constexpr const char* sim_secret = "console-test-sims";

    void SetUp() override {
        fs::create_directories(dir / "keys");
        auto pw = kit::run({OTA_FLEET_SIM_BIN, "make-passwords", "--devices", std::to_string(fleet_size), "--id-format",
                            "device-%03d", "--secret", sim_secret, "--out", (dir / "sim.passwd").string()});
        ASSERT_EQ(pw.exit_code, 0) << pw.err;
        auto k = kit::run({OTA_PUBLISH_BIN, "keygen", "--out", (dir / "release").string()});
        ASSERT_EQ(k.exit_code, 0) << k.err;
        fs::copy_file(dir / "release.pub", dir / "keys" / "release.pub");
        kit::write_file(dir / "artifact.bin", std::string(4096, 'x'));
        try {
            broker = std::make_unique<kit::Broker>(
                pki, kit::BrokerOptions{.password_file = dir / "sim.passwd",
                                        .console_users = {{"alice", alice_password, kit::ConsoleRole::operator_},
                                                          {"victor", victor_password, kit::ConsoleRole::viewer}}});
            websockify = std::make_unique<kit::Websockify>(broker->console_port());
            server = std::make_unique<kit::ConsoleServer>(pki, websockify->port());
            browser = std::make_unique<kit::Browser>(server->spki());
        } catch (const std::exception& e) {
            FAIL() << e.what();
        }
    }

    void TearDown() override {
        if (HasFailure()) {
            if (browser) std::cerr << "page events: " << browser->events("p") << "\ndriver log:\n" << tail(browser->log()) << "\n";
            if (controller) std::cerr << "controller log:\n" << tail(controller->log()) << "\n";
            for (auto& s : sims) std::cerr << "simulator log:\n" << tail(s->log()) << "\n";
            if (websockify) std::cerr << "websockify log:\n" << tail(websockify->log()) << "\n";
        }
        browser.reset();
        sims.clear();
        controller.reset();
    }

    static std::string tail(const std::string& s, std::size_t n = 5000) { return s.size() > n ? s.substr(s.size() - n) : s; }

    const kit::Pki& pki = kit::shared_pki(3);
    kit::TempDir dir{"ota-console-test"};
    std::unique_ptr<kit::Broker> broker;
    std::unique_ptr<kit::Websockify> websockify;
    std::unique_ptr<kit::ConsoleServer> server;
    std::unique_ptr<kit::Browser> browser;
    std::unique_ptr<kit::Process> controller;
    std::vector<std::unique_ptr<kit::Process>> sims;

    static std::string dev(int i) {
        char b[32];
        std::snprintf(b, sizeof b, "device-%03d", i);
        return b;
    }
    static std::string rollout_id(const std::string& version) { return "plant.app." + version; }

    // Fleet "plant": canary = device-001..002, early = label ring=early (device-003..006), broad = the rest.
    json config(json canary = json::object(), json early = json::object(), json broad = json::object()) const {
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
                    {"fleets", json::array({{{"name", "plant"}, {"channel", "stable"}, {"waves", json::array({c, e, b})}}})}};
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

    // The fleet as three ota-fleet-sim processes on the simulation listener: the canary devices
    // (device-001..002, failing `canary_fails` when given), the early ring (003..006, label
    // ring=early) and the rest (007..012); `extra` goes to every process. Returns once the
    // controller has assigned every device.
    void start_devices(const std::string& canary_fails = "", std::vector<std::string> extra = {}) {
        auto start = [&](int first, int n, std::vector<std::string> args) {
            std::vector<std::string> argv{OTA_FLEET_SIM_BIN, "--port", std::to_string(broker->sim_port()), "--secret",
                                          sim_secret, "--trusted-keys", (dir / "release.pub").string(), "--id-format",
                                          "device-%03d", "--first", std::to_string(first), "--devices", std::to_string(n),
                                          "--label", "site=plant", "--work-ms", "600", "--quiet"};
            argv.insert(argv.end(), args.begin(), args.end());
            argv.insert(argv.end(), extra.begin(), extra.end());
            sims.push_back(std::make_unique<kit::Process>(argv, dir / ("sim-" + std::to_string(first) + ".log")));
        };
        std::vector<std::string> canary;
        if (!canary_fails.empty()) canary = {"--fail-versions", canary_fails};
        start(1, 2, canary);
        start(3, 4, {"--label", "ring=early"});
        start(7, fleet_size - 6, {});
        ASSERT_TRUE(kit::wait_until([&] {
            return kit::mosquitto_sub(*broker, pki, "operator", "ota/v1/devices/+/assignment", fleet_size, 2s).messages.size() ==
                   static_cast<std::size_t>(fleet_size);
        }, 30s)) << (controller ? controller->log() : "");
    }

    // ota-publish signs app <version> and publishes it to releases/app/stable (retained).
    void publish_release(const std::string& version) {
        auto r = kit::run({OTA_PUBLISH_BIN, "publish", "--broker", broker->url(), "--cafile", pki.ca().string(), "--cert",
                           pki.cert("ci").string(), "--key", pki.key("ci").string(), "--signing-key",
                           (dir / "release.key").string(), "--component", "app", "--version", version, "--artifact",
                           (dir / "artifact.bin").string(), "--url", "https://127.0.0.1:1/app-" + version, "--install",
                           "file", "--target", "/var/lib/app"},
                          30s);
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
    // The retained rollout message's state ("" when none).
    std::string rollout_state(const std::string& id) const {
        auto r = retained("ota/v1/rollouts/" + id);
        return r && r->is_object() ? r->value("state", "") : "";
    }
    // The retained wave message of `wave` names rollout `id` and is in `state`.
    bool wave_is(const std::string& wave, const std::string& id, const std::string& state) const {
        auto w = retained("ota/v1/fleets/plant/waves/" + wave + "/app");
        return w && w->is_object() && w->value("rollout", "") == id && w->value("state", "") == state;
    }

    // Open the console and log in; true once the page says "connected".
    ::testing::AssertionResult login(const std::string& user, const std::string& password, bool stay = false,
                                     const std::string& page = "p") {
        auto r = browser->open(page, server->url(""));
        if (!r.ok) return ::testing::AssertionFailure() << "open: " << r.error;
        for (auto [sel, value] : {std::pair{"login-user", user}, {"login-password", password}})
            if (r = browser->fill(page, tid(sel), value); !r.ok) return ::testing::AssertionFailure() << sel << ": " << r.error;
        if (stay)
            if (r = browser->check(page, tid("login-stay")); !r.ok) return ::testing::AssertionFailure() << "stay: " << r.error;
        if (r = browser->click(page, tid("login-submit")); !r.ok) return ::testing::AssertionFailure() << "submit: " << r.error;
        if (r = browser->wait(page, tid("conn-state"), "^connected$", 10s); !r.ok)
            return ::testing::AssertionFailure() << "conn-state: " << r.error << " " << browser->events(page);
        return ::testing::AssertionSuccess();
    }

    // Go to a view of the page (the part after '#/').
    void go(const std::string& route, const std::string& page = "p") {
        auto r = browser->eval(page, "() => { location.hash = " + json("#/" + route).dump() + "; }");
        ASSERT_TRUE(r.ok) << r.error;
    }

    // The page's fleet counts: "<state>" -> n for the app component (the fleet view's table).
    std::map<std::string, int> fleet_counts(const std::string& page = "p") {
        auto r = browser->eval(page, R"(() => {
            const out = {};
            for (const e of document.querySelectorAll('[data-testid=fleet-count][data-component=app]'))
                out[e.dataset.state] = Number(e.textContent.trim());
            const t = document.querySelector('[data-testid=fleet-total][data-component=app]');
            out.total = t ? Number(t.textContent.trim()) : -1;
            return out;
        })");
        std::map<std::string, int> out;
        if (r.ok && r.value.is_object())
            for (auto& [k, v] : r.value.items())
                if (v.is_number()) out[k] = v.get<int>();
        return out;
    }
    // Wait until the fleet view shows `n` devices in `state` (and `total` in all).
    ::testing::AssertionResult wait_count(const std::string& state, int n, std::chrono::milliseconds timeout = 30s,
                                          const std::string& page = "p") {
        std::map<std::string, int> last;
        if (kit::wait_until([&] {
                last = fleet_counts(page);
                return last[state] == n && last["total"] == fleet_size;
            }, timeout, 100ms))
            return ::testing::AssertionSuccess();
        auto f = ::testing::AssertionFailure() << "fleet counts:";
        for (auto& [k, v] : last) f << " " << k << "=" << v;
        return f;
    }

    // A wave bar's count of one kind on the rollout view, e.g. "succeeded 2".
    static std::string wave_count(const std::string& wave, const std::string& kind) {
        return "[data-testid=wave-bar][data-wave=" + wave + "] [data-testid=wave-count][data-kind=" + kind + "]";
    }

    // A screenshot of the page into <build>/screenshots/console-<name>.png (docs/console.md shows them).
    void shot(const std::string& name, const std::string& page = "p") {
        fs::create_directories(OTA_SCREENSHOT_DIR);
        auto r = browser->screenshot(page, fs::path(OTA_SCREENSHOT_DIR) / ("console-" + name + ".png"));
        EXPECT_TRUE(r.ok) << r.error;
    }
};
