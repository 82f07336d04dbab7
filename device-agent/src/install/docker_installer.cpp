// `docker-image`: load an image tarball, then let compose recreate the service with it.
//
// The compose file names the image through the environment: `image: ${OTA_IMAGE}` (and may use
// ${OTA_VERSION}). Commands run without a shell, bounded by `command_timeout`:
//
//   prepare   <docker> load -i <artifact>          -> the loaded ref from "Loaded image: X" (or
//                                                     "Loaded image ID: sha256:...")
//             <compose> -f F ps -q <service>        -> the running container, if any, and then
//             <docker> inspect --format ... <id>    -> the image ID it runs (and the ref and
//                                                     OTA_VERSION it was started with)
//   activate  <work_dir>/docker-activated is written first, then
//             <compose> -f F up -d <service>        with OTA_IMAGE=<loaded ref>, OTA_VERSION=<version>
//   rollback  only if activate began (the marker exists):
//             <compose> -f F up -d <service>        with OTA_IMAGE=<previous image ID>,
//                                                   OTA_VERSION=<previous OTA_VERSION, if known>
//             or, when no container ran before, <compose> -f F rm -s -f <service>
//   commit    removes the marker. Images are not deleted (leave that to `docker image prune`),
//             so the previous image is still there for an operator's rollback.
//   revert    (an operator's rollback after commit; the marker is gone, the new image is live):
//             the same `up -d` with the previous image ID (or `rm -s -f`) as rollback.
//
// The previous image is recorded by ID, not by tag, so a tag that the new image moved cannot
// make a rollback start the new image again.
#include "install/command.hpp"
#include "install/fsutil.hpp"
#include "install/installers.hpp"
#include "ota/files.hpp"

namespace ota::agent::detail {
namespace {

using nlohmann::json;

struct Setup {
    std::vector<std::string> docker;
    std::vector<std::string> compose;  // + "-f <file>"
    std::string service;
    std::chrono::milliseconds timeout;
};

Expected<Setup> setup_of(const InstallRequest& request) {
    const auto& c = request.config;
    Setup s;
    s.docker = split_command(c.docker_command);
    s.compose = split_command(c.compose_command);
    s.service = request.manifest.install.service;
    s.timeout = c.command_timeout;
    if (s.docker.empty()) return fail(ErrorCode::install_failed, "docker-image install: docker_command is empty");
    if (s.compose.empty()) return fail(ErrorCode::install_failed, "docker-image install: compose_command is empty");
    if (c.compose_file.empty())
        return fail(ErrorCode::install_failed,
                    "docker-image install: no compose_file configured for component " + request.manifest.component);
    if (s.service.empty()) return fail(ErrorCode::install_failed, "docker-image install: manifest.install.service is empty");
    s.compose.push_back("-f");
    s.compose.push_back(c.compose_file.string());
    return s;
}

std::vector<std::string> with(std::vector<std::string> base, std::initializer_list<std::string> more) {
    base.insert(base.end(), more);
    return base;
}

Expected<CommandResult> run_checked(const std::vector<std::string>& argv, const EnvVars& env,
                                    std::chrono::milliseconds timeout) {
    auto r = run_command(argv, env, timeout);
    if (!r.ok())
        return fail(ErrorCode::install_failed, "`" + command_line(argv) + "` failed: " + describe_failure(r, timeout));
    return r;
}

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i < text.size()) {
        auto end = text.find('\n', i);
        if (end == std::string::npos) end = text.size();
        auto line = text.substr(i, end - i);
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
        out.push_back(line);
        i = end + 1;
    }
    return out;
}

std::string loaded_ref(const std::string& out) {
    std::string id;
    for (const auto& line : lines(out)) {
        if (line.starts_with("Loaded image: ")) return line.substr(14);
        if (line.starts_with("Loaded image ID: ") && id.empty()) id = line.substr(17);
    }
    return id;
}

fs::path marker(const InstallRequest& request) { return request.work_dir / "docker-activated"; }

Expected<void> compose_up(const Setup& s, const std::string& image, const std::string& version) {
    EnvVars env{{"OTA_IMAGE", image}};
    if (!version.empty()) env.emplace_back("OTA_VERSION", version);
    auto r = run_checked(with(s.compose, {"up", "-d", s.service}), env, s.timeout);
    if (!r) return std::unexpected(r.error());
    return {};
}

class DockerInstaller final : public Installer {
public:
    Expected<json> prepare(const InstallRequest& request) override {
        auto s = setup_of(request);
        if (!s) return std::unexpected(s.error());
        auto load = run_checked(with(s->docker, {"load", "-i", request.artifact.string()}), {}, s->timeout);
        if (!load) return std::unexpected(load.error());
        const auto image = loaded_ref(load->out);
        if (image.empty())
            return fail(ErrorCode::install_failed, "`" + command_line(with(s->docker, {"load", "-i", request.artifact.string()})) +
                                                       "` printed no \"Loaded image\" line");
        // What runs now (the compose file needs OTA_IMAGE set to be read at all).
        const EnvVars env{{"OTA_IMAGE", image}, {"OTA_VERSION", request.manifest.version}};
        auto ps = run_checked(with(s->compose, {"ps", "-q", s->service}), env, s->timeout);
        if (!ps) return std::unexpected(ps.error());
        std::string container;
        for (const auto& line : lines(ps->out))
            if (!line.empty()) {
                container = line;
                break;
            }
        json record{{"type", "docker-image"}, {"image", image}, {"service", s->service},
                    {"previous_image", nullptr}, {"previous_ref", nullptr}, {"previous_version", nullptr}};
        if (!container.empty()) {
            auto inspect = run_checked(
                with(s->docker, {"inspect", "--format", "{{.Image}}\n{{.Config.Image}}\n{{range .Config.Env}}{{println .}}{{end}}",
                                 container}),
                {}, s->timeout);
            if (!inspect) return std::unexpected(inspect.error());
            const auto l = lines(inspect->out);
            if (l.empty() || l[0].empty())
                return fail(ErrorCode::install_failed, "docker inspect " + container + " printed no image ID");
            record["previous_image"] = l[0];
            if (l.size() > 1 && !l[1].empty()) record["previous_ref"] = l[1];
            for (std::size_t i = 2; i < l.size(); ++i)
                if (l[i].starts_with("OTA_VERSION=")) record["previous_version"] = l[i].substr(12);
        }
        return record;
    }

    Expected<void> activate(const InstallRequest& request, const json& record) override {
        auto s = setup_of(request);
        if (!s) return std::unexpected(s.error());
        const auto image = record.value("image", std::string());
        if (image.empty()) return fail(ErrorCode::install_failed, "docker-image install: the journal record names no image");
        std::error_code ec;
        fs::create_directories(request.work_dir, ec);
        if (auto m = write_file_atomic(marker(request), image + "\n"); !m) return m;
        return compose_up(*s, image, request.manifest.version);
    }

    Expected<void> rollback(const InstallRequest& request, const json& record) override {
        if (!exists_nofollow(marker(request))) return {};  // the service was never touched
        if (auto r = start_previous(request, record); !r) return r;
        return remove_file_durable(marker(request));
    }

    Expected<void> revert(const InstallRequest& request, const json& record) override {
        if (record.value("image", std::string()).empty())
            return fail(ErrorCode::install_failed, "docker-image rollback: the kept record names no image");
        return start_previous(request, record);
    }

    Expected<void> commit(const InstallRequest& request, const json&) override {
        return remove_file_durable(marker(request));
    }

private:
    // Run the service with the image the record says ran before (by ID, with its OTA_VERSION),
    // or remove the service when nothing ran before. Idempotent.
    static Expected<void> start_previous(const InstallRequest& request, const json& record) {
        auto s = setup_of(request);
        if (!s) return std::unexpected(s.error());
        const auto text = [&](const char* key) {
            return record.contains(key) && record[key].is_string() ? record[key].get<std::string>() : std::string();
        };
        if (const auto previous = text("previous_image"); !previous.empty()) return compose_up(*s, previous, text("previous_version"));
        // Nothing ran before: remove what the update started.
        const EnvVars env{{"OTA_IMAGE", record.value("image", std::string("none"))}};
        auto r = run_checked(with(s->compose, {"rm", "-s", "-f", s->service}), env, s->timeout);
        if (!r) return std::unexpected(r.error());
        return {};
    }
};

}  // namespace

std::unique_ptr<Installer> make_docker_installer() { return std::make_unique<DockerInstaller>(); }

}  // namespace ota::agent::detail
