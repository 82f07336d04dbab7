// ota::download::fetch on bad links: a test-only TCP relay (tcp_relay.hpp) in front of the kit's
// nginx cuts connections every N bytes or blackholes them. Attempts that make progress do not use
// up the budget, a link that never advances gives up, a dead connection is left after the stall
// window and keepalive probes it, and received bytes reach the disk when the link goes quiet.
#include "download_fixture.hpp"

namespace {
using namespace download_test;

// The URL of `path` on the kit's nginx, reached through `relay`.
std::string via(const kit::TcpRelay& relay, const std::string& path) {
    return "https://127.0.0.1:" + std::to_string(relay.port()) + "/" + path;
}

TEST_F(DownloadTest, ALinkDroppingEveryMiBCompletesWithResumeWhateverTheAttemptBudget) {
    // Cut every 1 MiB (bytes from the server, TLS included): 12 MiB needs 13 attempts, far more
    // than max_attempts, but each one advances.
    const auto content = random_bytes(12 * MiB, 21);
    publish("models/flapping.bin", content);
    kit::TcpRelay relay({.upstream_port = server->port(), .cut_after = 1 * MiB});
    auto r = request("models/flapping.bin", content, dest());
    r.url = via(relay, "models/flapping.bin");
    r.max_attempts = 3;
    const auto res = dl::fetch(r);
    ASSERT_TRUE(res) << res.error().describe();
    EXPECT_EQ(kit::read_file(dest()), content);
    EXPECT_GE(res->attempts, 12);
    EXPECT_EQ(res->attempts, relay.connections());
    EXPECT_EQ(res->restarts_from_zero, 0);
    EXPECT_EQ(res->bytes_transferred, content.size());  // every attempt resumed where the last one ended
    EXPECT_EQ(logged("models/flapping.bin", "206", res->attempts - 1), res->attempts - 1) << server->access_log();
}

TEST_F(DownloadTest, ALinkThatNeverGetsPastTheHandshakeGivesUpAfterMaxAttemptsWithoutProgress) {
    const auto content = random_bytes(1 * MiB, 22);
    publish("models/nowhere.bin", content);
    kit::TcpRelay relay({.upstream_port = server->port(), .cut_after = 2 * KiB});  // inside the TLS handshake
    auto r = request("models/nowhere.bin", content, dest());
    r.url = via(relay, "models/nowhere.bin");
    const auto res = dl::fetch(r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::download_failed) << res.error().describe();
    EXPECT_NE(res.error().message.find("gave up after 3 attempts without progress"), std::string::npos)
        << res.error().message;
    EXPECT_EQ(relay.connections(), 3);
}

TEST_F(DownloadTest, AServerIgnoringRangeOnALinkThatDropsGivesUpInsteadOfLoopingForever) {
    // Each attempt starts over from zero (200 to the Range request) and is cut at the same byte:
    // the first attempt advances, the next ones never get further, so the budget runs out.
    const auto content = random_bytes(2 * MiB, 23);
    publish("norange/flapping.bin", content);
    kit::TcpRelay relay({.upstream_port = server->port(), .cut_after = 256 * KiB});
    auto r = request("norange/flapping.bin", content, dest());
    r.url = via(relay, "norange/flapping.bin");
    const auto res = dl::fetch(r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::download_failed) << res.error().describe();
    EXPECT_NE(res.error().message.find("gave up after 3 attempts without progress"), std::string::npos)
        << res.error().message;
    EXPECT_EQ(relay.connections(), 4);  // the one that advanced, then 3 without progress
    EXPECT_EQ(logged("norange/flapping.bin", "200", 4), 4) << server->access_log();
}

TEST_F(DownloadTest, AnObjectReplacedSinceThePartialCompletesOnALinkThatDrops) {
    // The partial file (1.5 MiB of the old object) is discarded by the first answer (200: If-Range
    // sees a new ETag); from then on progress counts from zero, not from the old 1.5 MiB, so the
    // attempts that rebuild the first 1.5 MiB of the new object do not use up the budget.
    const auto old_content = random_bytes(2 * MiB, 28);
    const auto content = random_bytes(2 * MiB + 17, 29);
    const auto old_etag = publish_replaced("models/changed-flap.bin", old_content, content);
    kit::TcpRelay relay({.upstream_port = server->port(), .cut_after = 256 * KiB});
    auto r = request("models/changed-flap.bin", content, dest());
    r.url = via(relay, "models/changed-flap.bin");
    r.max_attempts = 3;
    leave_partial(r, old_content.substr(0, 1536 * KiB), old_etag);
    const auto res = dl::fetch(r);
    ASSERT_TRUE(res) << res.error().describe();
    EXPECT_EQ(kit::read_file(dest()), content);
    EXPECT_EQ(res->restarts_from_zero, 1);
    EXPECT_GE(res->attempts, 8);
}

TEST_F(DownloadTest, TheTotalDeadlineEndsACallWhoseAttemptsKeepAdvancing) {
    const auto content = random_bytes(2 * MiB, 24);  // 200 KiB/s: ~10 s, far beyond the deadline
    publish("slow/total.bin", content);
    auto r = request("slow/total.bin", content, dest());
    r.deadline = 1s;  // each attempt advances ~200 KiB
    r.total_deadline = 3s;
    r.max_attempts = 100;
    const auto res = dl::fetch(r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::download_stalled) << res.error().describe();
    EXPECT_NE(res.error().message.find("total deadline of 3 s"), std::string::npos) << res.error().message;
    EXPECT_TRUE(fs::exists(part()));  // kept for a later call
    EXPECT_GT(fs::file_size(part()), 0u);
}

TEST_F(DownloadTest, ABlackholedConnectionIsLeftAfterTheStallWindowAndTheNextOneResumes) {
    // The first connection goes silent after 1 MiB (a NAT gateway lost its mapping: no RST, no
    // FIN); the low-speed window (30 s) is far longer than the stall window (3 s), which ends
    // the attempt; the next connection resumes. Bounded by the total deadline, not timed.
    const auto content = random_bytes(4 * MiB, 25);
    publish("models/blackhole.bin", content);
    kit::TcpRelay relay({.upstream_port = server->port(), .blackhole_after = 1 * MiB});
    auto r = request("models/blackhole.bin", content, dest());
    r.url = via(relay, "models/blackhole.bin");
    r.low_speed_time = 30s;
    r.stall_timeout = 3s;
    r.max_attempts = 2;
    r.total_deadline = 25s;
    const auto res = dl::fetch(r);
    ASSERT_TRUE(res) << res.error().describe();
    EXPECT_EQ(kit::read_file(dest()), content);
    EXPECT_EQ(relay.blackholed(), 1);
    EXPECT_EQ(res->attempts, 2);
    EXPECT_EQ(relay.connections(), 2);
    EXPECT_EQ(res->restarts_from_zero, 0);
    EXPECT_EQ(res->bytes_transferred, content.size());  // the second attempt resumed, nothing twice
    EXPECT_EQ(logged("models/blackhole.bin", "206", 1), 1) << server->access_log();
}

TEST_F(DownloadTest, TheTransfersConnectionProbesWithTcpKeepaliveAfterAFewIdleSeconds) {
    // A connection whose NAT mapping is gone only fails when something is sent on it: keepalive
    // probes do that while the download waits. The relay blackholes the connection (its kernel
    // still ACKs, so the probes succeed here); `ss` shows the socket's keepalive timer.
    const auto content = random_bytes(2 * MiB, 27);
    publish("models/keepalive.bin", content);
    kit::TcpRelay relay({.upstream_port = server->port(), .blackhole_after = 256 * KiB});
    auto r = request("models/keepalive.bin", content, dest());
    kit::Process child({OTA_DOWNLOAD_TOOL, "--url", via(relay, "models/keepalive.bin"), "--dest", dest().string(), "--size",
                        std::to_string(r.expected_size), "--sha256", r.expected_sha256, "--cafile", r.cafile,
                        "--stall-timeout", "60", "--low-speed-time", "60"},
                       tmp / "child.log");
    ASSERT_TRUE(kit::wait_until([&] { return relay.blackholed() == 1; }, 10s)) << child.log();
    std::string sockets;
    const auto timer = [&]() -> std::optional<double> {
        sockets = kit::run({"ss", "-tnoH", "state", "established", "( dport = :" + std::to_string(relay.port()) + " )"}, 5s).out;
        const auto pos = sockets.find("timer:(keepalive,");
        if (pos == std::string::npos) return std::nullopt;
        return std::strtod(sockets.c_str() + pos + std::strlen("timer:(keepalive,"), nullptr);
    };
    ASSERT_TRUE(kit::wait_until([&] { return timer().has_value(); }, 5s, 100ms)) << "no keepalive timer:\n" << sockets;
    const auto t = timer();
    ASSERT_TRUE(t) << sockets;
    EXPECT_LE(*t, 5.0) << sockets;  // keepalive_idle: 5 s (then every 2 s)
}

TEST_F(DownloadTest, BytesReceivedReachTheDiskWithinASecondWhenTheLinkGoesQuietSoAKillLosesLittle) {
    // The child receives 2.75 MiB, then the link goes silent (stall window 60 s: it waits). What
    // it received must reach the partial file without new bytes arriving; after kill -9 the
    // resume fetches again only what was never written (less than one 64 KiB buffer, plus TLS
    // overhead in the relay's count).
    const auto content = random_bytes(8 * MiB, 26);
    publish("models/quiet.bin", content);
    kit::TcpRelay relay({.upstream_port = server->port(), .blackhole_after = 2 * MiB + 768 * KiB});
    auto r = request("models/quiet.bin", content, dest());
    r.url = via(relay, "models/quiet.bin");  // the same URL for the resume (the sidecar records it)
    kit::Process child({OTA_DOWNLOAD_TOOL, "--url", r.url, "--dest", dest().string(), "--size",
                        std::to_string(r.expected_size), "--sha256", r.expected_sha256, "--cafile", r.cafile,
                        "--stall-timeout", "60", "--low-speed-time", "60"},
                       tmp / "child.log");
    ASSERT_TRUE(kit::wait_until([&] { return relay.blackholed() == 1; }, 10s)) << child.log();
    const auto delivered = relay.bytes_to_client();  // TLS records, a little more than the plaintext
    const auto size_of_part = [&] {
        std::error_code ec;
        const auto n = fs::file_size(part(), ec);
        return ec ? std::uintmax_t{0} : n;
    };
    EXPECT_TRUE(kit::wait_until([&] { return size_of_part() + 64 * KiB >= delivered; }, 5s))
        << size_of_part() << " bytes on disk of " << delivered << " delivered";
    child.kill(SIGKILL);
    ASSERT_FALSE(child.running());
    const auto on_disk = size_of_part();

    const auto res = dl::fetch(r);  // a second connection: forwarded normally
    ASSERT_TRUE(res) << res.error().describe();
    EXPECT_EQ(res->resumed_from, on_disk);
    EXPECT_EQ(kit::read_file(dest()), content);
    // Fetched twice: what the killed child had received but not written.
    EXPECT_LE(delivered - std::min<std::uint64_t>(delivered, res->resumed_from), 64 * KiB)
        << "delivered " << delivered << ", resumed from " << res->resumed_from;
}


}  // namespace
