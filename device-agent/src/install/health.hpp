// Health checks after an install (docs/agent.md, "Health checks"): a command that must exit 0,
// or an HTTP(S) URL that must answer 2xx, each attempt bounded by a timeout, retried with a
// delay; the first success passes. No check configured = healthy.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "ota/error.hpp"

namespace ota::agent {

struct HealthCheck {
    std::vector<std::string> command;  // argv, run without a shell; or
    std::string url;                   // http:// or https://
    std::string cafile;                // for https URLs (empty: system store)
    std::chrono::milliseconds timeout{std::chrono::seconds(10)};
    int retries{3};                    // attempts after the first
    std::chrono::milliseconds interval{std::chrono::seconds(2)};
    // Extra environment for the command (e.g. OTA_COMPONENT, OTA_VERSION).
    std::vector<std::pair<std::string, std::string>> env;
};

// health_check_failed naming the command/URL and the last cause (exit status, HTTP status,
// timeout) on failure.
[[nodiscard]] Expected<void> run_health_check(const HealthCheck& check);

}  // namespace ota::agent
