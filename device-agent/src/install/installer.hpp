// Install types (docs/agent.md, "Install types"). Each install is split into steps the agent's
// journal records before running them, so that a crash at any point is resumed or undone:
//
//   prepare   stage everything without touching what is live (decrypt, unpack, docker load,
//             write <bin>.new). Returns a record (JSON) of what it did and what was live before.
//   activate  the one atomic switch (rename, symlink flip, compose up, binary rename).
//   rollback  undo activate and prepare, back to what the record says was live before.
//   commit    after a healthy activate: clean up (keep `keep_previous` earlier releases).
//   revert    an operator's rollback of a committed install (cmd "rollback"), with the record
//             kept at commit: back to what the record says was live before. The default is
//             rollback; a type whose rollback relies on state that commit clears overrides it.
//
// Every step is idempotent given the record: after a crash the agent runs the interrupted step
// again (or rollback) and must reach the same end state. rollback also accepts an empty record
// ({}: prepare was interrupted before its record was journalled) and then removes whatever a
// partial prepare staged; nothing live was touched in that case.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ota/error.hpp"
#include "ota/manifest.hpp"

namespace ota::agent {

// Per-component settings from the agent's config (each can also come from the environment:
// see docs/agent.md).
struct ComponentConfig {
    std::string name;
    // docker-image: the compose file, the compose command ("docker compose" or "docker-compose",
    // split on spaces) and the docker command.
    std::filesystem::path compose_file;
    std::string compose_command{"docker compose"};
    std::string docker_command{"docker"};
    // file: AES-256-GCM keys provisioned on the device, one file per key id:
    // <decrypt_keys_dir>/<key_id>.key holding 32 raw bytes or 64 hex characters.
    std::filesystem::path decrypt_keys_dir;
    // How many earlier releases commit keeps (archive release dirs, files; a binary keeps one
    // <bin>.old whatever this says).
    int keep_previous{1};
    // docker-image: the longest any one docker / compose command may run before it is killed.
    std::chrono::milliseconds command_timeout{std::chrono::minutes(10)};
};

struct InstallRequest {
    const Manifest& manifest;
    std::filesystem::path artifact;  // the downloaded, verified artifact (read-only input)
    std::filesystem::path work_dir;  // the agent's private directory for this component's install
    const ComponentConfig& config;
};

class Installer {
public:
    virtual ~Installer() = default;
    [[nodiscard]] virtual Expected<nlohmann::json> prepare(const InstallRequest& request) = 0;
    [[nodiscard]] virtual Expected<void> activate(const InstallRequest& request, const nlohmann::json& record) = 0;
    [[nodiscard]] virtual Expected<void> rollback(const InstallRequest& request, const nlohmann::json& record) = 0;
    [[nodiscard]] virtual Expected<void> commit(const InstallRequest& request, const nlohmann::json& record) = 0;
    [[nodiscard]] virtual Expected<void> revert(const InstallRequest& request, const nlohmann::json& record) {
        return rollback(request, record);
    }
};

// `binary` and `self` share one installer (self adds the restart, done by the agent).
[[nodiscard]] std::unique_ptr<Installer> make_installer(InstallType type);

}  // namespace ota::agent
