#include "diagnose.hpp"

#include <mqtt/async_client.h>

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace ota::mqtt::detail {

namespace paho = ::mqtt;

namespace {

std::string hex_code(int code) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02X", static_cast<unsigned>(code) & 0xFFu);
    return buf;
}

}  // namespace

std::string ms_text(std::chrono::milliseconds d) {
    if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
    return std::to_string(d.count()) + "ms";
}

std::string reason_text(int code) {
    std::string name = paho::exception::reason_code_str(code);
    if (name.empty()) name = "reason code";
    return name + " (" + hex_code(code) + ")";
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

// Diagnose a connection failure paho reports only as "TCP/TLS connect failure": open a plain
// TCP connection to the broker's address ourselves. Returns a readable cause.
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

std::string paho_text(const paho::exception& e) {
    std::string msg = e.get_message();
    if (msg.empty()) msg = e.get_error_str();
    return "paho " + std::to_string(e.get_return_code()) + ": " + msg;
}

std::string operation_cause(const paho::exception& e) {
    int rc = e.get_return_code();
    int reason = static_cast<int>(e.get_reason_code());
    if (reason >= 0x80) return "the broker answered " + reason_text(reason);
    switch (rc) {
        case MQTTASYNC_DISCONNECTED: return "not connected";
        case MQTTASYNC_MAX_BUFFERED_MESSAGES:
            return "too many messages buffered or awaiting acknowledgement (raise Options::max_buffered)";
        case MQTTASYNC_BAD_UTF8_STRING: return "the topic is not valid UTF-8";
        case MQTTASYNC_NULL_PARAMETER: return "empty topic";
        case MQTTASYNC_TOPICNAME_TRUNCATED: return "the topic contains a NUL character";
        case MQTTASYNC_BAD_QOS: return "QoS must be 0, 1 or 2";
        case MQTTASYNC_OPERATION_INCOMPLETE: return "the connection was lost before the broker answered";
        default: return paho_text(e);
    }
}

std::string read_problem(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::strerror(errno);
    ::close(fd);
    return {};
}

}  // namespace ota::mqtt::detail
