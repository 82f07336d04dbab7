// The agent: follows its assignment to a wave, decides about each offered release, and runs
// updates through a journal so that a crash at any moment is resumed or rolled back
// (docs/agent.md). All work happens on the agent's own thread; the MQTT client's handlers only
// queue events for it.
#pragma once

#include <atomic>
#include <memory>

#include "agent_config.hpp"

namespace ota::agent {

struct RunOptions {
    bool once{false};          // one reconcile cycle, then exit
    bool force_update{false};  // apply the offered release now (ignores auto_update=false)
    std::chrono::seconds once_wait{10};  // --once: how long to wait for retained messages
};

class Agent {
public:
    explicit Agent(AgentConfig config);
    ~Agent();
    Agent(const Agent&) = delete;
    Agent& operator=(const Agent&) = delete;

    // Runs until SIGTERM/SIGINT (or one cycle with --once). Returns the process exit status:
    // 0 clean stop, 1 fatal error (logged), 3 restart requested after a self-update.
    int run(const RunOptions& options);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Set from a signal handler to stop the agent (it finishes the current step or leaves a download
// to be resumed, flushes reports, disconnects).
extern std::atomic<bool> g_stop;

// Exit status that asks the supervisor to start the (new) binary.
inline constexpr int exit_restart = 3;

}  // namespace ota::agent
