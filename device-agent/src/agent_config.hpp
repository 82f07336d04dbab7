// The agent's configuration (docs/agent.md, "Configuration"): a JSON file, conf.d fragments,
// OTA_AGENT_* environment variables, then flags (see ota/config.hpp for the layering).
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "install/health.hpp"
#include "install/installer.hpp"
#include "ota/manifest.hpp"
#include "ota/error.hpp"
#include "ota/window.hpp"

namespace ota::agent {

// Where the installed version of a component is read from (for inventory and "is it newer").
struct VersionSource {
    enum class Type { none, files, version_file, agent, docker };
    Type type{Type::none};
    std::filesystem::path dir;   // files: the directory to scan
    std::string pattern;         // files: regex over file names; capture group 1 is the version
    std::filesystem::path path;  // version_file: a JSON file
    std::string field{"version"};  // version_file: the field holding the version
    std::string repository;        // docker: image repository, e.g. azaion/annotations
};

// When updates may start on this device (UTC), see ota/window.hpp.
using UpdateWindow = TimeWindow;

struct ComponentSettings {
    ComponentConfig install;
    // What the device's owner allows a release of this component to be (docs/agent.md, "Install
    // targets"): when set, a release of another install type or for another target is rejected
    // (target_not_allowed), and the target is what the agent's sandbox opens for writing.
    std::optional<InstallType> type;
    std::filesystem::path target;  // file, archive: a directory; binary: the binary's path
    VersionSource source;
    std::optional<HealthCheck> health;
};

struct AgentConfig {
    std::string device_id;
    std::string fleet_hint;  // informational: the controller assigns the fleet and wave
    std::string platform;    // e.g. linux/arm64; default: detected
    std::map<std::string, std::string> labels;

    std::string broker;
    std::string cafile, certfile, keyfile;
    std::chrono::seconds keepalive{30};
    std::chrono::seconds session_expiry{std::chrono::hours(24 * 7)};
    std::string topic_prefix{"ota/v1"};

    std::filesystem::path trusted_keys;  // a public key file or a directory of them
    // The root public key (PEM) that signs keysets (docs/protocol.md, "Keyset"); empty: no keyset
    // is followed and trusted_keys stay the release keys. With it, trusted_keys are trusted only
    // until the first keyset is accepted; from then on exactly the keyset's keys.
    std::filesystem::path root_key;
    std::filesystem::path state_dir{"/var/lib/ota-agent"};
    std::filesystem::path binary_path;   // the agent's own binary (self-update); default: /proc/self/exe
    // Prepended to every install target of a manifest (default: none, i.e. "/"): lets several
    // simulated devices share one machine (the demo, tests) or a container keep its own tree.
    std::filesystem::path install_root;

    // Downloads
    std::string download_cafile;  // CA for the artifact server (default: the system store)
    std::uint64_t low_speed_limit{1024};
    std::chrono::seconds low_speed_time{30};
    std::chrono::seconds download_stall_timeout{10};   // no byte at all for this long: the attempt ends
    std::chrono::seconds download_deadline{3600};       // per attempt
    std::chrono::seconds download_total_deadline{6 * 3600};  // the whole download, all attempts
    int download_attempts{5};
    std::chrono::seconds download_retry_window{600};  // ...and no progress for this long: give up
    // Site artifact caches (docs/multisite.md): an artifact URL that starts with an origin prefix
    // ("https://artifacts.example.com/") is fetched with that prefix replaced by the site cache's
    // ("https://ota-cache.plant-a.lan:8443/"), the longest matching prefix first. The signed size
    // and SHA-256 still decide: when the download from the cache fails (unreachable, an HTTP
    // error, a stall, a wrong hash: a poisoned cache), and cache_fallback is on, the agent fetches
    // from the origin once.
    std::vector<std::pair<std::string, std::string>> download_caches;  // (origin prefix, cache prefix)
    bool cache_fallback{true};

    // Status reports of download progress (device-agent/src/progress.hpp): at most one per
    // interval, and only after this many more percent.
    std::chrono::seconds progress_interval{5};
    int progress_step_percent{25};

    bool auto_update{true};
    std::optional<UpdateWindow> update_window;  // none: any time
    std::chrono::seconds inventory_interval{300};
    int max_step_restarts{3};  // restarts in the same journal step before giving up
    // Self-update guard (device-agent/ota-agent-launch): the new binary must confirm itself
    // (reach committing) within this time and this many starts, or the launcher restores <bin>.old.
    std::chrono::seconds self_update_deadline{600};
    int self_update_max_starts{3};

    std::map<std::string, ComponentSettings> components;

    std::string log_format{"plain"};
    std::string log_level{"info"};

    [[nodiscard]] nlohmann::ordered_json to_json() const;

    // The directories the agent writes, derived from this config: its state directory, the
    // directory of its own binary when binary_path is set, and each component's configured target
    // (under install_root): file and archive targets themselves, a binary's directory. Absolute
    // paths only (a relative state_dir opens nothing), sorted, without duplicates or paths inside
    // another one.
    [[nodiscard]] std::vector<std::filesystem::path> write_paths() const;
};

// A systemd drop-in (for ota-agent.service) that makes write_paths() writable in the sandbox:
// `ReadWritePaths=-<path>` lines, quoted and with `%` escaped; `-`: a target that does not exist
// yet does not keep the agent from starting. Written by the generator at boot and daemon-reload
// (packaging/ota-agent-generator, docs/systemd.md "Install targets").
[[nodiscard]] std::string sandbox_dropin(const AgentConfig& config, const std::filesystem::path& config_path);

// The URL to fetch `url` from: through the site cache whose origin prefix it starts with (the
// longest), or nullopt when no cache mirrors it.
[[nodiscard]] std::optional<std::string> cache_url(const AgentConfig& config, std::string_view url);

// Whether this device's config allows the release's install type and target for the component.
[[nodiscard]] Expected<void> check_install_allowed(const ComponentSettings& settings, const Manifest& manifest);

// config_invalid errors name the field path ("agent.components.model.health.timeout_ms: ...").
[[nodiscard]] Expected<AgentConfig> parse_agent_config(const nlohmann::json& json);

// "linux/<arch>" of this machine, in Docker's platform names (amd64, arm64, arm/v7).
[[nodiscard]] std::string detect_platform();

}  // namespace ota::agent
