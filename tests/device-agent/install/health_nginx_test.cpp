// Health check over HTTPS against the kit's real nginx (verified against the dev CA): a file
// that exists is healthy, a missing path (404) is not; without the CA the TLS check fails.
#include <gtest/gtest.h>

#include "install/health.hpp"
#include "kit.hpp"

namespace ota::agent {
namespace {

namespace kit = ota::testkit;
using namespace std::chrono_literals;

class HealthNginx : public ::testing::Test {
protected:
    static inline std::unique_ptr<kit::ArtifactServer> server;
    static inline std::string setup_error;
    static void SetUpTestSuite() {
        try {
            server = std::make_unique<kit::ArtifactServer>(kit::shared_pki());
            kit::write_file(server->root() / "healthz", "ok\n");
        } catch (const std::exception& e) {
            setup_error = e.what();
            server.reset();
        }
    }
    static void TearDownTestSuite() { server.reset(); }
    void SetUp() override { ASSERT_TRUE(server) << setup_error; }

    static HealthCheck check(const std::string& path) {
        HealthCheck c;
        c.url = server->url(path);
        c.cafile = kit::shared_pki().ca().string();
        c.timeout = 5s;
        c.retries = 1;
        c.interval = 10ms;
        return c;
    }
};

TEST_F(HealthNginx, ServedFileIsHealthy) {
    auto r = run_health_check(check("healthz"));
    EXPECT_TRUE(r) << r.error().describe() << "\n" << server->log();
}

TEST_F(HealthNginx, MissingPathIsHttp404) {
    auto r = run_health_check(check("missing"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::health_check_failed);
    EXPECT_EQ(r.error().message, "health check GET " + server->url("missing") + ": HTTP 404 (2 attempts)");
}

TEST_F(HealthNginx, UntrustedCertificateIsUnhealthy) {
    auto c = check("healthz");
    c.cafile.clear();  // the system store does not know the dev CA
    c.retries = 0;
    auto r = run_health_check(c);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("certificate"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace ota::agent
