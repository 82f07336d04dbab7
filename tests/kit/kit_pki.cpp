// The test kit's PKI (kit.hpp): the shared dev PKI, PKIs of a test's own, revocation, and server
// certificate variants (expired, other names) for the tests of refused TLS peers. Everything is
// made by scripts/make-dev-certs, scripts/revoke-device and the openssl CLI.
#include <mutex>
#include <stdexcept>

#include "kit.hpp"
#include "kit_internal.hpp"

namespace ota::testkit {

using namespace detail;

fs::path Pki::cert(std::string_view who) const { return dir / (std::string(who) + ".pem"); }
fs::path Pki::key(std::string_view who) const { return dir / (std::string(who) + ".key"); }

namespace {
void make_dev_certs(const fs::path& dir, int devices, const std::vector<std::string>& sans,
                    const std::vector<std::string>& clients = {}) {
    std::vector<std::string> argv{(source_dir() / "scripts" / "make-dev-certs").string(), dir.string(), "--devices",
                                  std::to_string(devices)};
    for (const auto& s : sans) argv.insert(argv.end(), {"--san", s});
    for (const auto& c : clients) argv.insert(argv.end(), {"--device", c});
    // The script keeps the CA and the certificates already made, and adds the missing devices.
    const auto r = run(argv, 60s);
    if (r.exit_code != 0)
        fail("scripts/make-dev-certs failed (exit " + std::to_string(r.exit_code) + "): " + r.err + r.out);
}
}  // namespace

const Pki& shared_pki(int devices) {
    static std::mutex mu;
    static std::unique_ptr<TempDir> dir;
    static Pki pki;
    static int have = -1;
    std::lock_guard lock(mu);
    if (!dir) {
        dir = std::make_unique<TempDir>("ota-pki");
        pki.dir = dir->path();
    }
    if (devices > have) {
        make_dev_certs(pki.dir, devices, {});
        have = devices;
    }
    return pki;
}

Pki make_pki(const fs::path& dir, const PkiOptions& options) {
    make_dev_certs(dir, options.devices, options.sans, options.clients);
    return Pki{dir};
}

RunResult revoke(const Pki& pki, std::string_view who, int broker_pid) {
    std::vector<std::string> argv{(source_dir() / "scripts" / "revoke-device").string(), std::string(who), "--pki",
                                  pki.dir.string()};
    if (broker_pid > 0) argv.insert(argv.end(), {"--pid", std::to_string(broker_pid)});
    return run(argv, 30s);
}

CertFiles issue_server_cert(const Pki& pki, const fs::path& dir, std::string_view name, const CertOptions& options) {
    const std::string n(name);
    const CertFiles out{dir / (n + ".pem"), dir / (n + ".key")};
    TempDir work("ota-cert");
    write_file(work / "index.txt", "");
    fs::create_directories(work / "new");
    std::string san;
    for (const auto& s : options.sans) san += (san.empty() ? "" : ", ") + s;
    if (san.empty()) fail("issue_server_cert " + n + ": no subject alternative names");
    write_file(work / "ca.cnf", "[ca]\ndefault_ca = c\n[c]\ndatabase = " + (work / "index.txt").string() +
                                    "\nnew_certs_dir = " + (work / "new").string() + "\ncertificate = " + pki.ca().string() +
                                    "\nprivate_key = " + (pki.dir / "ca.key").string() +
                                    "\ndefault_md = sha256\nrand_serial = yes\nunique_subject = no\npolicy = p\n"
                                    "[p]\ncommonName = supplied\n[server_ext]\nbasicConstraints = critical, CA:false\n"
                                    "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
                                    "subjectAltName = " + san + "\nauthorityKeyIdentifier = keyid\n");
    auto r = run({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc", "-keyout",
                  out.key.string(), "-out", (work / "req.csr").string(), "-subj", "/CN=" + n},
                 30s);
    if (r.exit_code != 0) fail("openssl req for " + n + ": " + r.err);
    std::vector<std::string> sign{"openssl", "ca", "-batch", "-config", (work / "ca.cnf").string(), "-in",
                                  (work / "req.csr").string(), "-out", out.cert.string(), "-notext", "-extensions",
                                  "server_ext"};
    if (!options.not_before.empty()) sign.insert(sign.end(), {"-startdate", options.not_before});
    if (!options.not_after.empty()) sign.insert(sign.end(), {"-enddate", options.not_after});
    else sign.insert(sign.end(), {"-days", "1"});
    r = run(sign, 30s);
    if (r.exit_code != 0) fail("openssl ca for " + n + ": " + r.err);
    return out;
}

}  // namespace ota::testkit
