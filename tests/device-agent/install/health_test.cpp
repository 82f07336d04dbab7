// Health checks: a command (exit status, timeout with the process group killed, retries, env)
// and an http:// URL against a tiny loopback server in this test (200, 503, no answer) or a
// port nothing listens on.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "install/command.hpp"
#include "install/health.hpp"
#include "kit.hpp"

namespace ota::agent {
namespace {

namespace kit = ota::testkit;
using namespace std::chrono_literals;

HealthCheck command(std::vector<std::string> argv, std::chrono::milliseconds timeout = 5s, int retries = 0) {
    HealthCheck c;
    c.command = std::move(argv);
    c.timeout = timeout;
    c.retries = retries;
    c.interval = 10ms;
    return c;
}

TEST(HealthCommand, ExitZeroIsHealthy) { EXPECT_TRUE(run_health_check(command({"sh", "-c", "exit 0"}))); }

TEST(HealthCommand, NoCheckConfiguredIsHealthy) { EXPECT_TRUE(run_health_check(HealthCheck{})); }

TEST(HealthCommand, ExitOneNamesTheCommandStatusAndStderr) {
    auto r = run_health_check(command({"sh", "-c", "echo starting; echo 'model not loaded' >&2; exit 1"}, 5s, 1));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::health_check_failed);
    EXPECT_EQ(r.error().message,
              "health check command `sh -c 'echo starting; echo '\\''model not loaded'\\'' >&2; exit 1'`: "
              "exit status 1: model not loaded (2 attempts)");
}

TEST(HealthCommand, TimeoutKillsTheProcessGroup) {
    kit::TempDir tmp("ota-health");
    const auto pidfile = tmp / "child.pid";
    const auto start = std::chrono::steady_clock::now();
    auto r = run_health_check(command({"sh", "-c", "sleep 30 & echo $! > " + pidfile.string() + "; wait"}, 300ms));
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("timed out after 300 ms (1 attempt)"), std::string::npos) << r.error().message;
    EXPECT_LT(took, 3s);
    const int child = std::stoi(kit::read_file(pidfile));
    // The background sleep was in the command's process group: gone (or a zombie awaiting its reaper).
    EXPECT_TRUE(kit::wait_until([&] {
        if (::kill(child, 0) != 0) return true;
        const auto stat = kit::read_file("/proc/" + std::to_string(child) + "/stat");
        return stat.find(") Z ") != std::string::npos;
    }, 3s));
}

TEST(HealthCommand, RetriesUntilHealthy) {
    kit::TempDir tmp("ota-health");
    const auto flag = tmp / "second-time";
    const std::vector<std::string> argv{"sh", "-c", "test -e \"$1\" && exit 0; touch \"$1\"; exit 3", "sh", flag.string()};
    EXPECT_TRUE(run_health_check(command(argv, 5s, 1)));
    std::filesystem::remove(flag);
    auto r = run_health_check(command(argv, 5s, 0));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("exit status 3"), std::string::npos) << r.error().message;
}

TEST(HealthCommand, EnvironmentIsAdded) {
    auto c = command({"sh", "-c", "test \"$OTA_COMPONENT/$OTA_VERSION\" = detection-model/2026-03-10"});
    c.env = {{"OTA_COMPONENT", "detection-model"}, {"OTA_VERSION", "2026-03-10"}};
    EXPECT_TRUE(run_health_check(c));
}

TEST(HealthCommand, MissingProgramIsReported) {
    auto r = run_health_check(command({"/nonexistent/check"}));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("/nonexistent/check"), std::string::npos) << r.error().message;
}

TEST(RunCommand, CapturesOutputAndExitStatus) {
    const auto r = run_command({"sh", "-c", "echo out; echo err >&2; exit 7"}, {{"X", "1"}}, 5s);
    EXPECT_TRUE(r.started);
    EXPECT_EQ(r.exit_code, 7);
    EXPECT_EQ(r.out, "out\n");
    EXPECT_EQ(r.err, "err\n");
    EXPECT_EQ(describe_failure(r, 5s), "exit status 7: err");
    EXPECT_EQ(split_command("  docker   compose "), (std::vector<std::string>{"docker", "compose"}));
}

// A loopback HTTP server answering every request with `status` (or never, when status is 0).
class TinyHttp {
public:
    explicit TinyHttp(int status) : status_(status) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        const int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0)
            throw std::runtime_error("TinyHttp: bind/listen failed");
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~TinyHttp() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }
    TinyHttp(const TinyHttp&) = delete;
    TinyHttp& operator=(const TinyHttp&) = delete;
    [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/healthz"; }
    [[nodiscard]] int requests() const { return requests_; }

private:
    void serve() {
        std::vector<int> open;
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) continue;
            const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            ++requests_;
            char buf[4096];
            (void)::recv(c, buf, sizeof buf, 0);
            if (status_ == 0) {
                open.push_back(c);  // never answer
                continue;
            }
            const std::string body = "status " + std::to_string(status_) + "\n";
            const std::string resp = "HTTP/1.1 " + std::to_string(status_) + " Whatever\r\nContent-Length: " +
                                     std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
            (void)::send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
            ::close(c);
        }
        for (const int c : open) ::close(c);
    }
    int status_;
    int fd_{-1};
    int port_{0};
    std::atomic<bool> stop_{false};
    std::atomic<int> requests_{0};
    std::thread thread_;
};

HealthCheck url(const std::string& u, std::chrono::milliseconds timeout = 3s, int retries = 0) {
    HealthCheck c;
    c.url = u;
    c.timeout = timeout;
    c.retries = retries;
    c.interval = 10ms;
    return c;
}

TEST(HealthUrl, Http200IsHealthy) {
    TinyHttp server(200);
    EXPECT_TRUE(run_health_check(url(server.url())));
    TinyHttp no_content(204);
    EXPECT_TRUE(run_health_check(url(no_content.url())));
}

TEST(HealthUrl, Http503IsUnhealthyAfterTheRetries) {
    TinyHttp server(503);
    auto r = run_health_check(url(server.url(), 3s, 2));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::health_check_failed);
    EXPECT_EQ(r.error().message, "health check GET " + server.url() + ": HTTP 503 (3 attempts)");
    EXPECT_EQ(server.requests(), 3);
}

TEST(HealthUrl, NoAnswerTimesOut) {
    TinyHttp server(0);
    auto r = run_health_check(url(server.url(), 300ms));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("timed out after 300 ms"), std::string::npos) << r.error().message;
}

TEST(HealthUrl, UnreachablePortIsUnhealthy) {
    const auto u = "http://127.0.0.1:" + std::to_string(kit::free_port()) + "/healthz";
    auto r = run_health_check(url(u));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("health check GET " + u + ": "), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("onnect"), std::string::npos) << r.error().message;
}

TEST(HealthUrl, OnlyHttpAndHttps) {
    auto r = run_health_check(url("file:///etc/passwd"));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("not an http:// or https:// URL"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace ota::agent
