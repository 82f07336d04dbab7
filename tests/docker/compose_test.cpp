// The demo topology in containers (label `container`), as a user runs it with docker/run: on a
// private rootful Podman engine (podman_engine.hpp: storage in the test's temp directory),
// `docker/run up` builds the images from a busybox base and this build's binaries (no registry)
// and starts the broker, the artifact server, the controller (three waves) and three agents with
// docker-compose v1; `docker/run publish` publishes a release from the publisher container. The
// test then checks the outcome itself: ota-ctl (in a container) sees the rollout complete, the
// retained rollouts/<id> topic shows the three waves done and opened one after another, every
// device reports `succeeded` and holds the exact artifact in its /var/lib/models volume; and
// `docker/run down` leaves no container behind.
#include <gtest/gtest.h>

#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kit.hpp"
#include "podman_engine.hpp"

namespace kit = ota::testkit;
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

const std::vector<std::string> kDevices{"device-001", "device-002", "device-003"};

std::string tail(const std::string& text, std::size_t chars = 3000) {
    return text.size() <= chars ? text : "..." + text.substr(text.size() - chars);
}

class ComposeTest : public ::testing::Test {
protected:
    kit::TempDir tmp{"ota-compose"};
    std::unique_ptr<kit::PodmanEngine> engine;  // destroyed before `tmp`: containers and images removed first
    fs::path demo = tmp / "demo";
    int mqtt_port = kit::free_port();
    int https_port = kit::free_port();
    bool up = false;

    void SetUp() override {
        while (https_port == mqtt_port) https_port = kit::free_port();
        try {
            fs::create_directories(tmp / "podman");
            engine = std::make_unique<kit::PodmanEngine>(tmp / "podman");
        } catch (const std::exception& e) {
            FAIL() << e.what();
        }
    }
    void TearDown() override {
        if (up) (void)docker_run({"down"}, 60s);
    }

    // docker/run on this engine with this build's binaries; the command and its arguments.
    kit::RunResult docker_run(std::vector<std::string> args, std::chrono::milliseconds timeout) const {
        std::vector<std::string> argv{(kit::source_dir() / "docker/run").string(), "--dir", demo.string(),
                                      "--build-dir", kit::binary_dir().string(), "--no-build"};
        argv.insert(argv.end(), args.begin(), args.end());
        return kit::run(argv, timeout, engine->env());
    }
    kit::RunResult docker(std::vector<std::string> args) const {
        args.insert(args.begin(), "docker");
        return kit::run(args, 30s, engine->env());
    }

    // Retained messages on `topic` (a filter), read on the host as the operator.
    std::vector<json> retained(const std::string& topic, int count) const {
        const auto certs = demo / "certs";
        auto r = kit::run({"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(mqtt_port), "--cafile",
                           (certs / "ca.pem").string(), "--cert", (certs / "operator.pem").string(), "--key",
                           (certs / "operator.key").string(), "-t", topic, "-C", std::to_string(count), "-W", "5"},
                          10s);
        std::vector<json> out;
        std::istringstream lines(r.out);
        for (std::string line; std::getline(lines, line);)
            if (!line.empty()) out.push_back(json::parse(line, nullptr, false));
        return out;
    }
};

TEST_F(ComposeTest, ReleaseFromThePublisherContainerRollsOutWaveByWaveAcrossTheAgentContainers) {
    const auto started = std::chrono::steady_clock::now();
    auto r = docker_run({"--mqtt-port", std::to_string(mqtt_port), "--https-port", std::to_string(https_port), "up"},
                        150s);
    up = true;
    ASSERT_EQ(r.exit_code, 0) << tail(r.out) << "\n" << tail(r.err) << "\n" << tail(engine->service_log());

    // The images, built locally, and the six long-running containers, all running.
    auto images = docker({"images", "--format", "{{.Repository}}:{{.Tag}}"});
    for (const auto* image : {"base", "broker", "artifacts", "controller", "agent", "publisher"})
        EXPECT_NE(images.out.find(std::string("localhost/ota-") + image + ":dev"), std::string::npos) << images.out;
    auto ps = docker({"ps", "--format", "{{.Names}} {{.Image}} {{.State}}"});
    for (const auto* service : {"broker", "artifacts", "controller", "agent-1", "agent-2", "agent-3"})
        EXPECT_NE(ps.out.find(std::string("_") + service + "_1 "), std::string::npos) << service << "\n" << ps.out;
    EXPECT_EQ(ps.out.find("exited"), std::string::npos) << ps.out;

    const std::string version = "1.2.3";
    const std::string rollout = "demo.detection-model." + version;
    r = docker_run({"publish", version}, 60s);
    ASSERT_EQ(r.exit_code, 0) << tail(r.out) << "\n" << tail(r.err);
    EXPECT_NE(r.out.find("published detection-model " + version), std::string::npos) << r.out;

    // ota-ctl watch (in the ctl container) ends with 0 when the rollout completes.
    r = docker_run({"ctl", "--timeout", "20", "watch", rollout}, 90s);
    EXPECT_EQ(r.exit_code, 0) << tail(r.out) << "\n" << tail(r.err)
                              << tail(docker_run({"compose", "logs", "--tail", "30"}, 30s).out);
    EXPECT_NE(r.out.find(rollout + "  completed"), std::string::npos) << tail(r.out);

    // The retained rollout state: completed, three waves done, each opened after the one before.
    const auto state = retained("ota/v1/rollouts/" + rollout, 1);
    ASSERT_EQ(state.size(), 1u);
    EXPECT_EQ(state[0].value("state", ""), "completed") << state[0].dump();
    ASSERT_EQ(state[0]["waves"].size(), 3u) << state[0].dump();
    std::string previous_opened;
    for (std::size_t i = 0; i < 3; ++i) {
        const auto& wave = state[0]["waves"][i];
        EXPECT_EQ(wave.value("name", ""), std::vector<std::string>({"canary", "early", "broad"})[i]);
        EXPECT_EQ(wave.value("state", ""), "done") << wave.dump();
        EXPECT_EQ(wave.value("succeeded", -1), 1) << wave.dump();
        const auto opened = wave.value("opened_at", "");
        EXPECT_FALSE(opened.empty()) << wave.dump();
        EXPECT_LE(previous_opened, opened) << state[0].dump();
        previous_opened = opened;
    }
    EXPECT_EQ(state[0]["totals"].value("succeeded", -1), 3) << state[0].dump();

    // Every agent container reported success and installed the artifact, byte for byte.
    const auto artifact = kit::read_file(demo / "publisher/in" / ("model-" + version + ".trt"));
    EXPECT_EQ(artifact.substr(0, 4), "GOOD");
    const auto statuses = retained("ota/v1/devices/+/status/detection-model", 3);
    EXPECT_EQ(statuses.size(), 3u);
    for (const auto& s : statuses) {
        EXPECT_EQ(s.value("stage", ""), "succeeded") << s.dump();
        EXPECT_EQ(s.value("version", ""), version) << s.dump();
    }
    for (const auto& d : kDevices) {
        const auto installed = demo / "devices" / d / "models" / ("model-" + version + ".trt");
        ASSERT_TRUE(fs::exists(installed)) << installed;
        EXPECT_TRUE(kit::read_file(installed) == artifact) << d << ": the installed file differs from the artifact";
    }

    // Down: no container left (the engine removes the images when the test ends).
    r = docker_run({"down"}, 60s);
    up = false;
    EXPECT_EQ(r.exit_code, 0) << tail(r.out) << "\n" << tail(r.err);
    EXPECT_EQ(docker({"ps", "-a", "-q"}).out, "");
    const auto took = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started);
    std::cout << "up, publish, rollout, down: " << took.count() << " s\n";
}

}  // namespace
