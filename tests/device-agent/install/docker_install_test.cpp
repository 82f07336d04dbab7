// `docker-image` against the stand-in docker/docker-compose (fake-docker in this directory,
// a recorder, not an engine): the recorded load / ps / inspect / up calls and their environment,
// rollback to the previous image ID, failures naming the command and its stderr, timeouts.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

#include "install_test_util.hpp"

namespace ota::agent::test {
namespace {

using namespace std::chrono_literals;

// The fake's image ID for an image text (as fake-docker computes it).
std::string fake_id(const std::string& image) {
    const auto r = kit::run({"sh", "-c", "printf '%s' \"$1\" | sha256sum | cut -c1-64", "sh", image});
    return "sha256:" + r.out.substr(0, 64);
}

class DockerInstall : public ::testing::Test {
protected:
    kit::TempDir tmp{"ota-docker-install"};
    fs::path fake_bin = tmp / "fakebin";
    fs::path state = tmp / "fake-state";
    std::unique_ptr<Installer> installer = make_installer(InstallType::docker_image);
    std::string old_path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "/usr/bin:/bin";

    void SetUp() override {
        fs::create_directories(fake_bin);
        fs::create_directories(state);
        const auto fake = kit::source_dir() / "tests/device-agent/install/fake-docker";
        for (const auto* name : {"docker", "docker-compose"}) {
            fs::copy_file(fake, fake_bin / name);
            fs::permissions(fake_bin / name, fs::perms(0755));
        }
        ::setenv("PATH", (fake_bin.string() + ":" + old_path).c_str(), 1);
        ::setenv("FAKE_DOCKER_DIR", state.c_str(), 1);
        ::unsetenv("FAKE_DOCKER_FAIL");
        ::unsetenv("FAKE_DOCKER_HANG");
        ::unsetenv("FAKE_DOCKER_LOAD_OUTPUT");
        ::unsetenv("OTA_IMAGE");
        ::unsetenv("OTA_VERSION");
    }
    void TearDown() override {
        ::setenv("PATH", old_path.c_str(), 1);
        for (const auto* v : {"FAKE_DOCKER_DIR", "FAKE_DOCKER_FAIL", "FAKE_DOCKER_HANG", "FAKE_DOCKER_LOAD_OUTPUT"})
            ::unsetenv(v);
    }
    Job job(const std::string& v) {
        kit::write_file(tmp / "image.tar", "not really an image");
        auto m = make_manifest(InstallType::docker_image, "", v, "https://a.example/app-" + v + ".tar",
                               VersionScheme::tag);
        m.install.service = "app";
        Job j{m, {}, tmp / "image.tar", tmp / "work"};
        j.config.compose_file = tmp / "compose.yml";
        j.config.compose_command = "docker-compose";
        j.config.docker_command = "docker";
        j.config.command_timeout = 5s;
        return j;
    }
    // The service "runs" `image` (as started with OTA_VERSION=`version`) before the update.
    void running(const std::string& image, const std::string& version) {
        kit::write_file(state / "running", image + "\n" + version + "\n");
    }
    std::vector<std::string> calls() {
        std::vector<std::string> out;
        if (!fs::exists(state / "calls.log")) return out;
        std::stringstream ss(kit::read_file(state / "calls.log"));
        for (std::string line; std::getline(ss, line);) out.push_back(line);
        return out;
    }
    std::string running_state() { return fs::exists(state / "running") ? kit::read_file(state / "running") : "<none>"; }
    std::string compose() const { return "docker-compose -f " + (tmp / "compose.yml").string(); }
    // The service runs example/app:1 (OTA_VERSION 1); the update to arm64_2026-03-10 is prepared
    // and activated: its record.
    nlohmann::json activated_over_version_1(const Job& j) {
        running("example/app:1", "1");
        auto rec = installer->prepare(j.request());
        EXPECT_TRUE(rec) << rec.error().describe();
        if (!rec) return nlohmann::json::object();
        auto a = installer->activate(j.request(), *rec);
        EXPECT_TRUE(a) << a.error().describe();
        return *rec;
    }
};

TEST_F(DockerInstall, LoadsThenComposeUpWithTheLoadedImage) {
    running("example/app:arm64_2026-03-01", "arm64_2026-03-01");
    auto j = job("arm64_2026-03-10");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec) << rec.error().describe();
    EXPECT_EQ((*rec)["image"], "example/app:2.0");
    EXPECT_EQ((*rec)["previous_image"], fake_id("example/app:arm64_2026-03-01"));
    EXPECT_EQ((*rec)["previous_ref"], "example/app:arm64_2026-03-01");
    EXPECT_EQ((*rec)["previous_version"], "arm64_2026-03-01");
    EXPECT_EQ(running_state(), "example/app:arm64_2026-03-01\narm64_2026-03-01\n") << "prepare changes nothing live";
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(installer->commit(j.request(), *rec));
    EXPECT_EQ(running_state(), "example/app:2.0\narm64_2026-03-10\n");
    const auto tar = (tmp / "image.tar").string();
    EXPECT_EQ(calls(), (std::vector<std::string>{
                           "docker load -i " + tar + " | OTA_IMAGE=<unset> OTA_VERSION=<unset>",
                           compose() + " ps -q app | OTA_IMAGE=example/app:2.0 OTA_VERSION=arm64_2026-03-10",
                           "docker inspect --format {{.Image}}|{{.Config.Image}}|{{range .Config.Env}}{{println .}}{{end}} "
                           "c0ffee | OTA_IMAGE=<unset> OTA_VERSION=<unset>",
                           compose() + " up -d app | OTA_IMAGE=example/app:2.0 OTA_VERSION=arm64_2026-03-10",
                       }));
    EXPECT_FALSE(fs::exists(j.work_dir / "docker-activated"));
}

TEST_F(DockerInstall, DockerComposeV2CommandAndAnImageIdFromLoad) {
    ::setenv("FAKE_DOCKER_LOAD_OUTPUT", "Loaded image ID: sha256:0123abcd", 1);
    auto j = job("arm64_2026-03-10");
    j.config.compose_command = "docker compose";
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec) << rec.error().describe();
    EXPECT_EQ((*rec)["image"], "sha256:0123abcd");
    EXPECT_EQ((*rec)["previous_image"], nullptr) << "nothing ran before";
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    const auto c = calls();
    ASSERT_EQ(c.size(), 3U);
    EXPECT_EQ(c[2], "docker compose -f " + (tmp / "compose.yml").string() +
                        " up -d app | OTA_IMAGE=sha256:0123abcd OTA_VERSION=arm64_2026-03-10");
}

TEST_F(DockerInstall, RollbackAfterActivateStartsThePreviousImageById) {
    auto j = job("arm64_2026-03-10");
    const auto rec = activated_over_version_1(j);
    ASSERT_TRUE(installer->rollback(j.request(), rec));
    ASSERT_TRUE(installer->rollback(j.request(), rec)) << "a re-run after the rollback finished does nothing";
    const auto id = fake_id("example/app:1");
    EXPECT_EQ(running_state(), id + "\n1\n");
    const auto c = calls();
    ASSERT_EQ(c.size(), 5U) << kit::read_file(state / "calls.log");
    EXPECT_EQ(c[4], compose() + " up -d app | OTA_IMAGE=" + id + " OTA_VERSION=1");
    EXPECT_FALSE(fs::exists(j.work_dir / "docker-activated"));
}

TEST_F(DockerInstall, RollbackWithNothingRunningBeforeRemovesTheService) {
    auto j = job("arm64_2026-03-10");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_EQ(running_state(), "example/app:2.0\narm64_2026-03-10\n");
    ASSERT_TRUE(installer->rollback(j.request(), *rec));
    EXPECT_EQ(running_state(), "<none>");
    EXPECT_EQ(calls().back(), compose() + " rm -s -f app | OTA_IMAGE=example/app:2.0 OTA_VERSION=<unset>");
}

TEST_F(DockerInstall, RollbackWhenOnlyPrepareRanTouchesNothing) {
    running("example/app:1", "1");
    auto j = job("arm64_2026-03-10");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    const auto before = calls();
    ASSERT_TRUE(installer->rollback(j.request(), *rec));
    ASSERT_TRUE(installer->rollback(j.request(), nlohmann::json::object()));
    EXPECT_EQ(calls(), before);
    EXPECT_EQ(running_state(), "example/app:1\n1\n");
}

TEST_F(DockerInstall, EveryStepRunTwiceReachesTheSameEndState) {
    running("example/app:1", "1");
    auto j = job("arm64_2026-03-10");
    ASSERT_TRUE(installer->prepare(j.request()));
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    EXPECT_EQ((*rec)["previous_image"], fake_id("example/app:1"));
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(installer->commit(j.request(), *rec));
    ASSERT_TRUE(installer->commit(j.request(), *rec));
    EXPECT_EQ(running_state(), "example/app:2.0\narm64_2026-03-10\n");
}

// An operator's rollback comes after commit removed the marker (and the agent its work dir):
// revert starts the previous image from the kept record all the same, and again when re-run.
TEST_F(DockerInstall, RevertAfterCommitStartsThePreviousImageById) {
    auto j = job("arm64_2026-03-10");
    const auto rec = activated_over_version_1(j);
    ASSERT_TRUE(installer->commit(j.request(), rec));
    fs::remove_all(j.work_dir);
    ASSERT_TRUE(installer->rollback(j.request(), rec)) << "rollback alone sees no marker";
    EXPECT_EQ(running_state(), "example/app:2.0\narm64_2026-03-10\n");
    const auto before = calls().size();
    ASSERT_TRUE(installer->revert(j.request(), rec));
    ASSERT_TRUE(installer->revert(j.request(), rec)) << "a re-run after a crash";
    const auto id = fake_id("example/app:1");
    EXPECT_EQ(running_state(), id + "\n1\n");
    const auto c = calls();
    ASSERT_EQ(c.size(), before + 2) << kit::read_file(state / "calls.log");
    EXPECT_EQ(c[before], compose() + " up -d app | OTA_IMAGE=" + id + " OTA_VERSION=1");
    EXPECT_FALSE(installer->revert(j.request(), nlohmann::json::object())) << "a record naming no image is refused";
}

TEST_F(DockerInstall, LoadFailureIsInstallFailedNamingTheCommandStatusAndStderr) {
    ::setenv("FAKE_DOCKER_FAIL", "load", 1);
    running("example/app:1", "1");
    auto j = job("arm64_2026-03-10");
    auto rec = installer->prepare(j.request());
    ASSERT_FALSE(rec);
    EXPECT_EQ(rec.error().code, ErrorCode::install_failed);
    EXPECT_EQ(rec.error().message, "`docker load -i " + (tmp / "image.tar").string() +
                                       "` failed: exit status 1: Error response from daemon: fake failure: load");
    EXPECT_EQ(running_state(), "example/app:1\n1\n");
}

TEST_F(DockerInstall, ComposeUpFailureThenRollbackRestoresThePrevious) {
    running("example/app:1", "1");
    auto j = job("arm64_2026-03-10");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    ::setenv("FAKE_DOCKER_FAIL", "up", 1);
    auto a = installer->activate(j.request(), *rec);
    ASSERT_FALSE(a);
    EXPECT_EQ(a.error().code, ErrorCode::install_failed);
    EXPECT_NE(a.error().message.find(compose() + " up -d app` failed: exit status 1: Error response"), std::string::npos)
        << a.error().message;
    ::unsetenv("FAKE_DOCKER_FAIL");
    ASSERT_TRUE(installer->rollback(j.request(), *rec));
    EXPECT_EQ(running_state(), fake_id("example/app:1") + "\n1\n");
}

TEST_F(DockerInstall, NoLoadedImageLineOrNoComposeFileIsInstallFailed) {
    ::setenv("FAKE_DOCKER_LOAD_OUTPUT", "something else", 1);
    auto j = job("arm64_2026-03-10");
    auto rec = installer->prepare(j.request());
    ASSERT_FALSE(rec);
    EXPECT_NE(rec.error().message.find("no \"Loaded image\" line"), std::string::npos) << rec.error().message;
    j.config.compose_file.clear();
    rec = installer->prepare(j.request());
    ASSERT_FALSE(rec);
    EXPECT_NE(rec.error().message.find("no compose_file"), std::string::npos) << rec.error().message;
}

TEST_F(DockerInstall, AHangingCommandIsKilledAfterTheTimeout) {
    ::setenv("FAKE_DOCKER_HANG", "load", 1);
    auto j = job("arm64_2026-03-10");
    j.config.command_timeout = 300ms;
    const auto start = std::chrono::steady_clock::now();
    auto rec = installer->prepare(j.request());
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(rec);
    EXPECT_NE(rec.error().message.find("timed out after 300 ms"), std::string::npos) << rec.error().message;
    EXPECT_LT(took, 3s);
}

TEST_F(DockerInstall, MissingDockerCommandIsInstallFailed) {
    auto j = job("arm64_2026-03-10");
    j.config.docker_command = "no-such-docker-here";
    auto rec = installer->prepare(j.request());
    ASSERT_FALSE(rec);
    EXPECT_EQ(rec.error().code, ErrorCode::install_failed);
    EXPECT_NE(rec.error().message.find("not found on PATH"), std::string::npos) << rec.error().message;
}

}  // namespace
}  // namespace ota::agent::test
