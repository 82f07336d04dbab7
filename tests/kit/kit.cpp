// The test kit (kit.hpp): temporary directories, free ports, child processes. The PKI is in
// kit_pki.cpp, Mosquitto, nginx and the mosquitto clients in kit_services.cpp, network
// namespaces in kit_net.cpp. Children are started with posix_spawn in a session of their
// own (so the kit can stop a child and whatever it forked by the child's PID) and are only ever
// stopped by that PID. Every wait is bounded.
#include "kit.hpp"
#include "kit_internal.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

extern char** environ;

namespace ota::testkit {
namespace detail {

std::string errno_text(int err) { return std::strerror(err); }

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error("test kit: " + what); }

}  // namespace detail

namespace {

using namespace detail;

// Children must not inherit an ignored SIGPIPE (the kit ignores it so that writing to a child
// that already exited is an error, not the end of the test binary).
void ignore_sigpipe_once() {
    static std::once_flag once;
    std::call_once(once, [] { ::signal(SIGPIPE, SIG_IGN); });
}

int exit_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

}  // namespace

namespace detail {

std::string tail(const std::string& text, std::size_t lines) {
    std::size_t pos = text.size();
    for (std::size_t n = 0; n <= lines && pos > 0; ++n) {
        const auto nl = text.rfind('\n', pos - 1);
        if (nl == std::string::npos) return text;
        pos = nl;
        if (n == lines) return text.substr(pos + 1);
    }
    return text.substr(pos);
}

std::string read_file_or_empty(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// An executable by name: $PATH first, then the sbin directories a non-root PATH may lack.
std::string find_tool(const std::string& name) {
    std::vector<std::string> dirs;
    if (const char* path = std::getenv("PATH")) {
        std::stringstream ss(path);
        for (std::string d; std::getline(ss, d, ':');) dirs.push_back(d.empty() ? "." : d);
    }
    for (const char* d : {"/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/usr/local/bin"}) dirs.emplace_back(d);
    for (const auto& d : dirs) {
        const fs::path p = fs::path(d) / name;
        if (::access(p.c_str(), X_OK) == 0) return p.string();
    }
    fail(name + " not found on PATH or in /usr/sbin (install the Debian package)");
}

}  // namespace detail

namespace {

using namespace detail;

// argv and envp as the C arrays posix_spawn wants; owns the strings.
struct CArgs {
    std::vector<std::string> args, envs;
    std::vector<char*> argv, envp;
    CArgs(const std::vector<std::string>& a, const std::map<std::string, std::string>& extra_env) : args(a) {
        if (args.empty()) fail("empty argv");
        std::map<std::string, std::string> env;
        for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
            const std::string kv(*e);
            const auto eq = kv.find('=');
            if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
        }
        for (const auto& [k, v] : extra_env) env[k] = v;
        for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
        for (auto& s : args) argv.push_back(s.data());
        argv.push_back(nullptr);
        for (auto& s : envs) envp.push_back(s.data());
        envp.push_back(nullptr);
    }
};

// RAII for the posix_spawn attribute objects.
struct SpawnSetup {
    posix_spawn_file_actions_t actions{};
    posix_spawnattr_t attr{};
    SpawnSetup() {
        ignore_sigpipe_once();
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attr);
        // A session (and process group) of its own; default signal handling; nothing blocked.
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
        sigset_t all;
        sigfillset(&all);
        posix_spawnattr_setsigdefault(&attr, &all);
        sigset_t none;
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attr, &none);
    }
    ~SpawnSetup() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
    SpawnSetup(const SpawnSetup&) = delete;
    SpawnSetup& operator=(const SpawnSetup&) = delete;
    // Returns the pid, or -errno.
    int spawn(CArgs& c) {
        pid_t pid = -1;
        const int rc = posix_spawnp(&pid, c.argv[0], &actions, &attr, c.argv.data(), c.envp.data());
        return rc == 0 ? pid : -rc;
    }
};

struct Fd {
    int fd{-1};
    Fd() = default;
    explicit Fd(int f) : fd(f) {}
    ~Fd() { reset(); }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd = std::exchange(o.fd, -1);
        }
        return *this;
    }
    void reset() {
        if (fd >= 0) ::close(fd);
        fd = -1;
    }
};

std::array<Fd, 2> make_pipe() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) fail("pipe2: " + errno_text(errno));
    return {Fd(p[0]), Fd(p[1])};
}

}  // namespace

bool detail::port_accepts(int port, const std::string& host) {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
        ::close(s);
        return false;
    }
    const bool ok = ::connect(s, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    ::close(s);
    return ok;
}

using namespace detail;
using Clock = std::chrono::steady_clock;

fs::path source_dir() { return OTA_SOURCE_DIR; }
fs::path binary_dir() { return OTA_BINARY_DIR; }

// ---- TempDir, ports, waiting, files -------------------------------------------------------------

TempDir::TempDir(std::string_view prefix) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = (fs::path(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") / (std::string(prefix) + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) fail("mkdtemp " + tmpl + ": " + errno_text(errno));
    path_ = tmpl;
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
}

int free_port() {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) fail("socket: " + errno_text(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = 0;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(s, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        const int err = errno;
        ::close(s);
        fail("bind 127.0.0.1:0: " + errno_text(err));
    }
    ::close(s);
    return ntohs(addr.sin_port);
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        if (condition()) return true;
        if (Clock::now() >= deadline) return condition();
        std::this_thread::sleep_for(std::min<Clock::duration>(interval, deadline - Clock::now()));
    }
}

void write_file(const fs::path& path, std::string_view content) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) fail("cannot open " + path.string() + " for writing");
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.close();
    if (!out) fail("cannot write " + path.string());
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("cannot open " + path.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// ---- run ------------------------------------------------------------------------------------

RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
              const std::map<std::string, std::string>& env, const std::optional<std::string>& stdin_data) {
    CArgs c(argv, env);
    auto out = make_pipe();
    auto err = make_pipe();
    std::array<Fd, 2> in;
    SpawnSetup setup;
    if (stdin_data) {
        in = make_pipe();
        posix_spawn_file_actions_adddup2(&setup.actions, in[0].fd, 0);
    } else {
        posix_spawn_file_actions_addopen(&setup.actions, 0, "/dev/null", O_RDONLY, 0);
    }
    posix_spawn_file_actions_adddup2(&setup.actions, out[1].fd, 1);
    posix_spawn_file_actions_adddup2(&setup.actions, err[1].fd, 2);
    const int pid = setup.spawn(c);
    RunResult result;
    if (pid < 0) {
        result.exit_code = 127;
        result.err = "cannot run " + argv[0] + ": " + errno_text(-pid);
        return result;
    }
    out[1].reset();
    err[1].reset();
    in[0].reset();
    if (in[1].fd >= 0) ::fcntl(in[1].fd, F_SETFL, O_NONBLOCK);
    std::size_t written = 0;
    if (stdin_data && stdin_data->empty()) in[1].reset();

    const auto deadline = Clock::now() + timeout;
    bool exited = false;
    int status = 0;
    auto exited_at = Clock::time_point{};
    // Read until both pipes are closed; a child that exited but left a grandchild holding the pipes
    // gets 500 ms more, then we stop reading.
    while (out[0].fd >= 0 || err[0].fd >= 0) {
        const auto now = Clock::now();
        if (now >= deadline) break;
        if (!exited && ::waitpid(pid, &status, WNOHANG) == pid) {
            exited = true;
            exited_at = now;
        }
        if (exited && now - exited_at > 500ms) break;
        std::vector<pollfd> fds;
        for (const auto* f : {&out[0], &err[0]})
            if (f->fd >= 0) fds.push_back({f->fd, POLLIN, 0});
        if (in[1].fd >= 0) fds.push_back({in[1].fd, POLLOUT, 0});
        const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
        const int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::clamp<long long>(wait, 0, 50)));
        if (n < 0 && errno != EINTR) fail("poll: " + errno_text(errno));
        for (const auto& p : fds) {
            if (p.revents == 0) continue;
            if (p.fd == in[1].fd) {
                const auto k = ::write(p.fd, stdin_data->data() + written, stdin_data->size() - written);
                if (k > 0) written += static_cast<std::size_t>(k);
                if (k < 0 && errno != EAGAIN && errno != EINTR) in[1].reset();  // EPIPE: child closed stdin
                if (written == stdin_data->size()) in[1].reset();
                continue;
            }
            char buf[65536];
            const auto k = ::read(p.fd, buf, sizeof buf);
            auto& target = p.fd == out[0].fd ? result.out : result.err;
            if (k > 0) {
                target.append(buf, static_cast<std::size_t>(k));
            } else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
                (p.fd == out[0].fd ? out[0] : err[0]).reset();
            }
        }
    }
    in[1].reset();
    // Pipes closed (the child is exiting) or time is up: collect it, bounded by the deadline.
    while (!exited && Clock::now() < deadline) {
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            exited = true;
            break;
        }
        std::this_thread::sleep_for(2ms);
    }
    if (!exited) {
        ::kill(-pid, SIGKILL);  // the child's own process group: the child and what it forked
        ::waitpid(pid, &status, 0);
        result.exit_code = -1;
        result.err += "\n[test kit: " + argv[0] + " killed after " + std::to_string(timeout.count()) + " ms]";
        return result;
    }
    result.exit_code = exit_status(status);
    return result;
}

// ---- Process --------------------------------------------------------------------------------

Process::Process(const std::vector<std::string>& argv, const fs::path& log_file,
                 const std::map<std::string, std::string>& env)
    : log_file_(log_file) {
    CArgs c(argv, env);
    SpawnSetup setup;
    posix_spawn_file_actions_addopen(&setup.actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&setup.actions, 1, log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&setup.actions, 1, 2);
    const int pid = setup.spawn(c);
    if (pid < 0) fail("cannot start " + argv[0] + ": " + errno_text(-pid));
    pid_ = pid;
}

Process::~Process() {
    try {
        stop(2s);
    } catch (...) {  // a destructor must not throw; the process was killed or is gone
    }
}

bool Process::running() {
    if (exited_ || pid_ < 0) return false;
    // WNOWAIT: leave the zombie, so its PID (and process group id) cannot be reused before reap().
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        exited_ = true;  // ECHILD: nothing left to wait for
        reaped_ = true;
        return false;
    }
    if (info.si_pid != pid_) return true;
    exited_ = true;
    status_ = info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
    return false;
}

void Process::reap() {
    if (reaped_ || !exited_) return;
    ::kill(-pid_, SIGKILL);  // whatever the child forked into its group and left behind
    int status = 0;
    ::waitpid(pid_, &status, 0);  // the zombie: returns at once
    reaped_ = true;
}

void Process::kill(int signal) {
    if (!running()) return;
    ::kill(pid_, signal);
    // Bounded, since a handled signal may not end it.
    wait_until([this] { return !running(); }, 5s, 5ms);
}

int Process::stop(std::chrono::milliseconds grace) {
    if (running()) {
        ::kill(pid_, SIGTERM);
        if (!wait_until([this] { return !running(); }, grace, 5ms)) {
            ::kill(-pid_, SIGKILL);
            wait_until([this] { return !running(); }, 10s, 5ms);
        }
    }
    reap();
    return exited_ ? status_ : -1;
}

std::string Process::log() const { return read_file_or_empty(log_file_); }

}  // namespace ota::testkit
