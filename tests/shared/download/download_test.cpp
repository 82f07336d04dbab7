// ota::download::fetch against a real nginx over HTTPS (tests/kit): fresh downloads, resume after
// a killed process, servers that ignore Range, objects that change between attempts, oversize and
// tampered content, stalls, HTTP and TLS failures, a full disk, and cancellation. Each test checks
// what a user would: the bytes on disk, the hash, the counts, the error code and message.

#include "download_fixture.hpp"

namespace {
using namespace download_test;


// ---- success paths ----------------------------------------------------------------------------

TEST_F(DownloadTest, AFreshDownloadLandsInPlaceWithItsHashAndBoundedProgress) {
    const auto content = random_bytes(5 * MiB, 1);
    publish("models/fresh.bin", content);
    auto r = request("models/fresh.bin", content, dest());
    std::vector<dl::Progress> calls;
    r.on_progress = [&](const dl::Progress& p) { calls.push_back(p); };

    const auto res = dl::fetch(r);
    ASSERT_TRUE(res) << res.error().describe();
    EXPECT_EQ(kit::read_file(dest()), content);
    EXPECT_EQ(res->sha256, r.expected_sha256);
    EXPECT_EQ(res->bytes_transferred, content.size());
    EXPECT_EQ(res->resumed_from, 0u);
    EXPECT_EQ(res->attempts, 1);
    EXPECT_EQ(res->restarts_from_zero, 0);
    EXPECT_FALSE(fs::exists(part()));
    EXPECT_FALSE(fs::exists(sidecar()));
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator{}), 1);  // no temp files

    ASSERT_FALSE(calls.empty());
    EXPECT_LE(calls.size(), 22u);  // 0 % (the start), 5 %, 10 %, ... 95 % and 100 %
    EXPECT_EQ(calls.front().bytes, 0u);
    EXPECT_EQ(calls.back().percent, 100);
    EXPECT_EQ(calls.back().bytes, content.size());
    for (std::size_t i = 1; i < calls.size(); ++i) EXPECT_GT(calls[i].percent, calls[i - 1].percent);
    EXPECT_EQ(logged("models/fresh.bin", "200", 1), 1);
}

TEST_F(DownloadTest, AKilledDownloadResumesWithTheMissingBytesOnly) {
    // The first run is a child process at 256 KiB/s, killed with SIGKILL mid-transfer; the
    // resume (a Range request) is served at full speed.
    const auto content = random_bytes(2 * MiB, 2);
    publish("freshslow/model.bin", content);
    const auto r = request("freshslow/model.bin", content, dest());
    kit::Process child({OTA_DOWNLOAD_TOOL, "--url", r.url, "--dest", dest().string(), "--size",
                        std::to_string(r.expected_size), "--sha256", r.expected_sha256, "--cafile", r.cafile},
                       tmp / "child.log");
    ASSERT_TRUE(kit::wait_until([&] { return fs::exists(part()) && fs::file_size(part()) >= 512 * KiB; }, 10s))
        << child.log();
    child.kill(SIGKILL);
    ASSERT_FALSE(child.running());
    const auto on_disk = fs::file_size(part());
    ASSERT_LT(on_disk, content.size());
    ASSERT_TRUE(fs::exists(sidecar()));

    auto with_progress = r;
    std::vector<dl::Progress> calls;
    with_progress.on_progress = [&](const dl::Progress& p) { calls.push_back(p); };
    const auto res = dl::fetch(with_progress);
    ASSERT_TRUE(res) << res.error().describe();
    EXPECT_EQ(res->resumed_from, on_disk);
    // The first report says what is already on disk, not 0.
    ASSERT_FALSE(calls.empty());
    EXPECT_EQ(calls.front().bytes, on_disk);
    EXPECT_EQ(calls.front().percent, static_cast<int>(on_disk * 100 / content.size()));
    EXPECT_EQ(res->bytes_transferred + res->resumed_from, content.size());
    EXPECT_LT(res->bytes_transferred, content.size());
    EXPECT_EQ(res->restarts_from_zero, 0);
    EXPECT_EQ(res->sha256, r.expected_sha256);
    EXPECT_EQ(kit::read_file(dest()), content);
    EXPECT_EQ(logged("freshslow/model.bin", "206", 1), 1);
    EXPECT_FALSE(fs::exists(part()));
}

TEST_F(DownloadTest, AnAttemptCutByItsDeadlineIsResumedByTheNextWithoutRefetching) {
    const auto content = random_bytes(600 * KiB, 3);
    publish("slow/model.bin", content);
    auto r = request("slow/model.bin", content, dest());
    r.deadline = 1s;  // 200 KiB/s: about 3 attempts
    r.max_attempts = 10;

    const auto res = dl::fetch(r);
    ASSERT_TRUE(res) << res.error().describe();
    EXPECT_GE(res->attempts, 2);
    EXPECT_EQ(res->bytes_transferred, content.size());  // no byte fetched twice
    EXPECT_EQ(res->restarts_from_zero, 0);
    EXPECT_EQ(kit::read_file(dest()), content);
    EXPECT_EQ(logged("slow/model.bin", "", res->attempts), res->attempts) << server->access_log();
    EXPECT_EQ(logged("slow/model.bin", "206", res->attempts - 1), res->attempts - 1);
}

TEST_F(DownloadTest, ACompleteLeftoverIsVerifiedWithoutTheNetwork) {
    const auto content = random_bytes(300 * KiB, 4);
    publish("models/done.bin", content);
    const auto r = request("models/done.bin", content, dest());
    leave_partial(r, content, etag("models/done.bin"));

    const auto res = dl::fetch(r);
    ASSERT_TRUE(res) << res.error().describe();
    EXPECT_EQ(res->attempts, 0);
    EXPECT_EQ(res->bytes_transferred, 0u);
    EXPECT_EQ(res->resumed_from, content.size());
    EXPECT_EQ(kit::read_file(dest()), content);
    EXPECT_EQ(logged("models/done.bin", "", 0), 0);
}

TEST_F(DownloadTest, ACompleteLeftoverWithWrongBytesIsDownloadedAgain) {
    const auto content = random_bytes(300 * KiB, 41);
    publish("models/done-wrong.bin", content);
    const auto r = request("models/done-wrong.bin", content, dest());
    leave_partial(r, random_bytes(300 * KiB, 42), etag("models/done-wrong.bin"));

    const auto res = dl::fetch(r);
    ASSERT_TRUE(res) << res.error().describe();
    EXPECT_EQ(res->resumed_from, 0u);
    EXPECT_EQ(res->restarts_from_zero, 1);
    EXPECT_EQ(res->bytes_transferred, content.size());
    EXPECT_EQ(kit::read_file(dest()), content);
    EXPECT_EQ(logged("models/done-wrong.bin", "200", 1), 1);
}

TEST_F(DownloadTest, APartialOfAnotherRequestOrWithoutSidecarIsNotResumed) {
    const auto content = random_bytes(300 * KiB, 5);
    publish("models/other.bin", content);
    auto r = request("models/other.bin", content, dest());
    auto other = r;
    other.url = server->url("models/previous-release.bin");
    leave_partial(other, random_bytes(100 * KiB, 55), etag("models/other.bin"));

    auto res = dl::fetch(r);
    ASSERT_TRUE(res) << res.error().describe();
    EXPECT_EQ(res->resumed_from, 0u);
    EXPECT_EQ(res->bytes_transferred, content.size());
    EXPECT_EQ(kit::read_file(dest()), content);

    fs::remove(dest());
    kit::write_file(part(), random_bytes(100 * KiB, 56));  // no sidecar
    res = dl::fetch(r);
    ASSERT_TRUE(res) << res.error().describe();
    EXPECT_EQ(res->resumed_from, 0u);
    EXPECT_EQ(kit::read_file(dest()), content);
}

// ---- Range, If-Range and 416 as nginx does them -----------------------------------------------

TEST_F(DownloadTest, AServerIgnoringRangeIsRestartedFromZeroInTheSameResponse) {
    const auto content = random_bytes(1 * MiB, 6);
    publish("norange/model.bin", content);
    const auto r = request("norange/model.bin", content, dest());
    leave_partial(r, content.substr(0, content.size() / 2), etag("norange/model.bin"));

    const auto res = dl::fetch(r);
    ASSERT_TRUE(res) << res.error().describe();
    EXPECT_EQ(res->restarts_from_zero, 1);
    EXPECT_EQ(res->resumed_from, content.size() / 2);
    EXPECT_EQ(res->bytes_transferred, content.size());
    EXPECT_EQ(res->attempts, 1);
    EXPECT_EQ(kit::read_file(dest()), content);
    EXPECT_EQ(logged("norange/model.bin", "200", 1), 1);
}

TEST_F(DownloadTest, AnObjectReplacedSinceThePartialIsFetchedWholeThroughIfRange) {
    const auto old_content = random_bytes(1 * MiB, 7);
    const auto content = random_bytes(1 * MiB + 17, 8);
    const auto old_etag = publish_replaced("models/changed.bin", old_content, content);

    const auto r = request("models/changed.bin", content, dest());
    leave_partial(r, old_content.substr(0, old_content.size() / 2), old_etag);
    const auto res = dl::fetch(r);
    ASSERT_TRUE(res) << res.error().describe();
    EXPECT_EQ(res->restarts_from_zero, 1);
    EXPECT_EQ(res->bytes_transferred, content.size());
    EXPECT_EQ(kit::read_file(dest()), content);  // the new object's bytes only
    EXPECT_EQ(logged("models/changed.bin", "200", 1), 1);
}

TEST_F(DownloadTest, APartialLongerThanTheObjectGets416AndStartsOver) {
    // Only reachable with an unknown size (0): a known size rejects the long partial locally.
    const auto content = random_bytes(300 * KiB, 9);
    publish("models/shrunk.bin", content);
    auto r = request("models/shrunk.bin", content, dest());
    r.expected_size = 0;
    leave_partial(r, random_bytes(400 * KiB, 99), etag("models/shrunk.bin"));

    const auto res = dl::fetch(r);
    ASSERT_TRUE(res) << res.error().describe();
    EXPECT_EQ(res->restarts_from_zero, 1);
    EXPECT_EQ(res->bytes_transferred, content.size());
    EXPECT_EQ(kit::read_file(dest()), content);
    EXPECT_EQ(logged("models/shrunk.bin", "416", 1), 1);
}

TEST_F(DownloadTest, ASameSizeReplacementInTheSameSecondKeepsNginxsEtagAndTheHashCatchesIt) {
    // nginx's ETag is "<mtime>-<size>": If-Range cannot see this change, the joined bytes fail
    // the hash, the partial file is deleted, and the next call starts over and succeeds.
    const auto old_content = random_bytes(512 * KiB, 10);
    const auto content = random_bytes(512 * KiB, 11);
    const auto file = server->root() / "models/same.bin";
    publish("models/same.bin", old_content);
    const auto mtime = fs::last_write_time(file);
    const auto old_etag = etag("models/same.bin");
    publish("models/same.bin", content);
    fs::last_write_time(file, mtime);
    ASSERT_EQ(etag("models/same.bin"), old_etag);

    const auto r = request("models/same.bin", content, dest());
    leave_partial(r, old_content.substr(0, 256 * KiB), old_etag);
    const auto res = dl::fetch(r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::hash_mismatch) << res.error().describe();
    expect_nothing_left();

    const auto again = dl::fetch(r);
    ASSERT_TRUE(again) << again.error().describe();
    EXPECT_EQ(again->resumed_from, 0u);
    EXPECT_EQ(kit::read_file(dest()), content);
}

// ---- wrong content ----------------------------------------------------------------------------

TEST_F(DownloadTest, AnObjectLargerThanDeclaredIsRefusedFromItsContentLength) {
    const auto content = random_bytes(300 * KiB, 12);
    publish("models/big.bin", content);
    auto r = request("models/big.bin", content, dest());
    r.expected_size = 200 * KiB;
    const auto res = dl::fetch(r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::size_mismatch);
    EXPECT_NE(res.error().message.find("more than the declared 204800"), std::string::npos) << res.error().message;
    EXPECT_NE(res.error().message.find(r.url), std::string::npos) << res.error().message;
    expect_nothing_left();
}

TEST_F(DownloadTest, AChunkedBodyLongerThanDeclaredIsCutAtTheDeclaredSize) {
    const auto content = random_bytes(600 * KiB, 13);
    publish("chunked/big.bin", content);
    auto r = request("chunked/big.bin", content, dest());
    r.expected_size = 200 * KiB;
    r.progress_step_percent = 1;
    r.progress_interval = 0ms;  // every chunk: the largest partial file ever seen
    std::uint64_t most = 0;
    r.on_progress = [&](const dl::Progress& p) { most = std::max(most, p.bytes); };
    const auto res = dl::fetch(r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::size_mismatch);
    EXPECT_NE(res.error().message.find("sent more than the declared 204800 bytes"), std::string::npos)
        << res.error().message;
    EXPECT_GT(most, 0u);
    EXPECT_LE(most, 200 * KiB);
    expect_nothing_left();
}

TEST_F(DownloadTest, AnObjectShorterThanDeclaredIsASizeMismatch) {
    const auto content = random_bytes(100 * KiB, 14);
    publish("models/short.bin", content);
    auto r = request("models/short.bin", content, dest());
    r.expected_size = 200 * KiB;
    const auto res = dl::fetch(r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::size_mismatch) << res.error().describe();
    EXPECT_NE(res.error().message.find("102400"), std::string::npos) << res.error().message;
    expect_nothing_left();
}

TEST_F(DownloadTest, TamperedBytesOfTheRightSizeAreAHashMismatchAndLeaveNothing) {
    const auto content = random_bytes(1 * MiB, 15);
    auto tampered = content;
    tampered[tampered.size() / 2] ^= 0x01;
    publish("models/tampered.bin", tampered);
    const auto r = request("models/tampered.bin", content, dest());
    const auto res = dl::fetch(r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::hash_mismatch);
    EXPECT_NE(res.error().message.find(r.expected_sha256), std::string::npos) << res.error().message;
    EXPECT_NE(res.error().message.find(ota::crypto::sha256_hex(tampered)), std::string::npos) << res.error().message;
    expect_nothing_left();
}

// ---- network failures -------------------------------------------------------------------------

TEST_F(DownloadTest, ADripBelowTheLowSpeedLimitIsStalledAfterEveryAttempt) {
    const auto content = random_bytes(1 * MiB, 16);
    publish("drip/model.bin", content);
    auto r = request("drip/model.bin", content, dest());
    r.low_speed_limit = 64 * KiB;
    r.low_speed_time = 2s;
    r.max_attempts = 2;
    const auto start = Clock::now();
    const auto res = dl::fetch(r);
    const auto took = seconds_since(start);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::download_stalled) << res.error().describe();
    EXPECT_NE(res.error().message.find("gave up after 2 attempts"), std::string::npos) << res.error().message;
    EXPECT_GE(took, 3.5);
    EXPECT_LT(took, 10.0);
    EXPECT_EQ(logged("drip/model.bin", "", 2), 2) << server->access_log();
    // What arrived is kept, with its sidecar, for a later resume.
    EXPECT_TRUE(fs::exists(part()));
    EXPECT_TRUE(fs::exists(sidecar()));
    EXPECT_FALSE(fs::exists(dest()));
}

TEST_F(DownloadTest, A404FailsAtOnceNamingTheStatusAndTheUrl) {
    const auto r = request("models/missing.bin", "whatever", dest());
    const auto res = dl::fetch(r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::download_failed);
    EXPECT_NE(res.error().message.find("HTTP 404"), std::string::npos) << res.error().message;
    EXPECT_NE(res.error().message.find(r.url), std::string::npos) << res.error().message;
    EXPECT_EQ(logged("models/missing.bin", "", 1), 1);
    EXPECT_FALSE(fs::exists(dest()));
}

TEST_F(DownloadTest, A503IsRetriedUpToMaxAttempts) {
    const auto r = request("fail/model.bin", "whatever", dest());
    const auto res = dl::fetch(r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::download_failed);
    EXPECT_NE(res.error().message.find("HTTP 503"), std::string::npos) << res.error().message;
    EXPECT_NE(res.error().message.find("gave up after 3 attempts"), std::string::npos) << res.error().message;
    EXPECT_EQ(logged("fail/model.bin", "503", 3), 3);
}

TEST_F(DownloadTest, ARefusedConnectionIsRetriedWithBackoffThenFails) {
    auto r = request("models/x.bin", "whatever", dest());
    r.url = "https://127.0.0.1:" + std::to_string(kit::free_port()) + "/models/x.bin";
    const auto start = Clock::now();
    const auto res = dl::fetch(r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::download_failed);
    EXPECT_NE(res.error().message.find(r.url), std::string::npos) << res.error().message;
    EXPECT_NE(res.error().message.find("gave up after 3 attempts"), std::string::npos) << res.error().message;
    EXPECT_LT(seconds_since(start), 5.0);  // 2 backoffs of at most 50 ms, and refusals are instant
}

TEST_F(DownloadTest, AServerCertificateFromAnotherCaIsRefusedWithoutRetrying) {
    const auto content = random_bytes(10 * KiB, 17);
    publish("models/tls.bin", content);
    kit::TempDir other_pki("ota-other-pki");
    const auto made = kit::run({(kit::source_dir() / "scripts" / "make-dev-certs").string(),
                                other_pki.path().string(), "--devices", "0"},
                               60s);
    ASSERT_EQ(made.exit_code, 0) << made.err;
    auto r = request("models/tls.bin", content, dest());
    r.cafile = (other_pki / "ca.pem").string();
    r.backoff_min = 10s;  // a retry would show in the time taken
    r.backoff_max = 10s;
    const auto start = Clock::now();
    const auto res = dl::fetch(r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::download_failed);
    EXPECT_NE(res.error().message.find("certificate"), std::string::npos) << res.error().message;
    EXPECT_NE(res.error().message.find("TLS"), std::string::npos) << res.error().message;
    EXPECT_LT(seconds_since(start), 8.0);
    EXPECT_FALSE(fs::exists(dest()));
}

TEST_F(DownloadTest, AServerRequiringClientCertificatesAcceptsTheDeviceCertificate) {
    const auto& pki = kit::shared_pki();
    kit::ArtifactServer::Options o;
    o.server = {"ssl_client_certificate " + pki.ca().string() + ";", "ssl_verify_client on;"};
    kit::ArtifactServer mtls(pki, o);
    const auto content = random_bytes(64 * KiB, 18);
    fs::create_directories(mtls.root() / "models");
    kit::write_file(mtls.root() / "models/m.bin", content);

    auto r = request("models/m.bin", content, dest());
    r.url = mtls.url("models/m.bin");
    auto without = dl::fetch(r);
    ASSERT_FALSE(without);
    EXPECT_EQ(without.error().code, ErrorCode::download_failed);
    EXPECT_NE(without.error().message.find("HTTP 400"), std::string::npos) << without.error().message;

    r.certfile = pki.cert("device-001").string();
    r.keyfile = pki.key("device-001").string();
    const auto with = dl::fetch(r);
    ASSERT_TRUE(with) << with.error().describe();
    EXPECT_EQ(kit::read_file(dest()), content);
}

// ---- flaky links (tests/shared/download/tcp_relay.hpp in front of nginx) ----------------------
// ---- the device -------------------------------------------------------------------------------

TEST_F(DownloadTest, AFullDiskIsDiskFullAndTheUselessPartialIsRemoved) {
    // The download runs as a child in a mount namespace of its own (unshare --user --mount) with
    // a 1 MiB tmpfs as its destination directory: a real ENOSPC, and no mount left behind.
    kit::TempDir mnt("ota-dl-full");
    const auto probe = kit::run({"unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                                 "mount -t tmpfs -o size=1m ota-test \"$1\"", "sh", mnt.path().string()},
                                10s);
    // This machine kind allows it; a machine that does not fails here rather than skipping,
    // so the disk-full path is never counted as tested when it was not.
    ASSERT_EQ(probe.exit_code, 0) << "cannot mount a tmpfs in a user+mount namespace here: " << probe.err;

    const auto content = random_bytes(3 * MiB, 19);
    publish("models/huge.bin", content);
    const auto r = request("models/huge.bin", content, mnt / "artifact.bin");
    const auto res = kit::run({"unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                               "mount -t tmpfs -o size=1m ota-test \"$1\" && shift && exec \"$@\"", "sh",
                               mnt.path().string(), OTA_DOWNLOAD_TOOL, "--url", r.url, "--dest", r.dest.string(),
                               "--size", std::to_string(r.expected_size), "--sha256", r.expected_sha256, "--cafile",
                               r.cafile, "--list-dir"},
                              30s);
    EXPECT_EQ(res.exit_code, 1) << res.out << res.err;
    EXPECT_NE(res.err.find("disk_full: "), std::string::npos) << res.err;
    EXPECT_NE(res.err.find("artifact.bin.part"), std::string::npos) << res.err;
    EXPECT_NE(res.err.find("No space left on device"), std::string::npos) << res.err;
    EXPECT_NE(res.out.find("dir:\n"), std::string::npos) << "left in the full directory: " << res.out;
    EXPECT_EQ(logged("models/huge.bin", "", 1), 1);  // not retried
}

TEST_F(DownloadTest, CancellingDuringATransferReturnsPromptlyAndKeepsThePartial) {
    const auto content = random_bytes(1 * MiB, 20);
    publish("drip/cancel.bin", content);
    auto r = request("drip/cancel.bin", content, dest());
    std::atomic<bool> stop{false};
    r.cancelled = [&] { return stop.load(); };
    std::thread canceller([&] {
        std::this_thread::sleep_for(1500ms);
        stop = true;
    });
    const auto start = Clock::now();
    const auto res = dl::fetch(r);
    const auto took = seconds_since(start);
    canceller.join();
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::timeout);
    EXPECT_NE(res.error().message.find("cancelled"), std::string::npos) << res.error().message;
    EXPECT_LT(took, 1.5 + 2.0);  // curl polls the callback at least once a second
    EXPECT_TRUE(fs::exists(part()));
    EXPECT_GT(fs::file_size(part()), 0u);  // flushed at least once a second
    EXPECT_TRUE(fs::exists(sidecar()));
}

TEST_F(DownloadTest, CancellingDuringTheBackoffReturnsPromptly) {
    auto r = request("fail/model.bin", "whatever", dest());
    r.backoff_min = 10s;
    r.backoff_max = 10s;
    std::atomic<bool> stop{false};
    r.cancelled = [&] { return stop.load(); };
    std::thread canceller([&] {
        std::this_thread::sleep_for(300ms);
        stop = true;
    });
    const auto start = Clock::now();
    const auto res = dl::fetch(r);
    canceller.join();
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, ErrorCode::timeout);
    EXPECT_LT(seconds_since(start), 3.0);  // not the 10 s backoff
}

}  // namespace
