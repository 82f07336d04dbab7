#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ota/config.hpp"

namespace fs = std::filesystem;

TEST(Config, LayersFileThenDropInsThenEnvironment) {
    const auto dir = fs::temp_directory_path() / ("ota-config-" + std::to_string(::getpid()));
    fs::create_directories(dir / "agent.json.d");
    std::ofstream(dir / "agent.json") << R"({"mqtt": {"broker": "mqtts://a:8883", "keepalive": 30}, "device_id": "d1"})";
    std::ofstream(dir / "agent.json.d" / "20-b.json") << R"({"mqtt": {"broker": "mqtts://b:8883"}})";
    std::ofstream(dir / "agent.json.d" / "10-a.json") << R"({"mqtt": {"broker": "mqtts://ignored"}, "labels": ["x"]})";
    std::ofstream(dir / "agent.json.d" / "README") << "not json, not read";
    ::setenv("OTA_TESTCFG_MQTT__KEEPALIVE", "60", 1);
    ::setenv("OTA_TESTCFG_AUTO_UPDATE", "false", 1);
    auto cfg = ota::config::load_layers(dir / "agent.json", true, "OTA_TESTCFG_");
    ::unsetenv("OTA_TESTCFG_MQTT__KEEPALIVE");
    ::unsetenv("OTA_TESTCFG_AUTO_UPDATE");
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_EQ((*cfg)["mqtt"]["broker"], "mqtts://b:8883");  // 20-b after 10-a
    EXPECT_EQ((*cfg)["mqtt"]["keepalive"], 60);              // env over file, parsed as a number
    EXPECT_EQ((*cfg)["auto_update"], false);
    EXPECT_EQ((*cfg)["device_id"], "d1");
    EXPECT_EQ((*cfg)["labels"][0], "x");
    fs::remove_all(dir);
}

TEST(Config, EnvironmentValuesThatAreNotJsonAreStrings) {
    auto layer = ota::config::env_layer("P_", {{"P_A__B", "mqtts://x:1"}, {"P_N", "5"}, {"Q_X", "1"}, {"P_O", "{\"k\":1}"}});
    EXPECT_EQ(layer["a"]["b"], "mqtts://x:1");
    EXPECT_EQ(layer["n"], 5);
    EXPECT_EQ(layer["o"], "{\"k\":1}");
    EXPECT_FALSE(layer.contains("x"));
}

TEST(Config, BadFilesAreNamedErrors) {
    const auto dir = fs::temp_directory_path() / ("ota-config-bad-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::ofstream(dir / "broken.json") << R"({"mqtt": )";
    std::ofstream(dir / "list.json") << R"([1, 2])";
    auto broken = ota::config::load_layers(dir / "broken.json", true, "OTA_X_");
    ASSERT_FALSE(broken);
    EXPECT_EQ(broken.error().code, ota::ErrorCode::config_invalid);
    EXPECT_NE(broken.error().message.find("broken.json: malformed JSON"), std::string::npos) << broken.error().message;
    auto list = ota::config::load_layers(dir / "list.json", true, "OTA_X_");
    ASSERT_FALSE(list);
    EXPECT_NE(list.error().message.find("expected a JSON object"), std::string::npos);
    auto missing = ota::config::load_layers(dir / "missing.json", true, "OTA_X_");
    ASSERT_FALSE(missing);
    EXPECT_NE(missing.error().message.find("missing.json: no such file"), std::string::npos);
    EXPECT_TRUE(ota::config::load_layers(dir / "missing.json", false, "OTA_X_"));
    fs::remove_all(dir);
}
