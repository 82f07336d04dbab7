// A stand-in for systemd's notification socket (a fake: systemd cannot run as PID 1 here, so
// the daemons' sd_notify side is tested against this). It binds an AF_UNIX datagram socket, as
// systemd does for a Type=notify service, and records every datagram with the time it came.
// Give a daemon env() (NOTIFY_SOCKET, and WATCHDOG_USEC as WatchdogSec= would set it).
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace ota::testkit {

class NotifySocket {
public:
    struct Datagram {
        std::chrono::steady_clock::time_point at;
        std::string text;  // e.g. "READY=1\nSTATUS=connected; ..."
    };
    explicit NotifySocket(const std::filesystem::path& path);
    ~NotifySocket();
    NotifySocket(const NotifySocket&) = delete;
    NotifySocket& operator=(const NotifySocket&) = delete;

    // NOTIFY_SOCKET=<path>, and WATCHDOG_USEC when a watchdog interval is given.
    [[nodiscard]] std::map<std::string, std::string> env(std::optional<std::chrono::microseconds> watchdog = std::nullopt) const;
    [[nodiscard]] std::vector<Datagram> datagrams() const;
    // The datagrams holding `line` as one of their lines (e.g. "READY=1", "WATCHDOG=1"), or
    // starting with it when it ends with '=' or a prefix is asked ("STATUS=").
    [[nodiscard]] std::vector<Datagram> with(const std::string& line, bool prefix = false) const;
    // Waits (bounded) until a datagram holds a line starting with `prefix`; returns that line.
    [[nodiscard]] std::optional<std::string> wait_line(const std::string& prefix, std::chrono::milliseconds timeout) const;

private:
    void loop();
    std::filesystem::path path_;
    int fd_{-1};
    std::atomic<bool> stop_{false};
    mutable std::mutex mu_;
    std::vector<Datagram> got_;
    std::thread reader_;
};

}  // namespace ota::testkit
