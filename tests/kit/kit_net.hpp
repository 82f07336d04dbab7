// Network namespaces for tests of devices behind a NAT, on a bad network (root only).
//
//   root namespace ("cloud")             router namespace                 site namespace
//   broker, nginx, controller  ──veth──  <wan> NAT (MASQUERADE) <lan>  ──veth──  agents
//   10.78.N.1/30                         10.78.N.2/30   10.77.N.1/24              10.77.N.2/24
//
// Agents run in the site namespace (NatSite::in_site) and reach the cloud address only through
// the router, which masquerades the site's connections and drops new inbound ones (the root
// namespace even has a route to the site network, so inbound attempts reach the router and are
// dropped there, as on a real NAT). Faults are applied at the router: the uplink down/up, a rate
// limit (tc tbf) and random loss (iptables -m statistic). N is chosen under a lock so that
// parallel test processes get distinct names and addresses; the destructor deletes both
// namespaces, which removes the veth pairs, the route, the qdiscs and every iptables rule with
// them. Stop the processes started in the site namespace before the NatSite goes away.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "kit.hpp"

namespace ota::testkit {

// Why network-namespace tests cannot run here (not root), or nullopt. As root, a missing tool
// (ip, iptables, tc: Debian's iproute2 and iptables) makes NatSite's constructor fail instead.
[[nodiscard]] std::optional<std::string> netns_unavailable();

class NatSite {
public:
    NatSite();  // throws std::runtime_error naming the command that failed (and undoes the rest)
    ~NatSite();
    NatSite(const NatSite&) = delete;
    NatSite& operator=(const NatSite&) = delete;

    // The root namespace's end of the uplink: bind the broker and nginx here (and put it in their
    // certificates: PkiOptions::sans "IP:<cloud_address>").
    [[nodiscard]] const std::string& cloud_address() const { return cloud_; }
    [[nodiscard]] const std::string& router_wan_address() const { return wan_; }
    [[nodiscard]] const std::string& site_address() const { return site_host_; }
    [[nodiscard]] const std::string& site_netns() const { return site_ns_; }
    [[nodiscard]] const std::string& router_netns() const { return router_ns_; }
    [[nodiscard]] const std::string& cloud_interface() const { return cloud_if_; }  // root namespace's veth end

    // argv prefixed to run in the site namespace ("ip netns exec <site> ..."; the PID of a
    // Process started with it is the program's own, since ip execs it).
    [[nodiscard]] std::vector<std::string> in_site(const std::vector<std::string>& argv) const;
    // Run argv in the router namespace (bounded); throws when it fails.
    void in_router(const std::vector<std::string>& argv) const;

    // The router's uplink (its wan interface) administratively up or down: a pulled cable. The
    // router forgets its NAT mappings when it goes down, as MASQUERADE does.
    void set_uplink(bool up);
    // A token-bucket rate limit both ways through the router (0: none).
    void set_rate_kbit(int kbit);
    // Drop this fraction of the packets forwarded either way (0: none).
    void set_loss(double probability);

    // A TCP listener in the site namespace on site_address(); returns its port. Closed with the site.
    [[nodiscard]] int listen_in_site();
    // Whether a TCP connect from the root namespace to site_address():port completes in `timeout`.
    [[nodiscard]] bool connect_from_cloud(int port, std::chrono::milliseconds timeout) const;

private:
    void teardown() noexcept;
    int index_{0};
    std::string router_ns_, site_ns_, cloud_if_, wan_if_, lan_if_, dev_if_;
    std::string cloud_, wan_, gateway_, site_host_, site_net_;
    std::vector<int> fds_;
};

}  // namespace ota::testkit
