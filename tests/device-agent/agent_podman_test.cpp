// The real ota-agent process through docker-image releases on a real engine (label `container`):
// rootful Podman serving the Docker API (../kit/podman_engine.hpp, storage in the test's temp
// directory), the real `docker` client and docker-compose v1, the kit's Mosquitto and nginx.
// Retained wave message -> the agent downloads the image tarball from nginx -> docker load ->
// compose up -> health check (the container's own HTTP server answers with the new version) ->
// `succeeded`; the service's container runs the new image, and the inventory reads the version
// from `docker images`.
#include "agent_fixture.hpp"
#include "podman_engine.hpp"

class AgentPodmanTest : public AgentTest {
protected:
    std::unique_ptr<kit::PodmanEngine> engine;  // destroyed before `dir`: containers and images removed first
    int port = kit::free_port();

    void SetUp() override {
        AgentTest::SetUp();
        if (HasFatalFailure()) return;
        try {
            fs::create_directories(dir / "podman");
            engine = std::make_unique<kit::PodmanEngine>(dir / "podman");
        } catch (const std::exception& e) {
            FAIL() << e.what();
        }
        // busybox httpd as PID 1 ignores SIGTERM: stop_signal SIGKILL keeps a recreate quick.
        kit::write_file(compose_file(), "version: \"3\"\n"
                                        "services:\n"
                                        "  annotations:\n"
                                        "    image: ${OTA_IMAGE}\n"
                                        "    command: [\"/bin/httpd\", \"-f\", \"-p\", \"127.0.0.1:" +
                                            std::to_string(port) +
                                            "\", \"-h\", \"/www\"]\n"
                                            "    network_mode: host\n"
                                            "    stop_signal: SIGKILL\n"
                                            "    environment:\n"
                                            "      - OTA_VERSION=${OTA_VERSION}\n");
    }

    fs::path compose_file() const { return dir / "compose.yml"; }
    std::string version_url() const { return "http://127.0.0.1:" + std::to_string(port) + "/version"; }

    fs::path config() {
        // Healthy only when the service answers with the version being installed.
        json health{{"command", {"sh", "-c", "curl -fsS --max-time 2 " + version_url() + " | grep -qx \"$OTA_VERSION\""}},
                    {"retries", 40}, {"interval_ms", 250}, {"timeout_ms", 5000}};
        return write_config({{"components",
                              {{"detection-model",
                                {{"version_source",  // (a merge patch: null drops the fixture's `files` fields)
                                  {{"type", "docker"}, {"repository", "localhost/otaapp"}, {"dir", nullptr}, {"pattern", nullptr}}},
                                 {"compose_file", compose_file().string()},
                                 {"compose_command", "docker-compose"},
                                 {"docker_command", "docker"},
                                 {"command_timeout_s", 60},
                                 {"health", health}}}}}});
    }

    // Image localhost/otaapp:<tag> as a tarball, signed as a docker-image release and offered on
    // the wave; the agent runs once. Returns the image's ID.
    std::string release_and_run(const fs::path& cfg, const std::string& tag) {
        const auto tarball = dir / ("otaapp-" + tag + ".tar");
        const auto id = engine->save_image("localhost/otaapp:" + tag, tag, tarball);
        offer(sign_release(tag, kit::read_file(tarball), "otaapp-" + tag + ".tar",
                           {"--install", "docker-image", "--service", "annotations"}));
        auto r = kit::run({OTA_AGENT_BIN, "--config", cfg.string(), "--once", "--once-wait", "15"}, 120s, engine->env());
        EXPECT_EQ(r.exit_code, 0) << r.err;
        auto s = status();
        EXPECT_EQ(s["stage"], "succeeded") << s.dump() << "\n" << r.err << "\n" << engine->service_log();
        EXPECT_EQ(s["version"], tag);
        return id;
    }

    // The image ID the service's container runs ("<none>" when there is none).
    std::string running_image() const {
        const auto ps = kit::run({"docker-compose", "-f", compose_file().string(), "ps", "-q", "annotations"}, 30s,
                                 with_env({{"OTA_IMAGE", "unused"}}));
        const auto id = kit::PodmanEngine::trim(ps.out);
        if (id.empty()) return "<none>";
        return kit::PodmanEngine::trim(kit::run({"docker", "inspect", "--format", "{{.Image}}", id}, 30s, engine->env()).out);
    }
    std::map<std::string, std::string> with_env(std::map<std::string, std::string> extra) const {
        extra.insert(engine->env().begin(), engine->env().end());
        return extra;
    }
};

TEST_F(AgentPodmanTest, ImageReleaseIsLoadedComposedUpHealthCheckedAndSucceeds) {
    const auto cfg = config();
    assign();
    const auto id1 = release_and_run(cfg, "arm64_2026-02-01");
    ASSERT_FALSE(HasFailure());
    EXPECT_EQ(running_image(), id1);

    // The update: the container is recreated with the new image.
    const auto id2 = release_and_run(cfg, "arm64_2026-03-01");
    ASSERT_FALSE(HasFailure());
    EXPECT_NE(id1, id2);
    EXPECT_EQ(running_image(), id2);
    auto served = kit::run({"curl", "-fsS", "--max-time", "5", version_url()});
    EXPECT_EQ(served.out, "arm64_2026-03-01") << served.err;
    EXPECT_EQ(inventory_version(), "arm64_2026-03-01");
}
