// ota-controller as a process: the MQTT connection, the ingest queue, the engine thread that
// applies messages in batches (one SQLite transaction per batch), the publisher, and /metrics.
#pragma once

#include <atomic>

#include "policy.hpp"

namespace ota::controller {

// Runs until `stop` becomes true. Returns the process exit status (0 clean, 1 fatal).
int run_service(const ControllerConfig& config, std::atomic<bool>& stop);

}  // namespace ota::controller
