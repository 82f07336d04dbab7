// Network namespaces for NAT tests (kit_net.hpp), set up with ip(8), tc(8) and iptables(8).
#include "kit_net.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "kit_internal.hpp"

namespace ota::testkit {

using namespace detail;

namespace {

// Run a command (bounded); throws naming it and its output when it fails.
void must(const std::vector<std::string>& argv) {
    auto r = run(argv, 10s);
    if (r.exit_code != 0) {
        std::string cmd;
        for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
        fail("`" + cmd + "` failed (exit " + std::to_string(r.exit_code) + "): " + r.err + r.out);
    }
}

// A lock held while a NatSite picks its index and creates its interfaces, so that parallel test
// processes never pick the same one.
class IndexLock {
public:
    IndexLock() {
        fd_ = ::open("/run/lock/ota-testkit-netns.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd_ < 0) fd_ = ::open("/tmp/ota-testkit-netns.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd_ < 0) fail("netns lock: " + errno_text(errno));
        // Bounded: another test holds it only while it runs a dozen ip commands.
        if (!wait_until([this] { return ::flock(fd_, LOCK_EX | LOCK_NB) == 0; }, 60s, 20ms)) {
            ::close(fd_);
            fail("netns lock: held by another test for 60 s");
        }
    }
    ~IndexLock() { ::close(fd_); }
    IndexLock(const IndexLock&) = delete;
    IndexLock& operator=(const IndexLock&) = delete;

private:
    int fd_{-1};
};

bool netns_exists(const std::string& name) { return fs::exists(fs::path("/run/netns") / name); }
bool link_exists(const std::string& name) { return fs::exists(fs::path("/sys/class/net") / name); }

}  // namespace

std::optional<std::string> netns_unavailable() {
    if (::geteuid() != 0) return "network namespace tests need root (ip netns, iptables); run as root";
    return std::nullopt;
}

NatSite::NatSite() {
    if (auto why = netns_unavailable()) fail(*why);
    // As root a missing tool is a failure, not a reason to skip (CI runs as root).
    for (const char* tool : {"iptables", "tc", "sysctl"}) (void)find_tool(tool);
    const std::string ip = find_tool("ip");
    IndexLock lock;
    // Indexes 1..250; start from the PID so that parallel runs rarely even have to look further.
    const int start = static_cast<int>(::getpid() % 250);
    for (int i = 0; i < 250 && index_ == 0; ++i) {
        const int n = (start + i) % 250 + 1;
        const std::string base = "ota" + std::to_string(n);
        if (!netns_exists(base + "r") && !netns_exists(base + "s") && !link_exists(base + "c")) index_ = n;
    }
    if (index_ == 0) fail("no free netns index (250 NatSites exist: leftovers? `ip netns list`)");
    const std::string base = "ota" + std::to_string(index_);
    const std::string n = std::to_string(index_);
    router_ns_ = base + "r";
    site_ns_ = base + "s";
    cloud_if_ = base + "c";
    wan_if_ = base + "w";
    lan_if_ = base + "l";
    dev_if_ = base + "d";
    cloud_ = "10.78." + n + ".1";
    wan_ = "10.78." + n + ".2";
    gateway_ = "10.77." + n + ".1";
    site_host_ = "10.77." + n + ".2";
    site_net_ = "10.77." + n + ".0/24";
    try {
        must({ip, "netns", "add", router_ns_});
        must({ip, "netns", "add", site_ns_});
        must({ip, "link", "add", "name", cloud_if_, "type", "veth", "peer", "name", wan_if_, "netns", router_ns_});
        must({ip, "link", "add", "name", lan_if_, "netns", router_ns_, "type", "veth", "peer", "name", dev_if_, "netns", site_ns_});
        must({ip, "addr", "add", cloud_ + "/30", "dev", cloud_if_});
        must({ip, "link", "set", cloud_if_, "up"});
        must({ip, "-n", router_ns_, "link", "set", "lo", "up"});
        must({ip, "-n", router_ns_, "addr", "add", wan_ + "/30", "dev", wan_if_});
        must({ip, "-n", router_ns_, "link", "set", wan_if_, "up"});
        must({ip, "-n", router_ns_, "addr", "add", gateway_ + "/24", "dev", lan_if_});
        must({ip, "-n", router_ns_, "link", "set", lan_if_, "up"});
        must({ip, "-n", site_ns_, "link", "set", "lo", "up"});
        must({ip, "-n", site_ns_, "addr", "add", site_host_ + "/24", "dev", dev_if_});
        must({ip, "-n", site_ns_, "link", "set", dev_if_, "up"});
        must({ip, "-n", site_ns_, "route", "add", "default", "via", gateway_});
        // The cloud can route to the site network: inbound attempts reach the router, which drops them.
        must({ip, "route", "add", site_net_, "via", wan_, "dev", cloud_if_});
        in_router({"sysctl", "-qw", "net.ipv4.ip_forward=1"});
        in_router({"iptables", "-t", "nat", "-A", "POSTROUTING", "-s", site_net_, "-o", wan_if_, "-j", "MASQUERADE"});
        in_router({"iptables", "-N", "OTA_LOSS"});
        in_router({"iptables", "-P", "FORWARD", "DROP"});
        in_router({"iptables", "-A", "FORWARD", "-j", "OTA_LOSS"});
        in_router({"iptables", "-A", "FORWARD", "-i", lan_if_, "-o", wan_if_, "-j", "ACCEPT"});
        in_router({"iptables", "-A", "FORWARD", "-i", wan_if_, "-o", lan_if_, "-m", "conntrack", "--ctstate",
                   "ESTABLISHED,RELATED", "-j", "ACCEPT"});
    } catch (...) {
        teardown();
        throw;
    }
}

NatSite::~NatSite() { teardown(); }

void NatSite::teardown() noexcept {
    for (int fd : fds_) ::close(fd);
    fds_.clear();
    try {
        const std::string ip = find_tool("ip");
        // Deleting a namespace deletes its interfaces, their veth peers (the cloud end with its
        // route), qdiscs and iptables rules.
        for (const auto& ns : {site_ns_, router_ns_})
            if (!ns.empty() && netns_exists(ns)) (void)run({ip, "netns", "del", ns}, 10s);
        if (!cloud_if_.empty() && link_exists(cloud_if_)) (void)run({ip, "link", "del", cloud_if_}, 10s);
    } catch (...) {  // a destructor must not throw; what is left is named by `ip netns list`
    }
}

std::vector<std::string> NatSite::in_site(const std::vector<std::string>& argv) const {
    std::vector<std::string> a{find_tool("ip"), "netns", "exec", site_ns_};
    a.insert(a.end(), argv.begin(), argv.end());
    return a;
}

void NatSite::in_router(const std::vector<std::string>& argv) const {
    std::vector<std::string> a{find_tool("ip"), "netns", "exec", router_ns_};
    a.insert(a.end(), argv.begin(), argv.end());
    must(a);
}

void NatSite::set_uplink(bool up) { must({find_tool("ip"), "-n", router_ns_, "link", "set", wan_if_, up ? "up" : "down"}); }

void NatSite::set_rate_kbit(int kbit) {
    for (const auto& dev : {wan_if_, lan_if_}) {
        if (kbit <= 0) {
            (void)run({find_tool("ip"), "netns", "exec", router_ns_, "tc", "qdisc", "del", "dev", dev, "root"}, 10s);
            continue;
        }
        // burst: at least rate/HZ and a few packets; latency bounds the queue (dropped beyond it).
        in_router({"tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", std::to_string(kbit) + "kbit", "burst",
                   "32kb", "latency", "400ms"});
    }
}

void NatSite::set_loss(double probability) {
    in_router({"iptables", "-F", "OTA_LOSS"});
    if (probability <= 0) return;
    char p[32];
    std::snprintf(p, sizeof p, "%.4f", probability);
    in_router({"iptables", "-A", "OTA_LOSS", "-m", "statistic", "--mode", "random", "--probability", p, "-j", "DROP"});
}

int NatSite::listen_in_site() {
    int fd = -1, port = 0;
    std::string error;
    // setns() moves only the calling thread: a thread of its own enters the site, makes the
    // socket (which stays in that namespace) and ends.
    std::thread t([&] {
        const int ns = ::open(("/run/netns/" + site_ns_).c_str(), O_RDONLY | O_CLOEXEC);
        if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) {
            error = "enter netns " + site_ns_ + ": " + errno_text(errno);
            if (ns >= 0) ::close(ns);
            return;
        }
        ::close(ns);
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        ::inet_pton(AF_INET, site_host_.c_str(), &addr.sin_addr);
        socklen_t len = sizeof addr;
        if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 8) != 0 ||
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            error = "listen in " + site_ns_ + ": " + errno_text(errno);
            return;
        }
        port = ntohs(addr.sin_port);
    });
    t.join();
    if (!error.empty()) {
        if (fd >= 0) ::close(fd);
        fail(error);
    }
    fds_.push_back(fd);
    return port;
}

bool NatSite::connect_from_cloud(int port, std::chrono::milliseconds timeout) const {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, site_host_.c_str(), &addr.sin_addr);
    bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (!ok && errno == EINPROGRESS) {
        pollfd p{s, POLLOUT, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
            int err = 0;
            socklen_t len = sizeof err;
            ok = ::getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
        }
    }
    ::close(s);
    return ok;
}

}  // namespace ota::testkit
