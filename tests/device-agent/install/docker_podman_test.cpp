// docker-image against a real engine (label `container`): rootful Podman serving the Docker API
// (tests/kit/podman_engine.hpp: storage in the test's temp directory, images from a busybox rootfs, no
// registry), driven by the real `docker` client and docker-compose v1.
#include <gtest/gtest.h>

#include <cstdlib>

#include "podman_engine.hpp"
#include "install_test_util.hpp"

namespace ota::agent::test {
namespace {

using namespace std::chrono_literals;

class DockerPodman : public ::testing::Test {
protected:
    static inline std::unique_ptr<kit::TempDir> dir;
    static inline std::unique_ptr<kit::PodmanEngine> engine;
    static inline std::string setup_error;
    static inline std::string id1, id2;  // image IDs of otaapp:1 and otaapp:2

    static std::string trim(std::string s) { return kit::PodmanEngine::trim(std::move(s)); }

    static void SetUpTestSuite() {
        try {
            dir = std::make_unique<kit::TempDir>("ota-podman");
            const auto& d = dir->path();
            engine = std::make_unique<kit::PodmanEngine>(d);
            // Two tiny images saved as docker-archive tarballs and removed from storage, so that
            // the installer's `docker load` is what brings them back.
            id1 = engine->save_image("localhost/otaapp:1", "1", d / "app1.tar");
            id2 = engine->save_image("localhost/otaapp:2", "2", d / "app2.tar");
            kit::write_file(d / "compose.yml",
                            "version: \"3\"\n"
                            "services:\n"
                            "  app:\n"
                            "    image: ${OTA_IMAGE}\n"
                            "    command: [\"/bin/sh\", \"-c\", \"cat /version; exec sleep 3600\"]\n"
                            "    network_mode: host\n"
                            "    stop_signal: SIGKILL\n"
                            "    environment:\n"
                            "      - OTA_VERSION=${OTA_VERSION}\n");
        } catch (const std::exception& e) {
            setup_error = e.what();
        }
    }
    static void TearDownTestSuite() {
        engine.reset();
        dir.reset();
    }
    void SetUp() override {
        ASSERT_TRUE(setup_error.empty()) << setup_error;
        for (const auto& [k, v] : engine->env()) ::setenv(k.c_str(), v.c_str(), 1);
    }
    void TearDown() override {
        if (engine)
            for (const auto& [k, v] : engine->env()) ::unsetenv(k.c_str());
    }

    Job job(const std::string& v) const {
        auto m = make_manifest(InstallType::docker_image, "", v, "https://a.example/app" + v + ".tar", VersionScheme::integer);
        m.install.service = "app";
        Job j{m, {}, dir->path() / ("app" + v + ".tar"), dir->path() / ("work-" + v)};
        j.config.compose_file = dir->path() / "compose.yml";
        j.config.compose_command = "docker-compose";
        j.config.docker_command = "docker";
        j.config.command_timeout = 60s;
        return j;
    }
    // What the service's container runs: image ID and its output (the version file).
    std::pair<std::string, std::string> running() const {
        const auto ps = kit::run({"docker-compose", "-f", (dir->path() / "compose.yml").string(), "ps", "-q", "app"}, 30s,
                                 {{"OTA_IMAGE", "x"}});
        const auto id = trim(ps.out);
        if (id.empty()) return {"<none>", ""};
        const auto image = trim(kit::run({"docker", "inspect", "--format", "{{.Image}}", id}, 30s).out);
        std::string out;
        kit::wait_until([&] { return !(out = trim(kit::run({"docker", "logs", id}, 30s).out)).empty(); }, 10s, 50ms);
        return {image, out};
    }
};

TEST_F(DockerPodman, LoadsComposesUpgradesAndRollsBackOnARealEngine) {
    auto installer = make_installer(InstallType::docker_image);
    auto v1 = job("1");
    auto rec1 = installer->prepare(v1.request());
    ASSERT_TRUE(rec1) << rec1.error().describe() << "\n" << engine->service_log();
    EXPECT_EQ((*rec1)["image"], "localhost/otaapp:1");
    EXPECT_EQ((*rec1)["previous_image"], nullptr);
    ASSERT_TRUE(installer->activate(v1.request(), *rec1));
    ASSERT_TRUE(installer->commit(v1.request(), *rec1));
    EXPECT_EQ(running(), (std::pair<std::string, std::string>{id1, "1"}));

    auto v2 = job("2");
    auto rec2 = installer->prepare(v2.request());
    ASSERT_TRUE(rec2) << rec2.error().describe();
    EXPECT_EQ((*rec2)["previous_image"], id1);
    EXPECT_EQ((*rec2)["previous_version"], "1");
    EXPECT_EQ(running(), (std::pair<std::string, std::string>{id1, "1"})) << "prepare changes nothing live";
    auto a = installer->activate(v2.request(), *rec2);
    ASSERT_TRUE(a) << a.error().describe();
    ASSERT_TRUE(installer->activate(v2.request(), *rec2)) << "a re-run after a crash";
    EXPECT_EQ(running(), (std::pair<std::string, std::string>{id2, "2"}));

    auto r = installer->rollback(v2.request(), *rec2);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(running(), (std::pair<std::string, std::string>{id1, "1"}));
}

TEST_F(DockerPodman, LoadingACorruptTarballIsInstallFailedWithTheEnginesMessage) {
    kit::write_file(dir->path() / "broken.tar", "this is not an image archive");
    auto j = job("3");
    j.artifact = dir->path() / "broken.tar";
    auto rec = make_installer(InstallType::docker_image)->prepare(j.request());
    ASSERT_FALSE(rec);
    EXPECT_EQ(rec.error().code, ErrorCode::install_failed);
    EXPECT_NE(rec.error().message.find("`docker load -i " + j.artifact.string() + "` failed: exit status 1: "),
              std::string::npos)
        << rec.error().message;
}

}  // namespace
}  // namespace ota::agent::test
