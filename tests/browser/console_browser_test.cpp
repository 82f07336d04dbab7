// The web console in a real Chromium against the real stack (tests/browser/browser.hpp).
#include <gtest/gtest.h>

#include "browser.hpp"

namespace kit = ota::testkit;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

TEST(ConsoleSmoke, ThePageConnectsThroughWebsockifyAndNginx) {
    const auto& pki = kit::shared_pki(3);
    kit::TempDir dir{"ota-console-smoke"};
    auto line = kit::run({"sh", "-c", "touch '" + (dir / "passwd").string() + "' && mosquitto_passwd -b '" +
                                          (dir / "passwd").string() + "' device-001 pw1"});
    ASSERT_EQ(line.exit_code, 0) << line.err;
    kit::Broker broker(pki, {.password_file = dir / "passwd"});
    kit::Websockify ws(broker.sim_port());
    kit::ConsoleServer server(pki, ws.port());
    kit::Browser browser(server.spki());
    auto o = browser.open("p", server.url(""));
    ASSERT_TRUE(o.ok) << o.error;
    auto w = browser.wait("p", kit::tid("conn"), "^connected$", 10s);
    EXPECT_TRUE(w.ok) << w.error << "\n" << browser.events("p") << ws.log() << server.log();
}
