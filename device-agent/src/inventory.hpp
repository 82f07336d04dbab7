// Installed versions per component, read from each component's version source
// (docs/agent.md, "Inventory"). Results are cached; the cache is dropped when a scanned
// directory's modification time changes or after an install (invalidate()). Thread-safe.
#pragma once

#include <filesystem>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "agent_config.hpp"

namespace ota::agent {

class Inventory {
public:
    explicit Inventory(const AgentConfig& config) : config_(config) {}
    // The installed version of `component`, or nullopt when unknown. `recorded` is what the
    // agent itself last installed (used when the component has no version source).
    [[nodiscard]] std::optional<std::string> version(const std::string& component,
                                                     const std::optional<std::string>& recorded);
    void invalidate() {
        std::lock_guard lock(mu_);
        cache_.clear();
    }

private:
    struct Cached {
        std::optional<std::string> version;
        std::filesystem::file_time_type stamp;
        std::chrono::steady_clock::time_point read_at;
    };
    const AgentConfig& config_;
    std::mutex mu_;  // the agent's thread and the MQTT dispatch thread (inventory at connect) both ask
    std::map<std::string, Cached> cache_;
};

// docker source: the newest tag of `repository` among "repo:tag" lines (docker images output).
[[nodiscard]] std::optional<std::string> newest_tag(const std::string& images_output, const std::string& repository);

// files source: the newest version among file names in `dir` matching `pattern` (group 1).
[[nodiscard]] std::optional<std::string> newest_in_dir(const std::filesystem::path& dir, const std::string& pattern);

}  // namespace ota::agent
