// The agent's config: field-path errors and the update window.
#include <gtest/gtest.h>

#include "agent_config.hpp"
#include "ota/time.hpp"

using nlohmann::json;
using ota::agent::parse_agent_config;

namespace {
json base() {
    return {{"device_id", "device-001"},
            {"mqtt", {{"broker", "mqtts://b:8883"}, {"cafile", "/c"}, {"cert", "/c"}, {"key", "/k"}}},
            {"trusted_keys", "/keys"}};
}
std::chrono::system_clock::time_point at(const char* utc) { return *ota::parse_utc(utc); }
}  // namespace

TEST(AgentConfig, ErrorsNameTheFieldPath) {
    struct Case {
        json patch;
        const char* expected;
    };
    const Case cases[] = {
        {{{"device_id", "a/b"}}, "agent.device_id: \"a/b\" is not a valid name"},
        {{{"mqtt", {{"broker", 5}}}}, "agent.mqtt.broker: expected a string"},
        {{{"install_root", "relative"}}, "agent.install_root: must be an absolute path"},
        {{{"surprise", 1}}, "agent.surprise: unknown field"},
        {{{"components", {{"m", {{"health", {{"command", {"x"}}, {"url", "http://y"}}}}}}}}, "agent.components.m.health.command: give exactly one"},
        {{{"components", {{"m", {{"version_source", {{"type", "rpm"}}}}}}}}, "agent.components.m.version_source.type: \"rpm\" is not"},
        {{{"update_window", {{"start", "25:00"}, {"end", "03:00"}}}}, "agent.update_window.start: expected HH:MM"},
        {{{"update_window", {{"days", {"monday"}}, {"start", "01:00"}, {"end", "03:00"}}}}, "agent.update_window.days: \"monday\""},
        {{{"components", {{"m", {{"type", "rpm"}}}}}}, "agent.components.m.type: \"rpm\" is not file"},
        {{{"status", {{"progress_step_percent", 0}}}}, "agent.status.progress_step_percent: must be 1..100"},
        {{{"status", {{"every_s", 1}}}}, "agent.status.every_s: unknown field"},
        {{{"components", {{"m", {{"target", "/var/lib/models"}}}}}}, "agent.components.m.target: needs the component's type"},
        {{{"components", {{"m", {{"type", "file"}, {"target", "models"}}}}}}, "agent.components.m.target: must be an absolute path"},
        {{{"components", {{"m", {{"type", "file"}, {"target", "/var/lib/../etc"}}}}}}, "agent.components.m.target: must not contain '..'"},
        {{{"components", {{"m", {{"type", "file"}, {"target", "/var/lib/a\nb"}}}}}}, "agent.components.m.target: must not contain control"},
        {{{"components", {{"m", {{"type", "docker-image"}, {"target", "/srv"}}}}}}, "agent.components.m.target: a docker-image component takes no target"},
        {{{"components", {{"m", {{"type", "self"}, {"target", "/usr/bin/ota-agent"}}}}}}, "agent.components.m.target: a self component takes no target"},
        {{{"components", {{"m", {{"type", "binary"}, {"target", "/usr/local/bin/"}}}}}}, "agent.components.m.target: a binary's target is the binary's path"},
        {{{"download", {{"caches", {{"http://cloud/", "https://site/"}}}}}}, "agent.download.caches: origin \"http://cloud/\" must be https://"},
        {{{"download", {{"caches", {{"https://cloud", "https://site/"}}}}}}, "agent.download.caches: origin \"https://cloud\" must be"},
        {{{"download", {{"caches", {{"https://cloud/", "https://site:8443"}}}}}}, "agent.download.caches: cache \"https://site:8443\" (for https://cloud/) must be"},
        {{{"download", {{"caches", {{"https://cloud/", "https://user@site/"}}}}}}, "agent.download.caches: cache \"https://user@site/\""},
        {{{"download", {{"caches", {{"https:///", "https://site/"}}}}}}, "agent.download.caches: origin \"https:///\""},
        {{{"download", {{"caches", {{"https://cloud/", 5}}}}}}, "agent.download.caches.https://cloud/: expected a string"},
        {{{"download", {{"cache_fallback", "yes"}}}}, "agent.download.cache_fallback: expected true or false"},
    };
    for (const auto& c : cases) {
        auto j = base();
        j.merge_patch(c.patch);
        auto r = parse_agent_config(j);
        ASSERT_FALSE(r) << c.patch.dump();
        EXPECT_EQ(r.error().code, ota::ErrorCode::config_invalid);
        EXPECT_EQ(r.error().message.rfind(c.expected, 0), 0u) << c.patch.dump() << ": " << r.error().message;
    }
    EXPECT_TRUE(parse_agent_config(base()));
}

// Site caches: the longest origin prefix wins; a URL of another origin goes direct.
TEST(AgentConfig, ArtifactURLsOfACachedOriginGoThroughTheSiteCache) {
    auto j = base();
    j["download"] = {{"caches", {{"https://cloud.example.com/", "https://cache.site-a.lan:8443/"},
                                 {"https://cloud.example.com/big/", "https://bulk.site-a.lan/cloud-big/"}}},
                     {"cache_fallback", false}};
    auto r = parse_agent_config(j);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_FALSE(r->cache_fallback);
    EXPECT_EQ(ota::agent::cache_url(*r, "https://cloud.example.com/models/m-1.trt"), "https://cache.site-a.lan:8443/models/m-1.trt");
    EXPECT_EQ(ota::agent::cache_url(*r, "https://cloud.example.com/big/image.tar"), "https://bulk.site-a.lan/cloud-big/image.tar");
    EXPECT_EQ(ota::agent::cache_url(*r, "https://cloud.example.com.evil/m.trt"), std::nullopt);
    EXPECT_EQ(ota::agent::cache_url(*r, "https://other.example.com/m.trt"), std::nullopt);
    EXPECT_TRUE(parse_agent_config(r->to_json()));
    EXPECT_EQ(parse_agent_config(r->to_json())->download_caches, r->download_caches) << "to_json round-trips";
    EXPECT_TRUE(parse_agent_config(base())->cache_fallback) << "the default";
}

TEST(AgentConfig, ComponentInstallSettings) {
    auto j = base();
    j["components"] = {{"app", {{"compose_file", "/srv/app/compose.yml"}, {"compose_command", "docker-compose"},
                                {"decrypt_keys_dir", "/etc/ota/decrypt-keys"}, {"command_timeout_s", 90}}},
                       {"model", json::object()}};
    auto r = parse_agent_config(j);
    ASSERT_TRUE(r) << r.error().describe();
    const auto& app = r->components.at("app").install;
    EXPECT_EQ(app.compose_file, "/srv/app/compose.yml");
    EXPECT_EQ(app.compose_command, "docker-compose");
    EXPECT_EQ(app.decrypt_keys_dir, "/etc/ota/decrypt-keys");
    EXPECT_EQ(app.command_timeout, std::chrono::seconds(90));
    EXPECT_EQ(r->components.at("model").install.command_timeout, std::chrono::minutes(10)) << "the default";
}

// The directories the sandbox opens come from the config: state, own binary, each target (a
// binary's directory), under install_root, without duplicates or nested ones.
TEST(AgentConfig, WritePathsAreDerivedFromTheConfiguredTargets) {
    auto j = base();
    j["state_dir"] = "/var/lib/ota-agent";
    j["components"] = {{"model", {{"type", "file"}, {"target", "/var/lib/models/"}}},
                       {"inner", {{"type", "archive"}, {"target", "/var/lib/models/app"}}},
                       {"tool", {{"type", "binary"}, {"target", "/usr/local/bin/tool"}}},
                       {"free", json::object()},
                       {"app", {{"type", "docker-image"}}}};
    auto r = parse_agent_config(j);
    ASSERT_TRUE(r) << r.error().describe();
    using P = std::vector<std::filesystem::path>;
    EXPECT_EQ(r->write_paths(), (P{"/usr/local/bin", "/var/lib/models", "/var/lib/ota-agent"}));

    j["install_root"] = "/srv/dev1";
    j["binary_path"] = "/opt/agent/bin/ota-agent";
    r = parse_agent_config(j);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->write_paths(), (P{"/opt/agent/bin", "/srv/dev1/usr/local/bin", "/srv/dev1/var/lib/models", "/var/lib/ota-agent"}));
    EXPECT_EQ(r->to_json()["components"]["tool"]["type"], "binary") << "printed back by --print-config";
    EXPECT_EQ(r->to_json()["components"]["tool"]["target"], "/usr/local/bin/tool");
}

// The generator's drop-in: one optional (-) ReadWritePaths= per directory, quoted, % escaped.
TEST(AgentConfig, SandboxDropinQuotesEachPath) {
    auto j = base();
    j["components"] = {{"model", {{"type", "file"}, {"target", "/srv/my models/100%"}}}};
    auto r = parse_agent_config(j);
    ASSERT_TRUE(r) << r.error().describe();
    const auto dropin = ota::agent::sandbox_dropin(*r, "/etc/ota/agent.json");
    EXPECT_NE(dropin.find("\n[Service]\n"), std::string::npos) << dropin;
    EXPECT_NE(dropin.find("\nReadWritePaths=\"-/srv/my models/100%%\"\n"), std::string::npos) << dropin;
    EXPECT_NE(dropin.find("\nReadWritePaths=\"-/var/lib/ota-agent\"\n"), std::string::npos) << dropin;
    EXPECT_NE(dropin.find("Generated from /etc/ota/agent.json"), std::string::npos) << dropin;
}

// A release may install only as the type and to the target the config pins (when it pins them).
TEST(AgentConfig, ReleasesAreCheckedAgainstThePinnedTypeAndTarget) {
    auto j = base();
    j["components"] = {{"model", {{"type", "file"}, {"target", "/var/lib/models"}}},
                       {"tool", {{"type", "binary"}}},
                       {"free", json::object()}};
    auto r = parse_agent_config(j);
    ASSERT_TRUE(r) << r.error().describe();
    auto manifest = [](ota::InstallType type, std::string target) {
        ota::Manifest m;
        m.install.type = type;
        m.install.target = std::move(target);
        return m;
    };
    const auto& model = r->components.at("model");
    EXPECT_TRUE(check_install_allowed(model, manifest(ota::InstallType::file, "/var/lib/models")));
    EXPECT_TRUE(check_install_allowed(model, manifest(ota::InstallType::file, "/var/lib/models/"))) << "the same directory";
    auto other = check_install_allowed(model, manifest(ota::InstallType::file, "/etc/cron.d"));
    ASSERT_FALSE(other);
    EXPECT_EQ(other.error().code, ota::ErrorCode::target_not_allowed);
    EXPECT_EQ(other.error().message,
              "the release installs model to /etc/cron.d; this device allows only /var/lib/models (components.model.target)");
    auto as_binary = check_install_allowed(model, manifest(ota::InstallType::binary, "/var/lib/models/x"));
    ASSERT_FALSE(as_binary);
    EXPECT_EQ(as_binary.error().message,
              "the release installs model as binary; this device allows only file (components.model.type)");
    EXPECT_TRUE(check_install_allowed(r->components.at("tool"), manifest(ota::InstallType::binary, "/usr/local/bin/t")));
    EXPECT_FALSE(check_install_allowed(r->components.at("tool"), manifest(ota::InstallType::self, "")));
    EXPECT_TRUE(check_install_allowed(r->components.at("free"), manifest(ota::InstallType::archive, "/anywhere")));
}

TEST(UpdateWindow, DaysHoursAndWrapPastMidnight) {
    auto j = base();
    j["update_window"] = {{"days", {"sat", "sun"}}, {"start", "22:00"}, {"end", "04:00"}};
    auto c = parse_agent_config(j);
    ASSERT_TRUE(c) << c.error().message;
    const auto& w = *c->update_window;
    EXPECT_TRUE(w.contains(at("2026-11-21T23:30:00Z")));   // Saturday night
    EXPECT_TRUE(w.contains(at("2026-11-22T03:59:00Z")));   // Sunday early: Saturday's window
    EXPECT_TRUE(w.contains(at("2026-11-23T01:00:00Z")));   // Monday early: Sunday's window
    EXPECT_FALSE(w.contains(at("2026-11-23T23:00:00Z")));  // Monday night
    EXPECT_FALSE(w.contains(at("2026-11-22T12:00:00Z")));  // Sunday noon
    auto all_day = base();
    all_day["update_window"] = {{"start", "00:00"}, {"end", "00:00"}};
    EXPECT_TRUE(parse_agent_config(all_day)->update_window->contains(at("2026-11-25T12:00:00Z")));
}
