// docker-image against a real engine (label `container`): rootful Podman serving the Docker API
// on a socket of its own, driven by the real `docker` client and docker-compose v1, set up as
// ../../../../shared/design/CONTAINERS.md describes (runc, ulimits from this machine's hard
// limits, images imported from a busybox rootfs, no registry). Storage lives in the test's temp
// directory, so nothing touches the host's containers. Needs: podman runc buildah busybox-static
// docker-compose, and a docker client (docker.io).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>

#include "install_test_util.hpp"

namespace ota::agent::test {
namespace {

using namespace std::chrono_literals;

class DockerPodman : public ::testing::Test {
protected:
    static inline std::unique_ptr<kit::TempDir> dir;
    static inline std::unique_ptr<kit::Process> service;
    static inline std::map<std::string, std::string> env;
    static inline std::string setup_error;
    static inline std::string id1, id2;  // image IDs of otaapp:1 and otaapp:2

    static kit::RunResult podman(std::vector<std::string> args, std::chrono::milliseconds timeout = 60s) {
        args.insert(args.begin(), "podman");
        return kit::run(args, timeout, env);
    }
    static void must(const kit::RunResult& r, const std::string& what) {
        if (r.exit_code != 0) throw std::runtime_error(what + " failed (" + std::to_string(r.exit_code) + "): " + r.err + r.out);
    }
    static std::string trim(std::string s) {
        while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
        return s;
    }

    static void SetUpTestSuite() {
        try {
            for (const auto* tool : {"podman", "docker", "docker-compose", "runc"})
                if (kit::run({"sh", "-c", std::string("command -v ") + tool}).exit_code != 0)
                    throw std::runtime_error(std::string(tool) + " is not installed (see shared/design/CONTAINERS.md)");
            if (!fs::exists("/bin/busybox")) throw std::runtime_error("/bin/busybox is missing (busybox-static)");
            dir = std::make_unique<kit::TempDir>("ota-podman");
            const auto& d = dir->path();
            // Ulimits no higher than the hard limits: nofile from this process; nproc also no
            // higher than 32768, the hard limit the Podman service itself ran with here (a higher
            // container limit than its parent's is EPERM from runc).
            rlimit nofile{}, nproc{};
            ::getrlimit(RLIMIT_NOFILE, &nofile);
            ::getrlimit(RLIMIT_NPROC, &nproc);
            const auto files = std::to_string(std::min<rlim_t>(nofile.rlim_max, 1048576));
            const auto procs = std::to_string(std::min<rlim_t>(nproc.rlim_max, 32768));
            kit::write_file(d / "containers.conf", "[containers]\ndefault_ulimits = [\"nofile=" + files + ":" + files +
                                                       "\", \"nproc=" + procs + ":" + procs +
                                                       "\"]\n[engine]\nruntime = \"runc\"\n");
            kit::write_file(d / "storage.conf", "[storage]\ndriver = \"vfs\"\ngraphroot = \"" + (d / "storage").string() +
                                                    "\"\nrunroot = \"" + (d / "run").string() + "\"\n");
            env = {{"CONTAINERS_CONF", (d / "containers.conf").string()},
                   {"CONTAINERS_STORAGE_CONF", (d / "storage.conf").string()},
                   {"DOCKER_HOST", "unix://" + (d / "podman.sock").string()}};

            // Two tiny images from a busybox rootfs, saved as docker-archive tarballs, then removed
            // from storage so that the installer's `docker load` is what brings them back.
            fs::create_directories(d / "rootfs/bin");
            fs::copy_file("/bin/busybox", d / "rootfs/bin/busybox");
            for (const auto* t : {"sh", "cat", "sleep"}) fs::create_symlink("busybox", d / "rootfs/bin" / t);
            for (const auto* v : {"1", "2"}) {
                kit::write_file(d / "rootfs/version", v);
                const auto tar = kit::run({"tar", "-C", (d / "rootfs").string(), "-cf", (d / "rootfs.tar").string(), "."});
                must(tar, "tar");
                must(podman({"import", (d / "rootfs.tar").string(), std::string("localhost/otaapp:") + v}), "podman import");
                must(podman({"save", "-o", (d / (std::string("app") + v + ".tar")).string(), std::string("localhost/otaapp:") + v}),
                     "podman save");
            }
            id1 = "sha256:" + trim(podman({"image", "inspect", "--format", "{{.Id}}", "localhost/otaapp:1"}).out);
            id2 = "sha256:" + trim(podman({"image", "inspect", "--format", "{{.Id}}", "localhost/otaapp:2"}).out);
            must(podman({"rmi", "localhost/otaapp:1", "localhost/otaapp:2"}), "podman rmi");

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

            service = std::make_unique<kit::Process>(
                std::vector<std::string>{"podman", "system", "service", "--time=0", env["DOCKER_HOST"]},
                d / "podman-service.log", env);
            if (!kit::wait_until([&] { return kit::run({"docker", "version"}, 5s, env).exit_code == 0; }, 20s, 100ms))
                throw std::runtime_error("the Podman service did not answer: " + service->log());
        } catch (const std::exception& e) {
            setup_error = e.what();
        }
    }
    static void TearDownTestSuite() {
        if (dir) (void)podman({"rm", "-f", "-a"});
        service.reset();
        dir.reset();
    }
    void SetUp() override {
        ASSERT_TRUE(setup_error.empty()) << setup_error;
        for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    }
    void TearDown() override {
        for (const auto& [k, v] : env) ::unsetenv(k.c_str());
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
    ASSERT_TRUE(rec1) << rec1.error().describe() << "\n" << service->log();
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
