// The agent's readers of broker messages (messages.hpp) on hostile payloads: no exception escapes,
// every error is named and printable, and good messages read as before.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "messages.hpp"

namespace {

using namespace ota::agent;
using ota::ErrorCode;

const std::string kBadUtf8 = "\xff\xfe\xc3\x28";

// Valid UTF-8 (what a status report or a JSON log line can carry).
bool printable_utf8(const std::string& s) {
    try {
        (void)nlohmann::json(s).dump();
        return true;
    } catch (const nlohmann::json::exception&) {
        return false;
    }
}

std::vector<std::string> hostile() {
    return {"",
            "null",
            "[]",
            "\"x\"",
            "1e400",
            "-1e400",
            kBadUtf8,
            "{\"cmd\": \"" + kBadUtf8 + "\"}",
            std::string(100000, '['),
            std::string(100000, '{'),
            R"({"fleet": 1e400, "wave": "w"})",
            R"({"fleet": {"a": [1, {"b": null}]}, "wave": true})",
            R"({"rollout": 1e400, "state": "open", "release": {}})",
            R"({"rollout": "r", "state": "open", "release": {"manifest": {"artifact": {"size": 1e400}}}})",
            R"({"rollout": "r", "state": "open", "release": [1]})",
            R"({"cmd": "install", "component": 5, "release": {}})",
            R"({"cmd": "install", "component": "c"})",
            R"({"cmd": "rollback", "component": ["c"]})",
            R"({"cmd": "report", "rollout": {"x": 1}})",
            std::string("{\"cmd\": \"check\"\0}", 16)};
}

TEST(AgentMessages, NoPayloadThrowsAndEveryErrorIsPrintable) {
    for (const auto& p : hostile()) {
        const auto a = parse_assignment(p);
        if (!a) {
            EXPECT_TRUE(printable_utf8(a.error().message)) << p.substr(0, 40);
        }
        const auto w = parse_wave(p, "detection-model");
        if (w.error) {
            EXPECT_TRUE(printable_utf8(w.error->message)) << p.substr(0, 40);
        }
        const auto c = parse_cmd(p);
        if (!c) {
            EXPECT_TRUE(printable_utf8(c.error().message)) << p.substr(0, 40);
        }
        EXPECT_FALSE(a && w.error == std::nullopt && c) << "accepted as all three kinds: " << p.substr(0, 40);
    }
}

TEST(AgentMessages, AssignmentNeedsTwoTopicSegments) {
    const auto a = parse_assignment(R"({"fleet": "plant-a", "wave": "canary", "extra": 1})");
    ASSERT_TRUE(a) << a.error().message;
    EXPECT_EQ(a->fleet, "plant-a");
    EXPECT_EQ(a->wave, "canary");
    for (const char* bad : {R"({"fleet": "a/b", "wave": "w"})", R"({"fleet": "a", "wave": "+"})", R"({"fleet": "a"})",
                            R"({"fleet": 5, "wave": "w"})", R"({"fleet": "", "wave": "w"})"}) {
        const auto r = parse_assignment(bad);
        ASSERT_FALSE(r) << bad;
        EXPECT_NE(r.error().message.find("assignment."), std::string::npos) << r.error().message;
    }
    const auto overflow = parse_assignment(R"({"fleet": 1e400, "wave": "w"})");
    ASSERT_FALSE(overflow);
    EXPECT_EQ(overflow.error().code, ErrorCode::json_invalid);
}

TEST(AgentMessages, AWaveKeepsItsRolloutForTheRejectionAndTheEnvelopeAsText) {
    auto w = parse_wave(R"({"rollout": "r-1", "state": "open", "release": {"manifest": {"a": 1}, "signatures": []}})", "m");
    ASSERT_FALSE(w.error) << w.error->message;
    EXPECT_EQ(w.rollout, "r-1");
    EXPECT_EQ(w.state, "open");
    EXPECT_EQ(nlohmann::json::parse(w.envelope)["manifest"]["a"], 1);
    w = parse_wave(R"({"rollout": "r-2", "state": "open", "release": "{\"manifest\": {}}"})", "m");
    ASSERT_FALSE(w.error);
    EXPECT_EQ(w.envelope, R"({"manifest": {}})");
    w = parse_wave(R"({"rollout": "r-3", "state": "open", "release": 7})", "m");
    ASSERT_TRUE(w.error);
    EXPECT_EQ(w.rollout, "r-3");
    EXPECT_EQ(w.error->code, ErrorCode::manifest_invalid);
    EXPECT_NE(w.error->message.find("wave.release"), std::string::npos) << w.error->message;
    w = parse_wave(R"({"rollout": "r-4", "state": "open"})", "m");
    ASSERT_TRUE(w.error);
    EXPECT_NE(w.error->message.find("wave.release: missing"), std::string::npos) << w.error->message;
}

TEST(AgentMessages, CommandsAreKnownKindsWithWhatTheyNeed) {
    auto c = parse_cmd(R"({"cmd": "install", "component": "m", "rollout": "r", "release": {"manifest": {}}})");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->kind, CommandKind::install);
    EXPECT_EQ(c->component, "m");
    EXPECT_EQ(c->rollout, "r");
    EXPECT_TRUE(c->release.is_object());
    EXPECT_EQ(parse_cmd(R"({"cmd": "check"})")->kind, CommandKind::check);
    EXPECT_EQ(parse_cmd(R"({"cmd": "report"})")->kind, CommandKind::report);
    struct Bad {
        const char* payload;
        const char* names;
    };
    for (const auto& [payload, names] : std::vector<Bad>{{R"({"cmd": "reboot"})", "unknown command 'reboot'"},
                                                         {R"({"cmd": "retry"})", "cmd.component: missing"},
                                                         {R"({"cmd": "install", "component": "m"})", "cmd.release: missing"},
                                                         {R"({"cmd": "rollback", "component": 5})", "cmd.component"},
                                                         {R"({"cmd": ["check"]})", "cmd.cmd"}}) {
        const auto r = parse_cmd(payload);
        ASSERT_FALSE(r) << payload;
        EXPECT_NE(r.error().message.find(names), std::string::npos) << r.error().message;
    }
}

TEST(AgentMessages, DumpSafeReplacesInvalidUtf8InsteadOfThrowing) {
    const nlohmann::json j{{"message", "quoted input: " + kBadUtf8}};
    EXPECT_THROW((void)j.dump(), nlohmann::json::type_error);
    const auto text = dump_safe(j);
    EXPECT_TRUE(printable_utf8(text));
    EXPECT_NE(text.find("quoted input: "), std::string::npos);
}

}  // namespace
