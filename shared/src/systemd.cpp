#include "ota/systemd.hpp"

#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace ota::systemd {
namespace {

using Clock = std::chrono::steady_clock;

struct State {
    bool notify = std::getenv("NOTIFY_SOCKET") != nullptr;
    std::optional<std::chrono::microseconds> interval;
    std::atomic<std::int64_t> last_ping{0};  // Clock ticks
    std::mutex mutex;
    std::string last_status;

    State() {
        std::uint64_t usec = 0;
        // 0: WATCHDOG_USEC is kept in the environment for children (the agent's launcher passes
        // it on); WATCHDOG_PID, when set, must be this process.
        if (notify && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) interval = std::chrono::microseconds(usec);
    }
};

State& state() {
    static State s;
    return s;
}

void send(const std::string& text) {
    // A manager that went away (or a wrong socket) must not stop the daemon: the result is ignored.
    (void)sd_notify(0, text.c_str());
}

}  // namespace

void ready(std::string_view status_line) {
    auto& s = state();
    if (!s.notify) return;
    {
        std::lock_guard lock(s.mutex);
        s.last_status = status_line;
    }
    send("READY=1\nSTATUS=" + std::string(status_line));
    s.last_ping = Clock::now().time_since_epoch().count();
}

void status(std::string_view status_line) {
    auto& s = state();
    if (!s.notify) return;
    {
        std::lock_guard lock(s.mutex);
        if (s.last_status == status_line) return;
        s.last_status = status_line;
    }
    send("STATUS=" + std::string(status_line));
}

void stopping() {
    if (state().notify) send("STOPPING=1");
}

std::optional<std::chrono::microseconds> watchdog_interval() { return state().interval; }

void alive() {
    auto& s = state();
    if (!s.interval) return;
    const auto now = Clock::now().time_since_epoch().count();
    const auto quarter = std::chrono::duration_cast<Clock::duration>(*s.interval / 4).count();
    auto last = s.last_ping.load(std::memory_order_relaxed);
    if (now - last < quarter) return;
    if (!s.last_ping.compare_exchange_strong(last, now)) return;  // another thread just pinged
    send("WATCHDOG=1");
}

bool stderr_is_journal() {
    const char* js = std::getenv("JOURNAL_STREAM");
    if (!js) return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
    struct stat st {};
    if (fstat(STDERR_FILENO, &st) != 0) return false;
    return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

}  // namespace ota::systemd
