// The kit's nginx: HTTPS verified against the dev CA, Range requests, and If-Range with ETags,
// as the agent's resumable download relies on them.
#include <gtest/gtest.h>

#include <string>

#include "kit.hpp"

namespace {

namespace kit = ota::testkit;
using namespace std::chrono_literals;

class ArtifactServerTest : public ::testing::Test {
protected:
    static inline std::unique_ptr<kit::ArtifactServer> server;
    static inline std::string content;

    static inline std::string setup_error;

    // A failure in SetUpTestSuite would only mark the tests skipped (and CTest counts skipped as
    // passed): keep the error and fail every test with it instead.
    static void SetUpTestSuite() {
        try {
            server = std::make_unique<kit::ArtifactServer>(kit::shared_pki());
            content.reserve(300000);
            for (int i = 0; content.size() < 300000; ++i) content += std::to_string(i) + ",";
            std::filesystem::create_directories(server->root() / "models");
            kit::write_file(server->root() / "models" / "m.bin", content);
        } catch (const std::exception& e) {
            setup_error = e.what();
            server.reset();
        }
    }
    static void TearDownTestSuite() { server.reset(); }
    void SetUp() override { ASSERT_TRUE(server) << setup_error; }

    // curl, verifying the server against the dev CA; headers to stderr-free file via -D.
    static kit::RunResult curl(std::vector<std::string> extra, const std::string& path = "models/m.bin") {
        std::vector<std::string> a{"curl", "-sS", "--cacert", kit::shared_pki().ca().string(), "-D", "/dev/stderr"};
        a.insert(a.end(), extra.begin(), extra.end());
        a.push_back(server->url(path));
        return kit::run(a, 10s);
    }
    static std::string header(const std::string& headers, const std::string& name) {
        const auto pos = headers.find("\n" + name + ": ");
        if (pos == std::string::npos) return {};
        const auto start = pos + name.size() + 3;
        return headers.substr(start, headers.find('\r', start) - start);
    }
};

TEST_F(ArtifactServerTest, ServesTheFileOverHttpsVerifiedAgainstTheCa) {
    const auto r = curl({});
    ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << server->log();
    EXPECT_NE(r.err.find("HTTP/1.1 200"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, content);
    EXPECT_FALSE(header(r.err, "ETag").empty()) << r.err;
    EXPECT_EQ(server->url("/models/m.bin"), server->url("models/m.bin"));
}

TEST_F(ArtifactServerTest, AClientTrustingAnotherCaRefusesTheServer) {
    const auto r = kit::run({"curl", "-sS", server->url("models/m.bin")}, 10s);  // system CAs only
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(r.out.empty());
}

TEST_F(ArtifactServerTest, ARangeRequestReturns206WithExactlyTheRequestedBytes) {
    const auto r = curl({"-H", "Range: bytes=1000-1999"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("HTTP/1.1 206"), std::string::npos) << r.err;
    EXPECT_EQ(header(r.err, "Content-Range"), "bytes 1000-1999/" + std::to_string(content.size()));
    EXPECT_EQ(r.out, content.substr(1000, 1000));

    const auto open = curl({"-H", "Range: bytes=150000-"});
    ASSERT_EQ(open.exit_code, 0) << open.err;
    EXPECT_NE(open.err.find("HTTP/1.1 206"), std::string::npos) << open.err;
    EXPECT_EQ(open.out, content.substr(150000));
}

TEST_F(ArtifactServerTest, IfRangeWithTheCurrentEtagResumesAndAStaleOneGetsTheWholeFile) {
    const auto head = curl({"-I"});
    const auto etag = header(head.out, "ETag");
    ASSERT_FALSE(etag.empty()) << head.out;

    const auto fresh = curl({"-H", "Range: bytes=100-199", "-H", "If-Range: " + etag});
    ASSERT_EQ(fresh.exit_code, 0) << fresh.err;
    EXPECT_NE(fresh.err.find("HTTP/1.1 206"), std::string::npos) << fresh.err;
    EXPECT_EQ(fresh.out, content.substr(100, 100));

    const auto stale = curl({"-H", "Range: bytes=100-199", "-H", "If-Range: \"0-stale\""});
    ASSERT_EQ(stale.exit_code, 0) << stale.err;
    EXPECT_NE(stale.err.find("HTTP/1.1 200"), std::string::npos) << stale.err;
    EXPECT_EQ(stale.out, content);
}

TEST_F(ArtifactServerTest, AMissingFileIs404) {
    const auto r = curl({"-o", "/dev/null", "-w", "%{http_code}"}, "models/none.bin");
    EXPECT_EQ(r.out, "404");
}

}  // namespace
