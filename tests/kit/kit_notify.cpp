#include "kit_notify.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <sstream>
#include <stdexcept>

namespace ota::testkit {

NotifySocket::NotifySocket(const std::filesystem::path& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error(std::string("NotifySocket: socket: ") + std::strerror(errno));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const auto p = path_.string();
    if (p.size() >= sizeof addr.sun_path) throw std::runtime_error("NotifySocket: path too long: " + p);
    std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
    std::filesystem::remove(path_);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        throw std::runtime_error("NotifySocket: bind " + p + ": " + std::strerror(errno));
    reader_ = std::thread([this] { loop(); });
}

NotifySocket::~NotifySocket() {
    stop_ = true;
    if (reader_.joinable()) reader_.join();
    ::close(fd_);
    std::error_code ec;
    std::filesystem::remove(path_, ec);
}

void NotifySocket::loop() {
    char buf[4096];
    while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        const auto n = ::recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) continue;
        std::lock_guard lock(mu_);
        got_.push_back({std::chrono::steady_clock::now(), std::string(buf, static_cast<std::size_t>(n))});
    }
}

std::map<std::string, std::string> NotifySocket::env(std::optional<std::chrono::microseconds> watchdog) const {
    std::map<std::string, std::string> e{{"NOTIFY_SOCKET", path_.string()}};
    if (watchdog) e["WATCHDOG_USEC"] = std::to_string(watchdog->count());
    return e;
}

std::vector<NotifySocket::Datagram> NotifySocket::datagrams() const {
    std::lock_guard lock(mu_);
    return got_;
}

namespace {
bool holds(const std::string& text, const std::string& line, bool prefix) {
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);)
        if (prefix ? l.rfind(line, 0) == 0 : l == line) return true;
    return false;
}
}  // namespace

std::vector<NotifySocket::Datagram> NotifySocket::with(const std::string& line, bool prefix) const {
    std::vector<Datagram> out;
    for (auto& d : datagrams())
        if (holds(d.text, line, prefix)) out.push_back(d);
    return out;
}

std::optional<std::string> NotifySocket::wait_line(const std::string& prefix, std::chrono::milliseconds timeout) const {
    const auto until = std::chrono::steady_clock::now() + timeout;
    do {
        for (auto& d : datagrams()) {
            std::istringstream in(d.text);
            for (std::string l; std::getline(in, l);)
                if (l.rfind(prefix, 0) == 0) return l;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (std::chrono::steady_clock::now() < until);
    return std::nullopt;
}

}  // namespace ota::testkit
