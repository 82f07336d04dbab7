// Devices behind a real NAT, on a bad network (label `net`, root: docs/network.md). Three agent
// daemons in a site network namespace reach the broker and nginx only through a NAT router
// namespace; during a rollout with the real controller and publisher the router's link is made
// slow and lossy, pulled for longer than the MQTT keepalive, flapped, or the broker is killed -9.
// Every run ends with every device on the new version, exact counts, complete retained state and
// at most 1 MiB fetched again per interruption (nat_fixture.hpp, expect_rollout_complete).
#include "nat_fixture.hpp"

namespace nat {
namespace {

// The topology itself: devices reach the cloud through the NAT (nginx sees the router's address),
// and the router drops connections from the cloud to the site.
TEST_F(NatRollout, DevicesReachTheCloudOnlyOutboundThroughTheNat) {
    auto out = kit::run(site->in_site({"curl", "-sS", "--cacert", pki.ca().string(), "-o", "/dev/null", "-w",
                                       "%{http_code}", server->url("nothing-here")}),
                        20s);
    EXPECT_EQ(out.out, "404") << out.err;
    EXPECT_NE(server->access_log().find(site->router_wan_address() + " - - "), std::string::npos) << server->access_log();
    const int port = site->listen_in_site();
    EXPECT_FALSE(site->connect_from_cloud(port, 2s)) << "the router let a new inbound connection through";
    // The agents came online through it (SetUp waited for that), each from the router's address.
    const auto log = broker->log();
    for (const auto& d : kDevices)
        EXPECT_NE(log.find("from " + site->router_wan_address()), std::string::npos) << d << "\n" << log;
}

// a. A 1 Mbit/s link with 5 % loss either way for the whole rollout.
TEST_F(NatRollout, ASlowLossyLinkStillCompletesTheRollout) {
    site->set_rate_kbit(1000);
    site->set_loss(0.05);
    const std::string v = "2026-03-10";
    const auto content = publish(v, 256 * 1024);
    expect_rollout_complete(v, content, 0);
}

// b. The link down for longer than the MQTT keepalive (30 s; the broker gives up after 1.5 x) in
// the middle of the canary's download, then up again. The transfer's stall limit (30 s) passes
// during the outage too, so the download must survive failed attempts while the link is down.
TEST_F(NatRollout, TheLinkDownLongerThanTheKeepaliveMidDownloadThenUp) {
    site->set_rate_kbit(1000);
    const std::string v = "2026-03-11";
    const auto content = publish(v, 1536 * 1024);
    ASSERT_TRUE(wait_partial("device-001", 256 * 1024)) << logs();
    site->set_uplink(false);
    // The broker notices the silence after 1.5 x keepalive and publishes the canary's last will.
    EXPECT_TRUE(kit::wait_until([&] { return !online("device-001"); }, std::chrono::seconds(2 * kKeepaliveS), 250ms))
        << "the broker did not notice the canary gone";
    std::this_thread::sleep_for(5s);  // the outage lasts on (fault schedule)
    EXPECT_LT(partial_bytes("device-001"), content.size()) << "the download finished during the outage";
    site->set_uplink(true);
    site->set_rate_kbit(0);
    expect_rollout_complete(v, content, 1);
}

// c. Ten flaps of the link (1 s down, 1.5 s up) during one download.
TEST_F(NatRollout, TenFlapsDuringOneDownload) {
    site->set_rate_kbit(1000);
    const std::string v = "2026-03-12";
    const auto content = publish(v, 2 * kMiB);
    ASSERT_TRUE(wait_partial("device-001", 128 * 1024)) << logs();
    for (int i = 0; i < 10; ++i) {  // the fault schedule: fixed times, not waits for a condition
        site->set_uplink(false);
        std::this_thread::sleep_for(1s);
        site->set_uplink(true);
        std::this_thread::sleep_for(1500ms);
    }
    // All ten fell into one download: the canary's partial file is still there.
    EXPECT_GT(partial_bytes("device-001"), 0u) << "the download ended before the tenth flap";
    site->set_rate_kbit(0);
    expect_rollout_complete(v, content, 10);
}

// d. The broker killed -9 mid-rollout (the canary downloading) and started again on its
// persistence: what it had not saved yet is gone, and the agents and the controller must put
// back what is theirs.
TEST_F(NatRollout, TheBrokerKilledAndRestartedMidRollout) {
    site->set_rate_kbit(1000);
    const std::string v = "2026-03-13";
    const auto content = publish(v, 512 * 1024);
    ASSERT_TRUE(wait_partial("device-001", 64 * 1024)) << logs();
    broker->crash_restart();
    site->set_rate_kbit(0);
    expect_rollout_complete(v, content, 1);
}

}  // namespace
}  // namespace nat
