#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "ota/log.hpp"

using namespace ota::log;

TEST(Log, PlainLinesCarryFieldsAsKeyValue) {
    const auto line = render(Format::plain, Level::warn, "agent", "download stalled",
                             {{"device", "device-001"}, {"reason", "no bytes for 30 s"}});
    EXPECT_EQ(line, "warn [agent] download stalled device=device-001 reason=\"no bytes for 30 s\"");
}

TEST(Log, JsonLinesAreOneParsableObject) {
    const auto line = render(Format::json, Level::info, "controller", "wave opened", {{"rollout", "r1"}, {"wave", "canary"}});
    EXPECT_EQ(line.find('\n'), std::string::npos);
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["level"], "info");
    EXPECT_EQ(j["module"], "controller");
    EXPECT_EQ(j["msg"], "wave opened");
    EXPECT_EQ(j["rollout"], "r1");
    EXPECT_EQ(j["wave"], "canary");
    EXPECT_EQ(j["ts"].get<std::string>().size(), 24u);  // 2026-03-10T12:00:00.000Z
}

TEST(Log, LevelsAndFormatsParse) {
    EXPECT_EQ(*parse_level("debug"), Level::debug);
    EXPECT_EQ(*parse_format("json"), Format::json);
    EXPECT_FALSE(parse_level("loud"));
    EXPECT_FALSE(parse_format("xml"));
}
