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
    };
    for (const auto& c : cases) {
        auto j = base();
        j.merge_patch(c.patch);
        auto r = parse_agent_config(j);
        ASSERT_FALSE(r) << c.patch.dump();
        EXPECT_EQ(r.error().code, ota::ErrorCode::config_invalid);
        EXPECT_EQ(r.error().message.rfind(c.expected, 0), 0u) << r.error().message;
    }
    EXPECT_TRUE(parse_agent_config(base()));
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
