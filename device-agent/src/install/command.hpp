// Running an external command (docker, docker compose, a health check) without a shell:
// posix_spawn in a process group of its own, stdin from /dev/null, stdout and stderr captured,
// extra environment added, and a timeout after which the whole process group is killed
// (SIGKILL), so a hung command never hangs the agent.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ota::agent {

using EnvVars = std::vector<std::pair<std::string, std::string>>;

struct CommandResult {
    bool started{false};     // false: could not be run at all (see spawn_error)
    std::string spawn_error; // e.g. "docker: not found on PATH"
    int exit_code{-1};       // exit status; 128+N when killed by signal N
    bool timed_out{false};   // killed (with its process group) after the timeout
    std::string out;         // stdout and stderr, each capped at 1 MiB (the end is kept)
    std::string err;
    [[nodiscard]] bool ok() const { return started && !timed_out && exit_code == 0; }
};

// Runs `argv` (argv[0] without '/' is looked up on the PATH of the environment the command gets:
// the agent's own, with `env` added or overriding). Never throws.
[[nodiscard]] CommandResult run_command(const std::vector<std::string>& argv, const EnvVars& env,
                                        std::chrono::milliseconds timeout);

// Why a command did not succeed, for error messages: "exit status 1: <last stderr line>",
// "timed out after 500 ms", "killed by signal 9", or the spawn error. Empty when it succeeded.
[[nodiscard]] std::string describe_failure(const CommandResult& result, std::chrono::milliseconds timeout);

// "docker load -i /x" (arguments with spaces or quotes are single-quoted), for messages.
[[nodiscard]] std::string command_line(const std::vector<std::string>& argv);
// "docker compose" -> {"docker", "compose"} (split on runs of spaces and tabs).
[[nodiscard]] std::vector<std::string> split_command(std::string_view text);

}  // namespace ota::agent
