// A real container engine for the `container`-labelled tests: rootful Podman serving the Docker
// API on a socket of its own, for the real `docker` client and docker-compose v1, set up as
// ../../../shared/design/CONTAINERS.md describes (runc, ulimits from this machine's hard limits,
// images imported from a busybox rootfs, no registry). Storage (vfs), run state, Podman's tmp_dir
// and the socket live in the given directory, so nothing touches the host's containers or images
// nor another engine's; the destructor removes every container and image it holds and stops the
// service. Users: tests/device-agent (docker-image installs), tests/docker (the compose topology).
// Needs: podman runc buildah busybox-static docker-compose, and a docker client (docker.io).
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kit.hpp"

namespace ota::testkit {

class PodmanEngine {
public:
    // Throws std::runtime_error naming what is missing or what failed.
    explicit PodmanEngine(const fs::path& dir) : dir_(dir) {
        for (const auto* tool : {"podman", "docker", "docker-compose", "runc"})
            if (run({"sh", "-c", std::string("command -v ") + tool}).exit_code != 0)
                throw std::runtime_error(std::string(tool) + " is not installed (see shared/design/CONTAINERS.md)");
        if (!fs::exists("/bin/busybox")) throw std::runtime_error("/bin/busybox is missing (busybox-static)");
        // Ulimits no higher than the hard limits: nofile from this process; nproc also no higher
        // than 32768, the hard limit the Podman service itself ran with here (a higher container
        // limit than its parent's is EPERM from runc).
        rlimit nofile{}, nproc{};
        ::getrlimit(RLIMIT_NOFILE, &nofile);
        ::getrlimit(RLIMIT_NPROC, &nproc);
        const auto files = std::to_string(std::min<rlim_t>(nofile.rlim_max, 1048576));
        const auto procs = std::to_string(std::min<rlim_t>(nproc.rlim_max, 32768));
        write_file(dir_ / "containers.conf", "[containers]\ndefault_ulimits = [\"nofile=" + files + ":" + files +
                                                 "\", \"nproc=" + procs + ":" + procs +
                                                 "\"]\n[engine]\nruntime = \"runc\"\ntmp_dir = \"" +
                                                 (dir_ / "tmp").string() + "\"\n");
        write_file(dir_ / "storage.conf", "[storage]\ndriver = \"vfs\"\ngraphroot = \"" + (dir_ / "storage").string() +
                                              "\"\nrunroot = \"" + (dir_ / "run").string() + "\"\n");
        env_ = {{"CONTAINERS_CONF", (dir_ / "containers.conf").string()},
                {"CONTAINERS_STORAGE_CONF", (dir_ / "storage.conf").string()},
                {"DOCKER_HOST", "unix://" + (dir_ / "podman.sock").string()}};
        service_ = std::make_unique<Process>(
            std::vector<std::string>{"podman", "system", "service", "--time=0", env_["DOCKER_HOST"]},
            dir_ / "podman-service.log", env_);
        if (!wait_until([&] { return run({"docker", "version"}, 5s, env_).exit_code == 0; }, 20s, 100ms))
            throw std::runtime_error("the Podman service did not answer: " + service_->log());
    }
    ~PodmanEngine() {
        (void)podman({"rm", "-f", "-a"});
        (void)podman({"rmi", "-f", "-a"});
        service_.reset();
    }
    PodmanEngine(const PodmanEngine&) = delete;
    PodmanEngine& operator=(const PodmanEngine&) = delete;

    // CONTAINERS_CONF, CONTAINERS_STORAGE_CONF (for podman) and DOCKER_HOST (for docker and
    // docker-compose): what a process needs in its environment to use this engine.
    [[nodiscard]] const std::map<std::string, std::string>& env() const { return env_; }
    [[nodiscard]] std::string service_log() const { return service_->log(); }

    RunResult podman(std::vector<std::string> args, std::chrono::milliseconds timeout = 60s) const {
        args.insert(args.begin(), "podman");
        return run(args, timeout, env_);
    }
    static void must(const RunResult& r, const std::string& what) {
        if (r.exit_code != 0) throw std::runtime_error(what + " failed (" + std::to_string(r.exit_code) + "): " + r.err + r.out);
    }
    static std::string trim(std::string s) {
        while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
        return s;
    }

    // A tiny image `ref` (e.g. "localhost/otaapp:2") from a busybox rootfs (sh, cat, sleep, httpd)
    // whose /version holds `version` (also served as /www/version), saved as a docker-archive
    // tarball at `tarball` and removed from storage again, so that a `docker load` is what brings
    // it back. Returns its image ID ("sha256:...").
    std::string save_image(const std::string& ref, const std::string& version, const fs::path& tarball) const {
        const auto rootfs = dir_ / "rootfs";
        if (!fs::exists(rootfs / "bin/busybox")) {
            fs::create_directories(rootfs / "bin");
            fs::create_directories(rootfs / "www");
            fs::copy_file("/bin/busybox", rootfs / "bin/busybox");
            for (const auto* t : {"sh", "cat", "sleep", "httpd"}) fs::create_symlink("busybox", rootfs / "bin" / t);
        }
        write_file(rootfs / "version", version);
        write_file(rootfs / "www" / "version", version);
        must(run({"tar", "-C", rootfs.string(), "-cf", (dir_ / "rootfs.tar").string(), "."}), "tar");
        must(podman({"import", (dir_ / "rootfs.tar").string(), ref}), "podman import");
        fs::create_directories(tarball.parent_path());
        must(podman({"save", "-o", tarball.string(), ref}), "podman save");
        const auto id = "sha256:" + trim(podman({"image", "inspect", "--format", "{{.Id}}", ref}).out);
        must(podman({"rmi", ref}), "podman rmi");
        return id;
    }

private:
    fs::path dir_;
    std::map<std::string, std::string> env_;
    std::unique_ptr<Process> service_;
};

}  // namespace ota::testkit
