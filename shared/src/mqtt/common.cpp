// The MQTT clients' common helpers (shared/src/mqtt.cpp over paho, shared/src/mqtt_mosquitto.cpp
// over libmosquitto): broker URLs, a plain TCP probe of the broker, readable file problems.
#include "common.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

namespace ota::mqtt::detail {

std::string hex_code(int code) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02X", static_cast<unsigned>(code) & 0xFFu);
    return buf;
}

std::string ms_text(std::chrono::milliseconds d) {
    if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
    return std::to_string(d.count()) + "ms";
}

bool is_tls_uri(std::string_view uri) {
    return uri.starts_with("mqtts://") || uri.starts_with("ssl://");
}

bool split_uri(std::string_view uri, std::string& host, std::string& port) {
    auto scheme_end = uri.find("://");
    if (scheme_end == std::string_view::npos) return false;
    std::string_view rest = uri.substr(scheme_end + 3);
    rest = rest.substr(0, rest.find('/'));
    if (rest.empty()) return false;
    std::string_view h;
    std::string_view p;
    if (rest.front() == '[') {
        auto close = rest.find(']');
        if (close == std::string_view::npos) return false;
        h = rest.substr(1, close - 1);
        if (close + 1 < rest.size() && rest[close + 1] == ':') p = rest.substr(close + 2);
    } else {
        auto colon = rest.rfind(':');
        h = rest.substr(0, colon);
        if (colon != std::string_view::npos) p = rest.substr(colon + 1);
    }
    host = std::string(h);
    port = p.empty() ? (is_tls_uri(uri) ? "8883" : "1883") : std::string(p);
    return !host.empty();
}

// Diagnose a connection failure the client library reports only as "connect failure": open a
// plain TCP connection to the broker's address ourselves. Returns a readable cause.
std::string probe_tcp(const std::string& uri) {
    std::string host;
    std::string port;
    if (!split_uri(uri, host, port)) return "the broker URL is not of the form scheme://host:port";
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
        return "cannot resolve host '" + host + "': " + ::gai_strerror(rc);
    }
    std::string cause = "no address for '" + host + "'";
    for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
        int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            cause = std::string("socket(): ") + std::strerror(errno);
            continue;
        }
        int err = 0;
        if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            err = errno;
            if (err == EINPROGRESS) {
                pollfd pfd{fd, POLLOUT, 0};
                int n = ::poll(&pfd, 1, 1000);
                if (n == 0) {
                    err = ETIMEDOUT;
                } else {
                    socklen_t len = sizeof err;
                    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
                }
            }
        }
        ::close(fd);
        if (err == 0) {
            ::freeaddrinfo(found);
            return {};  // TCP works: the failure is in the TLS or MQTT handshake
        }
        if (err == ECONNREFUSED) {
            cause = "connection refused (is the broker running and listening on port " + port + "?)";
        } else if (err == ETIMEDOUT) {
            cause = "no answer from " + host + ":" + port + " (host unreachable or port filtered)";
        } else {
            cause = std::string("TCP connection failed: ") + std::strerror(err);
        }
    }
    ::freeaddrinfo(found);
    return cause;
}

std::string read_problem(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::strerror(errno);
    ::close(fd);
    return {};
}

std::string tls_files_problem(const std::string& cafile, const std::string& certfile, const std::string& keyfile) {
    const std::pair<const char*, const std::string*> files[] = {
        {"CA file", &cafile}, {"client certificate", &certfile}, {"private key", &keyfile}};
    for (const auto& [what, path] : files) {
        if (path->empty()) continue;
        if (auto problem = read_problem(*path); !problem.empty())
            return std::string("cannot read the ") + what + " '" + *path + "': " + problem;
    }
    return {};
}

}  // namespace ota::mqtt::detail
