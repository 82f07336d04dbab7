// kit::NatSite (kit_net.hpp): what it creates, that two at once do not collide, and that its
// destructor leaves nothing behind. Label `net` (root).
#include <gtest/gtest.h>

#include "kit.hpp"
#include "kit_net.hpp"

namespace {

namespace kit = ota::testkit;

bool netns_listed(const std::string& name) {
    auto r = kit::run({"ip", "netns", "list"});
    return r.out.find(name + " ") != std::string::npos || r.out.find(name + "\n") != std::string::npos;
}
bool link_listed(const std::string& name) { return kit::run({"ip", "link", "show", "dev", name}).exit_code == 0; }

TEST(NatSite, TwoSitesAtOnceAreDistinctAndLeaveNothingBehind) {
    if (auto why = kit::netns_unavailable()) GTEST_SKIP() << "skipped: " << *why;
    std::vector<std::string> names;
    std::string cloud_if;
    {
        kit::NatSite a;
        kit::NatSite b;
        EXPECT_NE(a.cloud_address(), b.cloud_address());
        EXPECT_NE(a.site_netns(), b.site_netns());
        names = {a.site_netns(), a.router_netns(), b.site_netns(), b.router_netns()};
        for (const auto& n : names) EXPECT_TRUE(netns_listed(n)) << n;
        // The site reaches the cloud address through the router, by its default route.
        auto r = kit::run(a.in_site({"ip", "route", "get", a.cloud_address()}));
        EXPECT_NE(r.out.find("via 10.77."), std::string::npos) << r.out << r.err;
        cloud_if = a.cloud_interface();
        EXPECT_TRUE(link_listed(cloud_if)) << cloud_if;
        a.set_rate_kbit(1000);
        a.set_loss(0.05);
        a.set_uplink(false);
        a.set_uplink(true);
        a.set_loss(0);
        a.set_rate_kbit(0);
    }
    for (const auto& n : names) EXPECT_FALSE(netns_listed(n)) << n;
    EXPECT_FALSE(link_listed(cloud_if)) << cloud_if;
}

}  // namespace
