// The fleet summary (<prefix>/summary): the counts per component and state the web console
// shows, computed by the controller with the console's rule (web-console/src/derive.mjs), and
// when it is published.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "engine_rig.hpp"
#include "summary.hpp"

using json = nlohmann::json;
using namespace ota::controller;
using namespace ota::controller::testing;
using namespace std::chrono_literals;

namespace {

json three_waves() {
    return json::array({{{"name", "canary"}, {"devices", {dev(1)}}}, {{"name", "broad"}, {"percent", 100}}});
}

void publish_release(EngineRig& rig, const std::string& component, const std::string& channel, const std::string& version,
                     const std::string& scheme = "") {
    ota::Manifest m;
    m.component = component;
    m.version = version;
    m.channel = channel;
    m.version_scheme = scheme.empty() ? *ota::detect_version_scheme(version) : *ota::parse_version_scheme(scheme);
    m.artifact = {.url = "https://x/a", .size = 1, .sha256 = std::string(64, 'a'), .encryption = std::nullopt};
    m.install.type = ota::InstallType::file;
    m.install.target = "/x";
    m.created = ota::now_utc();
    rig.msg("ota/v1/releases/" + component + "/" + channel, ota::make_envelope(m, rig.key));
}

void inventory(EngineRig& rig, const std::string& id, const json& components) {
    rig.msg("ota/v1/devices/" + id + "/inventory",
            json{{"device", id}, {"platform", "linux/amd64"}, {"labels", json::object()}, {"components", components}});
}

void stage(EngineRig& rig, const std::string& id, int seq, const std::string& s, const std::string& component = "app") {
    rig.msg("ota/v1/devices/" + id + "/status/" + component,
            json{{"device", id}, {"seq", seq}, {"stage", s}, {"rollout", "elsewhere"}});
}

json summary(const EngineRig& rig) { return json::parse(rig.engine->summary(rig.now).dump()); }

std::vector<json> summaries(const std::vector<Outgoing>& out) {
    std::vector<json> got;
    for (const auto& o : out)
        if (o.topic == "ota/v1/summary") {
            EXPECT_TRUE(o.retain);
            got.push_back(json::parse(o.payload));
        }
    return got;
}

json counts(std::uint64_t up, std::uint64_t outdated, std::uint64_t updating, std::uint64_t failed, std::uint64_t offline,
            std::uint64_t unknown) {
    return json{{"up_to_date", up}, {"outdated", outdated}, {"updating", updating}, {"failed", failed},
                {"offline", offline}, {"unknown", unknown}, {"total", up + outdated + updating + failed + offline + unknown}};
}

}  // namespace

TEST(Summary, EachDeviceIsCountedOncePerComponentByTheConsolesRule) {
    EngineRig rig(three_waves());
    publish_release(rig, "app", "stable", "1.1.0");
    inventory(rig, dev(1), {{"app", "1.1.0"}});  // up to date
    inventory(rig, dev(2), {{"app", "1.0.0"}});  // outdated
    inventory(rig, dev(3), {{"app", "1.0.0"}});
    stage(rig, dev(3), 1, "downloading");  // updating
    inventory(rig, dev(4), {{"app", "1.0.0"}});
    stage(rig, dev(4), 1, "failed");  // failed: the target is not installed
    inventory(rig, dev(5), {{"app", "1.0.0"}});
    rig.msg("ota/v1/devices/" + dev(5) + "/online", json{{"online", false}});  // offline (its last will)
    inventory(rig, dev(6), {{"app", "build-7"}});  // no semver: does not order against the target
    inventory(rig, dev(7), {{"app", "1.2.0"}});
    stage(rig, dev(7), 1, "rolled_back");  // newer than the target: up to date whatever it last reported
    inventory(rig, dev(8), {{"app", nullptr}});  // reported, nothing installed: unknown
    const auto s = summary(rig);
    EXPECT_EQ(s["schema"], 1);
    EXPECT_EQ(s["devices"], 8);
    EXPECT_EQ(s["components"]["app"], counts(2, 1, 1, 1, 1, 2)) << s.dump(2);
    // needs an update: installed and older than the target (dev 2, 3, 4 and 5, offline or not)
    EXPECT_EQ(s["needs_update"], 4);
    EXPECT_EQ(s["fleets"]["plant"]["components"]["app"], s["components"]["app"]);
    EXPECT_EQ(s["fleets"]["plant"]["devices"], 8);

    // The failed device comes back with the release installed: up to date; the offline one online.
    inventory(rig, dev(4), {{"app", "1.1.0"}});
    rig.msg("ota/v1/devices/" + dev(5) + "/online", json{{"online", true}});
    EXPECT_EQ(summary(rig)["components"]["app"], counts(3, 2, 1, 0, 0, 2));
}

// The fleet of tests/data/fleet-counts.json, which the web console's unit test counts too
// (web-console/test/derive.test.mjs): the page and the summary agree on every case in it.
TEST(Summary, TheSharedCasesCountAsOnThePage) {
    std::ifstream in(std::string(OTA_SOURCE_DIR) + "/tests/data/fleet-counts.json");
    const auto cases = json::parse(in);
    EngineRig rig(three_waves());
    for (const auto& r : cases["releases"])
        publish_release(rig, r["component"], r["channel"], r["version"], r["scheme"]);
    for (const auto& d : cases["devices"]) {
        inventory(rig, d["id"], d["components"]);
        const auto stages = d.value("stages", json::object());
        for (const auto& [component, s] : stages.items()) stage(rig, d["id"], 1, s, component);
        if (!d.value("online", true)) rig.msg("ota/v1/devices/" + d["id"].get<std::string>() + "/online", json{{"online", false}});
    }
    const auto s = summary(rig);
    EXPECT_EQ(s["devices"], cases["expected"]["devices"]);
    EXPECT_EQ(s["needs_update"], cases["expected"]["needs_update"]);
    EXPECT_EQ(s["components"], cases["expected"]["components"]) << s.dump(2);
    EXPECT_EQ(s["fleets"]["plant"]["components"], cases["expected"]["components"]);
}

TEST(Summary, TheTargetIsTheFleetsChannelThenTheNewestReleaseOfAnyChannel) {
    EngineRig rig(three_waves());
    publish_release(rig, "app", "stable", "1.1.0");
    publish_release(rig, "app", "beta", "2.0.0");   // newer, but the fleet follows stable
    publish_release(rig, "model", "beta", "2026-03-10");  // stable has no model: the newest of any channel
    publish_release(rig, "model", "edge", "2026-01-01");
    inventory(rig, dev(1), {{"app", "1.1.0"}, {"model", "2026-03-01"}});
    const auto s = summary(rig);
    EXPECT_EQ(s["components"]["app"], counts(1, 0, 0, 0, 0, 0)) << s.dump(2);
    EXPECT_EQ(s["components"]["model"], counts(0, 1, 0, 0, 0, 0)) << s.dump(2);
    // A newer release on the retained topic replaces the one before: it is the target now.
    publish_release(rig, "app", "stable", "1.2.0");
    EXPECT_EQ(summary(rig)["components"]["app"], counts(0, 1, 0, 0, 0, 0));
    // A released component no device reports still gets its row, as on the page.
    publish_release(rig, "firmware", "stable", "7");
    EXPECT_EQ(summary(rig)["components"]["firmware"], counts(0, 0, 0, 0, 0, 0));
    EXPECT_EQ(summary(rig)["fleets"]["plant"]["components"]["firmware"], counts(0, 0, 0, 0, 0, 0));
}

TEST(Summary, PublishedRetainedWhenItChangesAtMostOncePerIntervalAndNotWhileDisconnected) {
    EngineRig rig(three_waves());
    auto first = summaries(rig.out());
    ASSERT_EQ(first.size(), 1u) << "a started controller publishes its summary";
    EXPECT_EQ(first[0]["devices"], 0);

    // Nothing changed: nothing published, however long it waits.
    rig.now += 10s;
    rig.engine->tick(rig.now);
    EXPECT_TRUE(summaries(rig.out()).empty());

    // Many changes within the interval: one publish at its end, with all of them.
    for (int i = 1; i <= 20; ++i) {
        inventory(rig, dev(i), {{"app", "1.0.0"}});
        rig.now += 50ms;
        rig.engine->tick(rig.now);
    }
    auto during = summaries(rig.out());
    EXPECT_LE(during.size(), 1u);  // 1 s of changes, 2 s interval
    rig.now += rig.cfg.summary_interval;
    rig.engine->tick(rig.now);
    auto after = summaries(rig.out());
    ASSERT_EQ(after.size(), 1u);
    EXPECT_EQ(after[0]["devices"], 20);
    EXPECT_EQ(after[0]["components"]["app"]["unknown"], 20) << "no release yet: unknown";

    // Disconnected: the counts would be half-way through the retained flood; nothing goes out.
    rig.engine->on_connection(false, rig.now);
    publish_release(rig, "app", "stable", "1.1.0");
    rig.now += 10s;
    rig.engine->tick(rig.now);
    EXPECT_TRUE(summaries(rig.out()).empty());
    // Connected again: the retained flood comes first; the summary one interval later.
    rig.engine->on_connection(true, rig.now);
    rig.engine->tick(rig.now);
    EXPECT_TRUE(summaries(rig.out()).empty());
    rig.now += rig.cfg.summary_interval;
    rig.engine->tick(rig.now);
    auto back = summaries(rig.out());
    ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(back[0]["components"]["app"]["outdated"], 20);
}

TEST(Summary, ARetainedInventoryDoesNotUndoALastWill) {
    EngineRig rig(three_waves());
    publish_release(rig, "app", "stable", "1.1.0");
    inventory(rig, dev(1), {{"app", "1.0.0"}});
    rig.msg("ota/v1/devices/" + dev(1) + "/online", json{{"online", false}});
    // After a restart the broker hands both back, the inventory last.
    rig.engine->on_message({.topic = "ota/v1/devices/" + dev(1) + "/inventory",
                            .payload = json{{"device", dev(1)}, {"components", {{"app", "1.0.0"}}}}.dump(),
                            .qos = 1, .retained = true}, rig.now);
    EXPECT_EQ(summary(rig)["components"]["app"]["offline"], 1);
    inventory(rig, dev(1), {{"app", "1.0.0"}});  // live: it is up
    EXPECT_EQ(summary(rig)["components"]["app"]["outdated"], 1);
}

TEST(Summary, StagesAreClassifiedAsTheConsoleDoes) {
    for (const auto* s : {"downloading", "verifying", "installing", "health_checking"})
        EXPECT_EQ(classify_stage(s), StageClass::in_progress) << s;
    for (const auto* s : {"failed", "rolled_back", "rejected"}) EXPECT_EQ(classify_stage(s), StageClass::failed) << s;
    for (const auto* s : {"succeeded", "offered", "", "FAILED"}) EXPECT_EQ(classify_stage(s), StageClass::other) << s;
    for (const auto s : device_states) EXPECT_NE(to_string(s), "") << static_cast<int>(s);
}
