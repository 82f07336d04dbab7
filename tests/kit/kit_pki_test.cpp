// scripts/make-dev-certs (extra names, the CRL), scripts/revoke-device and the kit's certificate
// variants, checked with the openssl CLI.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kit.hpp"

namespace {

namespace kit = ota::testkit;
using ::testing::HasSubstr;
using ::testing::Not;

std::string text_of(const kit::fs::path& cert) {
    auto r = kit::run({"openssl", "x509", "-in", cert.string(), "-noout", "-text"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
}
std::string script(const std::string& name) { return (kit::source_dir() / "scripts" / name).string(); }

TEST(MakeDevCerts, ExtraNamesGoIntoBothServerCertificatesOnly) {
    kit::TempDir dir("ota-pki-san");
    kit::PkiOptions o;
    o.devices = 1;
    o.sans = {"IP:10.0.0.1", "DNS:broker.site"};
    const auto pki = kit::make_pki(dir.path(), o);
    for (const char* server : {"broker", "artifacts"}) {
        const auto t = text_of(pki.cert(server));
        EXPECT_THAT(t, HasSubstr("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:10.0.0.1, DNS:broker.site")) << server;
    }
    EXPECT_THAT(text_of(pki.cert("device-001")), Not(HasSubstr("10.0.0.1")));
    // Both verify against the CA, and the empty CRL is signed by it.
    auto v = kit::run({"openssl", "verify", "-CAfile", pki.ca().string(), "-crl_check", "-CRLfile", pki.crl().string(),
                       pki.cert("broker").string(), pki.cert("device-001").string()});
    EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
    auto crl = kit::run({"openssl", "crl", "-in", pki.crl().string(), "-noout", "-text"});
    EXPECT_THAT(crl.out, HasSubstr("No Revoked Certificates"));

    // Again without --san: the server certificates are kept as they are.
    const auto before = kit::read_file(pki.cert("broker"));
    (void)kit::make_pki(dir.path(), kit::PkiOptions{});
    EXPECT_EQ(kit::read_file(pki.cert("broker")), before);
}

TEST(MakeDevCerts, AMalformedSanIsAOneLineErrorNamingIt) {
    kit::TempDir dir("ota-pki-bad");
    for (const char* bad : {"10.0.0.1", "URI:x", "IP:", "DNS:-x", "DNS:a b"}) {
        auto r = kit::run({script("make-dev-certs"), (dir / "pki").string(), "--san", bad});
        EXPECT_EQ(r.exit_code, 2) << bad;
        EXPECT_THAT(r.err, HasSubstr(std::string("--san '") + bad + "'")) << bad;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_FALSE(kit::fs::exists(dir / "pki" / "ca.pem")) << bad;
    }
}

TEST(RevokeDevice, RevokesOnceListsItAndNamesBadInput) {
    kit::TempDir dir("ota-pki-revoke");
    kit::PkiOptions o;
    o.devices = 2;
    const auto pki = kit::make_pki(dir.path(), o);
    auto r = kit::revoke(pki, "device-001");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("lists 1 certificate(s)"));
    r = kit::revoke(pki, "device-001");  // again: not an error, still one entry
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("already revoked"));
    EXPECT_THAT(r.out, HasSubstr("lists 1 certificate(s)"));
    auto v = kit::run({"openssl", "verify", "-CAfile", pki.ca().string(), "-crl_check", "-CRLfile", pki.crl().string(),
                       pki.cert("device-001").string()});
    EXPECT_NE(v.exit_code, 0);
    EXPECT_THAT(v.out + v.err, HasSubstr("certificate revoked"));
    v = kit::run({"openssl", "verify", "-CAfile", pki.ca().string(), "-crl_check", "-CRLfile", pki.crl().string(),
                  pki.cert("device-002").string()});
    EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
    // make-dev-certs writes the list again from the database: the revocation stays.
    (void)kit::make_pki(dir.path(), o);
    v = kit::run({"openssl", "verify", "-CAfile", pki.ca().string(), "-crl_check", "-CRLfile", pki.crl().string(),
                  pki.cert("device-001").string()});
    EXPECT_NE(v.exit_code, 0);

    struct Case {
        std::vector<std::string> args;
        std::string says;
    };
    for (const auto& c : std::vector<Case>{{{"device-009", "--pki", pki.dir.string()}, "device-009.pem: no such certificate"},
                                           {{"../ca", "--pki", pki.dir.string()}, "device '../ca'"},
                                           {{"broker", "--pki", pki.dir.string()}, "'broker' is not a device identity"},
                                           {{"device-002", "--pki", pki.dir.string(), "--pid", "x1"}, "--pid must be a process id"},
                                           {{"device-002", "--pki", (dir / "nowhere").string()}, "no such certificate"}}) {
        std::vector<std::string> argv{script("revoke-device")};
        argv.insert(argv.end(), c.args.begin(), c.args.end());
        auto bad = kit::run(argv);
        EXPECT_NE(bad.exit_code, 0) << c.says;
        EXPECT_THAT(bad.err, HasSubstr(c.says));
        EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
    }
}

TEST(IssueServerCert, VariantsAreSignedByTheCaWithTheGivenNamesAndDates) {
    kit::TempDir dir("ota-pki-variant");
    const auto& pki = kit::shared_pki();
    kit::CertOptions expired;
    expired.not_before = "20200101000000Z";
    expired.not_after = "20200102000000Z";
    const auto e = kit::issue_server_cert(pki, dir.path(), "expired", expired);
    auto v = kit::run({"openssl", "verify", "-CAfile", pki.ca().string(), e.cert.string()});
    EXPECT_THAT(v.out + v.err, HasSubstr("certificate has expired"));
    kit::CertOptions named;
    named.sans = {"DNS:elsewhere.example"};
    const auto n = kit::issue_server_cert(pki, dir.path(), "elsewhere", named);
    v = kit::run({"openssl", "verify", "-CAfile", pki.ca().string(), n.cert.string()});
    EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
    EXPECT_THAT(text_of(n.cert), HasSubstr("DNS:elsewhere.example"));
    EXPECT_THAT(text_of(n.cert), Not(HasSubstr("127.0.0.1")));
    // The PKI's own CRL is untouched.
    EXPECT_THAT(kit::run({"openssl", "crl", "-in", pki.crl().string(), "-noout", "-text"}).out, HasSubstr("No Revoked"));
}

}  // namespace
