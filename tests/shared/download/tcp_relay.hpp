// A test-only TCP relay on loopback in front of the kit's nginx: the flaky link of a device
// behind NAT, made deterministic. It forwards bytes both ways (TLS passes through untouched: the
// client still verifies nginx's certificate, whose SAN has 127.0.0.1) and, per connection, can
//   - cut the connection (close both sides) after `cut_after` bytes from the server, like a link
//     that drops every N bytes;
//   - blackhole it after `blackhole_after` bytes: stop forwarding and reading in both directions
//     but keep both sockets open, like a NAT gateway that lost its mapping (no RST, no FIN).
//     Later connections are forwarded normally (the gateway maps them afresh). blackhole_current()
//     does the same at once to every connection open at that moment.
// Counts connections and the bytes sent to the client. One thread per connection, poll() with a
// short timeout so the destructor can stop them; everything is bound to 127.0.0.1.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace ota::testkit {

class TcpRelay {
public:
    struct Options {
        int upstream_port{0};
        std::uint64_t cut_after{0};        // 0: never cut
        std::uint64_t blackhole_after{0};  // 0: never blackhole
        int blackhole_connections{1};      // how many connections (the first ones) are blackholed
    };

    explicit TcpRelay(Options o) : opt_(o) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listen_fd_ < 0) throw std::runtime_error("relay: socket failed");
        const int one = 1;
        ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 16) != 0)
            throw std::runtime_error("relay: bind/listen failed");
        socklen_t len = sizeof a;
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }
    ~TcpRelay() {
        stop_ = true;
        acceptor_.join();
        std::vector<std::thread> ts;
        {
            std::lock_guard lock(mu_);
            ts.swap(threads_);
        }
        for (auto& t : ts) t.join();
        ::close(listen_fd_);
    }
    TcpRelay(const TcpRelay&) = delete;
    TcpRelay& operator=(const TcpRelay&) = delete;

    // Every connection open now goes silent (as above); later ones are forwarded.
    void blackhole_current() { hold_below_ = connections_.load(); }

    [[nodiscard]] int port() const { return port_; }
    [[nodiscard]] int connections() const { return connections_.load(); }
    [[nodiscard]] int blackholed() const { return blackholed_.load(); }
    [[nodiscard]] std::uint64_t bytes_to_client() const { return to_client_.load(); }

private:
    void accept_loop() {
        while (!stop_) {
            pollfd p{listen_fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (client < 0) continue;
            const int index = connections_++;
            std::lock_guard lock(mu_);
            threads_.emplace_back([this, client, index] { relay(client, index); });
        }
    }

    void relay(int client, int index) {
        const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<std::uint16_t>(opt_.upstream_port));
        if (server < 0 || ::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            if (server >= 0) ::close(server);
            ::close(client);
            return;
        }
        const bool may_blackhole = opt_.blackhole_after > 0 && index < opt_.blackhole_connections;
        std::uint64_t sent = 0;  // server -> client on this connection
        bool holding = false;
        char buf[16384];
        while (!stop_) {
            if (!holding && index < hold_below_.load()) {
                holding = true;
                ++blackholed_;
            }
            if (holding) {  // a dead mapping: nothing moves, nothing is closed
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
                continue;
            }
            pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
            if (::poll(p, 2, 50) <= 0) continue;
            if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                const auto n = ::recv(client, buf, sizeof buf, 0);
                if (n <= 0 || !send_all(server, buf, static_cast<std::size_t>(n))) break;
            }
            if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
                std::size_t want = sizeof buf;
                if (opt_.cut_after > 0) want = std::min<std::uint64_t>(want, opt_.cut_after - sent);
                if (may_blackhole) want = std::min<std::uint64_t>(want, opt_.blackhole_after - sent);
                const auto n = ::recv(server, buf, want, 0);
                if (n <= 0 || !send_all(client, buf, static_cast<std::size_t>(n))) break;
                sent += static_cast<std::uint64_t>(n);
                to_client_ += static_cast<std::uint64_t>(n);
                if (opt_.cut_after > 0 && sent >= opt_.cut_after) break;
                if (may_blackhole && sent >= opt_.blackhole_after) {
                    holding = true;
                    ++blackholed_;
                }
            }
        }
        ::close(server);
        ::close(client);
    }

    static bool send_all(int fd, const char* data, std::size_t n) {
        while (n > 0) {
            const auto w = ::send(fd, data, n, MSG_NOSIGNAL);
            if (w <= 0) return false;
            data += w;
            n -= static_cast<std::size_t>(w);
        }
        return true;
    }

    Options opt_;
    int listen_fd_{-1};
    int port_{0};
    std::atomic<bool> stop_{false};
    std::atomic<int> connections_{0};
    std::atomic<int> blackholed_{0};
    std::atomic<int> hold_below_{0};
    std::atomic<std::uint64_t> to_client_{0};
    std::mutex mu_;
    std::vector<std::thread> threads_;
    std::thread acceptor_;
};

}  // namespace ota::testkit
