// Version sources of the agent's inventory.
#include <gtest/gtest.h>
#include <stdlib.h>

#include "inventory.hpp"
#include "kit.hpp"

namespace kit = ota::testkit;
namespace fs = std::filesystem;
using ota::agent::AgentConfig;
using ota::agent::Inventory;
using ota::agent::VersionSource;

TEST(Inventory, FilesSourceTakesTheNewestVersionAndSkipsHiddenFiles) {
    kit::TempDir dir;
    for (const char* name : {"azaion-2026-03-01.trt", "azaion-2026-03-10.trt", ".azaion-2026-04-01.trt.ota-new",
                             "azaion-latest.trt", "other-2026-05-01.trt"})
        kit::write_file(dir / name, "x");
    EXPECT_EQ(ota::agent::newest_in_dir(dir.path(), "azaion-(.*)\\.trt"), "2026-03-10");
    EXPECT_EQ(ota::agent::newest_in_dir(dir / "missing", "azaion-(.*)\\.trt"), std::nullopt);
}

TEST(Inventory, DockerTagsOrderWithinTheRepository) {
    const std::string out =
        "azaion/annotations:arm64_2026-03-01\nazaion/annotations:arm64_2026-02-15\nazaion/annotations:<none>\n"
        "azaion/annotations:latest\nazaion/annotations-extra:arm64_2026-09-01\nregistry:5000/x:1.0.0\n";
    EXPECT_EQ(ota::agent::newest_tag(out, "azaion/annotations"), "arm64_2026-03-01");
    EXPECT_EQ(ota::agent::newest_tag(out, "registry:5000/x"), "1.0.0");
    EXPECT_EQ(ota::agent::newest_tag(out, "nothing/here"), std::nullopt);
}

TEST(Inventory, ReadsEachSourceAndDropsItsCacheWhenAsked) {
    kit::TempDir dir;
    // The stand-in docker (tests/device-agent/install/fake-docker) answers `docker images`.
    fs::create_directories(dir / "bin");
    fs::copy_file(kit::source_dir() / "tests" / "device-agent" / "install" / "fake-docker", dir / "bin" / "docker");
    ::setenv("FAKE_DOCKER_DIR", dir.path().c_str(), 1);
    kit::write_file(dir / "images", "azaion/annotations:arm64_2026-03-01\n");
    kit::write_file(dir / "version.json", R"({"version": "4.2.0", "commit": "abc"})");
    fs::create_directories(dir / "models");
    kit::write_file(dir / "models" / "m-2026-01-01.trt", "x");

    AgentConfig cfg;
    auto& docker = cfg.components["annotations"];
    docker.source.type = VersionSource::Type::docker;
    docker.source.repository = "azaion/annotations";
    docker.install.docker_command = (dir / "bin" / "docker").string();
    cfg.components["app"].source.type = VersionSource::Type::version_file;
    cfg.components["app"].source.path = dir / "version.json";
    cfg.components["model"].source.type = VersionSource::Type::files;
    cfg.components["model"].source.dir = dir / "models";
    cfg.components["model"].source.pattern = "m-(.*)\\.trt";
    cfg.components["agent"].source.type = VersionSource::Type::agent;
    cfg.components["plain"];

    Inventory inv(cfg);
    EXPECT_EQ(inv.version("annotations", std::nullopt), "arm64_2026-03-01");
    EXPECT_EQ(inv.version("app", std::nullopt), "4.2.0");
    EXPECT_EQ(inv.version("model", std::nullopt), "2026-01-01");
    EXPECT_TRUE(inv.version("agent", std::nullopt).has_value());
    EXPECT_EQ(inv.version("plain", std::string("1.2.3")), "1.2.3");  // no source: what the agent installed
    EXPECT_EQ(inv.version("plain", std::nullopt), std::nullopt);

    kit::write_file(dir / "images", "azaion/annotations:arm64_2026-03-01\nazaion/annotations:arm64_2026-04-01\n");
    EXPECT_EQ(inv.version("annotations", std::nullopt), "arm64_2026-03-01");  // cached
    inv.invalidate();
    EXPECT_EQ(inv.version("annotations", std::nullopt), "arm64_2026-04-01");
    kit::write_file(dir / "models" / "m-2026-02-01.trt", "x");
    EXPECT_EQ(inv.version("model", std::nullopt), "2026-02-01");  // the directory changed
}
