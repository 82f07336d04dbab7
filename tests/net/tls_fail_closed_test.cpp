// TLS and identity failures fail closed: a real ota-agent (--once), the kit's Mosquitto and nginx.
// The artifact server presenting a certificate from another CA, an expired one, one for another
// host name, a redirect to http:// and a redirect to another host; the broker with a certificate
// from another CA. Each is refused with its documented error code (docs/protocol.md, "Error
// codes"), and the device keeps its working version (the installed file and the inventory).
#include <gmock/gmock.h>

#include "agent_fixture.hpp"

namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Options built field by field (designated initialisers leaving fields out trip -Wextra).
kit::PkiOptions devices(int n) {
    kit::PkiOptions o;
    o.devices = n;
    return o;
}
kit::ArtifactServer::Options with_cert(const kit::CertFiles& c) {
    kit::ArtifactServer::Options o;
    o.cert = c.cert;
    o.key = c.key;
    return o;
}

constexpr const char* kWorking = "model-2026-03-10.trt";  // the installed, working version

class TlsFailClosed : public AgentTest {
protected:
    void SetUp() override {
        AgentTest::SetUp();
        if (HasFatalFailure()) return;
        kit::write_file(target() / kWorking, "installed");
    }

    // A signed release of detection-model whose artifact URL is `url`; its bytes are written
    // under each of `roots` at each of `paths` (where the URL, or a redirect, leads).
    Release release_at(const std::string& version, const std::string& url,
                       const std::vector<std::pair<fs::path, std::string>>& copies) {
        Release r;
        r.version = version;
        r.content = "model " + version + " ";
        r.content.resize(100000, 'm');
        const auto file = dir / ("artifact-" + version);
        kit::write_file(file, r.content);
        for (const auto& [root, path] : copies) {
            fs::create_directories((root / path).parent_path());
            kit::write_file(root / path, r.content);
        }
        auto out = kit::run({OTA_PUBLISH_BIN, "publish", "--dry-run", "--signing-key",
                             (keys->path() / "release.key").string(), "--component", "detection-model", "--version",
                             version, "--artifact", file.string(), "--url", url, "--install", "file", "--target",
                             target().string()});
        EXPECT_EQ(out.exit_code, 0) << out.err;
        r.envelope = json::parse(out.out).dump();
        return r;
    }
    std::string artifact_path(const std::string& version) const { return "models/" + fleet + "/model-" + version + ".trt"; }

    // Offer `rel`, run the agent once; the status must be a failed download naming `cause`, and
    // nothing may change on the device.
    void expect_refused(const Release& rel, const std::string& cause) {
        assign();
        offer(rel);
        auto r = run_once(write_config());
        EXPECT_EQ(r.exit_code, 0) << r.err;
        const json s = status();
        ASSERT_TRUE(s.is_object()) << r.err;
        const json error = s.value("error", json::object());
        EXPECT_EQ(s.value("version", ""), rel.version);
        EXPECT_EQ(s.value("stage", ""), "failed") << s.dump();
        EXPECT_EQ(error.value("code", ""), "download_failed") << s.dump();
        EXPECT_THAT(error.value("message", ""), HasSubstr(cause)) << s.dump();
        expect_working_version_kept();
    }
    void expect_working_version_kept() {
        EXPECT_EQ(installed_files(), std::vector<std::string>{kWorking});
        EXPECT_EQ(kit::read_file(target() / kWorking), "installed");
        EXPECT_EQ(inventory_version(), "2026-03-10");
    }
};

TEST_F(TlsFailClosed, AnArtifactServerWithACertificateFromAnotherCaIsRefused) {
    kit::TempDir other_dir("ota-other-ca");
    const auto other = kit::make_pki(other_dir.path(), devices(0));
    kit::ArtifactServer rogue(other);
    const std::string v = "2026-04-01";
    expect_refused(release_at(v, rogue.url(artifact_path(v)), {{rogue.root(), artifact_path(v)}}), "certificate");
    EXPECT_THAT(rogue.access_log(), Not(HasSubstr("GET ")));  // the handshake failed: no request was sent
}

TEST_F(TlsFailClosed, AnExpiredArtifactServerCertificateIsRefused) {
    kit::TempDir certs("ota-expired");
    kit::CertOptions dates;
    dates.not_before = "20200101000000Z";
    dates.not_after = "20200102000000Z";
    const auto expired = kit::issue_server_cert(pki, certs.path(), "expired", dates);
    kit::ArtifactServer srv(pki, with_cert(expired));
    const std::string v = "2026-04-02";
    expect_refused(release_at(v, srv.url(artifact_path(v)), {{srv.root(), artifact_path(v)}}), "certificate");
    EXPECT_THAT(srv.access_log(), Not(HasSubstr("GET ")));
}

TEST_F(TlsFailClosed, AnArtifactServerCertificateForAnotherHostNameIsRefused) {
    kit::TempDir certs("ota-wrong-name");
    // Signed by the right CA, valid now, but for another name than the 127.0.0.1 of the URL.
    kit::CertOptions name;
    name.sans = {"DNS:elsewhere.example"};
    const auto elsewhere = kit::issue_server_cert(pki, certs.path(), "elsewhere", name);
    kit::ArtifactServer srv(pki, with_cert(elsewhere));
    const std::string v = "2026-04-03";
    expect_refused(release_at(v, srv.url(artifact_path(v)), {{srv.root(), artifact_path(v)}}), "127.0.0.1");
    EXPECT_THAT(srv.access_log(), Not(HasSubstr("GET ")));
}

// A plain-HTTP server on the same root (a server block of the same nginx) and a location on the
// HTTPS server that redirects there: were the redirect followed, the download would succeed.
TEST_F(TlsFailClosed, ARedirectToPlainHttpIsNotFollowed) {
    const int http_port = kit::free_port();
    kit::TempDir root_dir("ota-http-root");
    kit::ArtifactServer::Options o;
    o.http = {"server { listen 127.0.0.1:" + std::to_string(http_port) + "; root " + root_dir.path().string() +
              "; location / { } }"};
    o.locations = {{"/to-http/", "rewrite ^/to-http/(.*)$ http://127.0.0.1:" + std::to_string(http_port) + "/$1 redirect;"}};
    kit::ArtifactServer srv(pki, o);
    const std::string v = "2026-04-04";
    const auto rel = release_at(v, srv.url("to-http/" + artifact_path(v)), {{root_dir.path(), artifact_path(v)}});
    // The plain-HTTP copy is really there (so following the redirect would have worked).
    auto probe = kit::run({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                           "http://127.0.0.1:" + std::to_string(http_port) + "/" + artifact_path(v)});
    ASSERT_EQ(probe.out, "200") << probe.err;
    // The downloader follows redirects only within the release's artifact server (same scheme,
    // host and port), and says so.
    expect_refused(rel, "redirect to http://127.0.0.1:" + std::to_string(http_port));
    const auto log = srv.access_log();  // both server blocks log here
    EXPECT_THAT(log, HasSubstr("\"GET /to-http/" + artifact_path(v) + " HTTP/1.1\" 302"));
    // Only the probe ever fetched the plain-HTTP copy: the 302 and the probe's request.
    EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 2) << log;
}

// The HTTPS server redirects to itself under another host name (localhost, which its certificate
// names, so TLS would succeed): an artifact URL's host is where the device downloads from.
TEST_F(TlsFailClosed, ARedirectToAnotherHostIsNotFollowed) {
    kit::ArtifactServer::Options o;
    o.locations = {{"/to-host/", "rewrite ^/to-host/(.*)$ https://localhost:$server_port/$1 redirect;"}};
    kit::ArtifactServer srv(pki, o);
    const std::string v = "2026-04-05";
    const auto rel = release_at(v, srv.url("to-host/" + artifact_path(v)), {{srv.root(), artifact_path(v)}});
    expect_refused(rel, "redirect");
    EXPECT_THAT(srv.access_log(), HasSubstr("\"GET /to-host/" + artifact_path(v) + " HTTP/1.1\" 302"));
    EXPECT_THAT(srv.access_log(), Not(HasSubstr("\"GET /" + artifact_path(v) + " HTTP/1.1\""))) << srv.access_log();
}

// The counterpart of the two above: a redirect within the release's artifact server (same
// scheme, host and port; a moved path) is followed, and the update succeeds with the bytes the
// manifest signed.
TEST_F(TlsFailClosed, ARedirectWithinTheArtifactServerIsFollowed) {
    kit::ArtifactServer::Options o;
    o.locations = {{"/moved/", "rewrite ^/moved/(.*)$ https://127.0.0.1:$server_port/$1 redirect;"}};
    kit::ArtifactServer srv(pki, o);
    const std::string v = "2026-04-07";
    const auto rel = release_at(v, srv.url("moved/" + artifact_path(v)), {{srv.root(), artifact_path(v)}});
    assign();
    offer(rel);
    auto r = run_once(write_config());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const json s = status();
    EXPECT_EQ(s.value("stage", ""), "succeeded") << s.dump() << "\n" << r.err;
    EXPECT_EQ(kit::read_file(target() / ("model-" + v + ".trt")), rel.content);
    EXPECT_EQ(inventory_version(), v);
    const auto log = srv.access_log();
    EXPECT_THAT(log, HasSubstr("\"GET /moved/" + artifact_path(v) + " HTTP/1.1\" 302"));
    EXPECT_THAT(log, HasSubstr("\"GET /" + artifact_path(v) + " HTTP/1.1\" 200")) << log;
}

// A broker with a certificate from another CA: the agent refuses it, so there is no status
// message to send; the refusal is its one-line error, and nothing is installed.
TEST_F(TlsFailClosed, ABrokerWithACertificateFromAnotherCaIsRefused) {
    kit::TempDir other_dir("ota-other-ca");
    const auto other = kit::make_pki(other_dir.path(), devices(1));
    kit::Broker rogue(other);
    // The wave message is on the rogue broker (published with its own CA's controller identity).
    const std::string v = "2026-04-06";
    const auto rel = release_at(v, server->url(artifact_path(v)), {{server->root(), artifact_path(v)}});
    auto cfg = write_config({{"mqtt", {{"broker", rogue.url()}}}});
    ASSERT_EQ(kit::mosquitto_pub(rogue, other, "controller", "ota/v1/devices/" + device + "/assignment",
                                 json{{"fleet", fleet}, {"wave", "canary"}}.dump(), true)
                  .exit_code,
              0);
    auto r = run_once(cfg, 5);
    EXPECT_NE(r.exit_code, 0) << r.out << r.err;
    EXPECT_THAT(r.err + r.out, HasSubstr("mqtt_connect_failed"));
    EXPECT_THAT(rogue.log(), HasSubstr("OpenSSL Error"));  // the handshake failed on the broker's side too
    EXPECT_THAT(rogue.log(), Not(HasSubstr("as " + device)));
    EXPECT_EQ(installed_files(), std::vector<std::string>{kWorking});
    EXPECT_EQ(kit::read_file(target() / kWorking), "installed");
    EXPECT_THAT(server->access_log(), Not(HasSubstr(artifact_path(v))));
}

}  // namespace
