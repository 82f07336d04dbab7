#include "ota/systemd.hpp"
#include "install/command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <thread>

#include "install/fsutil.hpp"

extern char** environ;

namespace ota::agent {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using detail::Fd;

constexpr std::size_t kCaptureLimit = 1 << 20;

// The environment the child gets: ours, with `extra` added or overriding.
std::vector<std::string> child_environment(const EnvVars& extra) {
    std::map<std::string, std::string> vars;
    std::vector<std::string> order;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        const std::string entry(*e);
        const auto eq = entry.find('=');
        if (eq == std::string::npos) continue;
        auto [it, inserted] = vars.emplace(entry.substr(0, eq), entry.substr(eq + 1));
        if (inserted) order.push_back(it->first);
    }
    for (const auto& [k, v] : extra) {
        auto [it, inserted] = vars.insert_or_assign(k, v);
        if (inserted) order.push_back(it->first);
    }
    std::vector<std::string> out;
    out.reserve(order.size());
    for (const auto& k : order) out.push_back(k + "=" + vars[k]);
    return out;
}

// argv[0] resolved against PATH from the child's environment.
std::string resolve(const std::string& name, const std::vector<std::string>& env, std::string& error) {
    if (name.empty()) {
        error = "empty command";
        return {};
    }
    if (name.find('/') != std::string::npos) return name;
    std::string path = "/usr/local/bin:/usr/bin:/bin";
    for (const auto& e : env)
        if (e.starts_with("PATH=")) path = e.substr(5);
    std::size_t start = 0;
    while (start <= path.size()) {
        auto end = path.find(':', start);
        if (end == std::string::npos) end = path.size();
        const auto dir = end == start ? std::string(".") : path.substr(start, end - start);
        const auto candidate = dir + "/" + name;
        struct stat st {};
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
            return candidate;
        start = end + 1;
    }
    error = name + ": not found on PATH (" + path + ")";
    return {};
}

void append_capped(std::string& target, const char* data, std::size_t n) {
    target.append(data, n);
    if (target.size() > kCaptureLimit) target.erase(0, target.size() - kCaptureLimit);
}

int exit_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

}  // namespace

CommandResult run_command(const std::vector<std::string>& argv, const EnvVars& env, std::chrono::milliseconds timeout) {
    CommandResult result;
    if (argv.empty()) {
        result.spawn_error = "empty command";
        return result;
    }
    const auto envs = child_environment(env);
    std::string error;
    const auto exe = resolve(argv[0], envs, error);
    if (exe.empty()) {
        result.spawn_error = error;
        return result;
    }

    std::array<int, 2> out_pipe{-1, -1};
    std::array<int, 2> err_pipe{-1, -1};
    if (::pipe2(out_pipe.data(), O_CLOEXEC) != 0) {
        result.spawn_error = std::string("pipe: ") + std::strerror(errno);
        return result;
    }
    Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
    if (::pipe2(err_pipe.data(), O_CLOEXEC) != 0) {
        result.spawn_error = std::string("pipe: ") + std::strerror(errno);
        return result;
    }
    Fd err_r(err_pipe[0]), err_w(err_pipe[1]);

    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    std::vector<char*> cenv;
    for (const auto& e : envs) cenv.push_back(const_cast<char*>(e.c_str()));
    cenv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, err_w.get(), 2);
    // Nothing else of the agent's (MQTT socket, database) leaks into docker or a health check.
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    // Its own process group (so a timeout kills what it forked too), default signal handling and
    // an empty signal mask whatever the agent itself uses.
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGHUP);
    sigaddset(&defaults, SIGCHLD);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, static_cast<short>(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                       POSIX_SPAWN_SETSIGDEF));
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, exe.c_str(), &actions, &attr, cargv.data(), cenv.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        result.spawn_error = "cannot run " + exe + ": " + std::strerror(rc);
        return result;
    }
    result.started = true;
    out_w.reset();
    err_w.reset();

    const auto deadline = Clock::now() + timeout;
    bool exited = false;
    int status = 0;
    auto exited_at = Clock::time_point{};
    // Read until both pipes close; a child that exited but left something holding the pipes
    // gets 200 ms more, then we stop reading.
    while (out_r.valid() || err_r.valid()) {
        systemd::alive();  // the step is bounded by `timeout`; the agent is not hung while it waits
        const auto now = Clock::now();
        if (now >= deadline) break;
        if (!exited && ::waitpid(pid, &status, WNOHANG) == pid) {
            exited = true;
            exited_at = now;
        }
        if (exited && now - exited_at > 200ms) break;
        std::vector<pollfd> fds;
        for (const auto* f : {&out_r, &err_r})
            if (f->valid()) fds.push_back({f->get(), POLLIN, 0});
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
        const int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::clamp<long long>(left, 0, 50)));
        if (n < 0 && errno != EINTR) break;
        for (const auto& p : fds) {
            if (p.revents == 0) continue;
            auto& fd = p.fd == out_r.get() ? out_r : err_r;
            auto& target = p.fd == out_r.get() ? result.out : result.err;
            char buf[65536];
            const auto k = ::read(p.fd, buf, sizeof buf);
            if (k > 0)
                append_capped(target, buf, static_cast<std::size_t>(k));
            else if (k == 0 || (errno != EAGAIN && errno != EINTR))
                fd.reset();
        }
    }
    while (!exited && Clock::now() < deadline) {
        systemd::alive();
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            exited = true;
            break;
        }
        std::this_thread::sleep_for(2ms);
    }
    if (!exited) {
        // Not reaped yet, so the PID (and the group id) is still ours: kill the whole group.
        ::kill(-pid, SIGKILL);
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        result.timed_out = true;
    }
    result.exit_code = exit_status(status);
    return result;
}

std::string describe_failure(const CommandResult& result, std::chrono::milliseconds timeout) {
    if (!result.started) return result.spawn_error;
    if (result.timed_out) return "timed out after " + std::to_string(timeout.count()) + " ms";
    if (result.exit_code == 0) return {};
    std::string why = result.exit_code > 128 ? "killed by signal " + std::to_string(result.exit_code - 128)
                                             : "exit status " + std::to_string(result.exit_code);
    auto line = detail::last_line(result.err);
    if (line.empty()) line = detail::last_line(result.out);
    if (!line.empty()) why += ": " + line;
    return why;
}

std::string command_line(const std::vector<std::string>& argv) {
    std::string out;
    for (const auto& a : argv) {
        if (!out.empty()) out += ' ';
        const bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$`*?") == std::string::npos;
        if (plain) {
            out += a;
        } else {
            out += '\'';
            for (const char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
            out += '\'';
        }
    }
    return out;
}

std::vector<std::string> split_command(std::string_view text) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
        const auto start = i;
        while (i < text.size() && text[i] != ' ' && text[i] != '\t') ++i;
        if (i > start) out.emplace_back(text.substr(start, i - start));
    }
    return out;
}

}  // namespace ota::agent
