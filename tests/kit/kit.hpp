// The test kit: everything an integration test needs to run against real services on loopback.
// Every later test uses it. Services are started per test suite (SetUpTestSuite) or per test,
// on free ports, with certificates generated into a temporary directory, and stopped by PID.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ota::testkit {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// The source tree (for broker-config/, scripts/) and the build tree (for binaries).
[[nodiscard]] fs::path source_dir();
[[nodiscard]] fs::path binary_dir();

// A fresh directory under $TMPDIR, removed (recursively) by the destructor.
class TempDir {
public:
    explicit TempDir(std::string_view prefix = "ota-test");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    [[nodiscard]] const fs::path& path() const { return path_; }
    [[nodiscard]] fs::path operator/(std::string_view name) const { return path_ / name; }

private:
    fs::path path_;
};

// A TCP port on 127.0.0.1 that nothing listens on right now (bind to port 0, read it back).
[[nodiscard]] int free_port();

// Poll `condition` every `interval` until it is true or `timeout` passes; returns the last result.
bool wait_until(const std::function<bool()>& condition,
                std::chrono::milliseconds timeout = 10s,
                std::chrono::milliseconds interval = 20ms);

// Write / read a whole file (throws std::runtime_error on failure: tests only).
void write_file(const fs::path& path, std::string_view content);
[[nodiscard]] std::string read_file(const fs::path& path);

// The result of running a command to completion.
struct RunResult {
    int exit_code{-1};       // exit status, or 128+signal
    std::string out;         // stdout
    std::string err;         // stderr
};
// Run argv (no shell) with extra environment variables, capturing stdout and stderr,
// killing it (and failing with exit_code -1) after `timeout`.
RunResult run(const std::vector<std::string>& argv,
              std::chrono::milliseconds timeout = 30s,
              const std::map<std::string, std::string>& env = {},
              const std::optional<std::string>& stdin_data = std::nullopt);

// A child process started in the background (stdout and stderr appended to `log_file`), in a
// session of its own; stopped (SIGTERM, then SIGKILL to its process group) by PID on destruction.
class Process {
public:
    Process(const std::vector<std::string>& argv, const fs::path& log_file,
            const std::map<std::string, std::string>& env = {});
    ~Process();
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    [[nodiscard]] int pid() const { return pid_; }
    [[nodiscard]] bool running();
    // Send a signal to the process only (e.g. SIGKILL for crash tests) and wait (bounded, 5 s)
    // until it has exited if the signal ends it.
    void kill(int signal);
    // SIGTERM, wait up to `grace`, then SIGKILL; returns the exit status (128+signal if killed).
    int stop(std::chrono::milliseconds grace = 5s);
    [[nodiscard]] std::string log() const;

private:
    void reap();   // kill what is left of the process group, then collect the exited child
    int pid_{-1};
    int status_{-1};       // exit status once exited_ (128+signal if killed)
    bool exited_{false};   // exited (a zombie until reap(), which keeps its PID and group id ours)
    bool reaped_{false};
    fs::path log_file_;
};

// A dev PKI made by scripts/make-dev-certs into `dir`: a CA, the broker and the artifact server
// (SAN localhost, 127.0.0.1, ::1 and any extra names), ci, controller, operator, and devices
// device-001..N. Every identity X has dir/X.pem (certificate) and dir/X.key (private key, 0600);
// dir/ca.pem is the CA, dir/crl.pem its revocation list (the broker's crlfile). The CN is the
// identity's name, which the broker takes as the MQTT user name.
struct Pki {
    fs::path dir;
    [[nodiscard]] fs::path ca() const { return dir / "ca.pem"; }
    [[nodiscard]] fs::path crl() const { return dir / "crl.pem"; }
    [[nodiscard]] fs::path cert(std::string_view who) const;
    [[nodiscard]] fs::path key(std::string_view who) const;
};
// Generate once per test binary (cached in a process-wide temp dir, removed at exit) with
// `devices` device certs; a later call asking for more devices adds them under the same CA.
// Thread-safe.
[[nodiscard]] const Pki& shared_pki(int devices = 3);

// A PKI of its own in `dir` (which the caller owns), for tests that revoke certificates, need a
// second CA, or extra server names: scripts/make-dev-certs DIR --devices N [--san S]...
struct PkiOptions {
    int devices{3};
    std::vector<std::string> sans;  // "IP:10.78.1.1", "DNS:broker.site": added to broker and artifacts
    std::vector<std::string> clients;  // more client certificates by name (make-dev-certs --device), e.g. a site's bridge
};
[[nodiscard]] Pki make_pki(const fs::path& dir, const PkiOptions& options = {});

// Revoke `who` with scripts/revoke-device (CRL written again; broker_pid > 0: SIGHUP to it).
// Returns the script's result.
RunResult revoke(const Pki& pki, std::string_view who, int broker_pid = 0);

// A server certificate variant signed by `pki`'s CA, written to dir/<name>.pem and dir/<name>.key,
// with openssl ca (a throw-away CA database, so the PKI's CRL is untouched). Dates are openssl's
// YYYYMMDDHHMMSSZ; empty means from now for a day. For tests of certificates that must be refused.
struct CertOptions {
    std::vector<std::string> sans{"DNS:localhost", "IP:127.0.0.1"};
    std::string not_before;  // e.g. "20200101000000Z"
    std::string not_after;   // e.g. "20200102000000Z" (expired)
};
struct CertFiles {
    fs::path cert, key;
};
[[nodiscard]] CertFiles issue_server_cert(const Pki& pki, const fs::path& dir, std::string_view name,
                                          const CertOptions& options = {});

// A login of the web console (scripts/console-user): operator reads everything and writes only
// control/request/<name>; viewer only reads.
enum class ConsoleRole { operator_, viewer };
[[nodiscard]] std::string_view to_string(ConsoleRole role);
struct ConsoleUser {
    std::string name, password;
    ConsoleRole role{ConsoleRole::viewer};
};

// A real Mosquitto with the project's broker-config (mosquitto.conf rendered for the test:
// TLS listener with require_certificate + use_identity_as_username, the project's ACL file,
// persistence into the temp dir) on a free loopback port.
struct BrokerOptions {
    // Non-empty: also the simulation listener for ota-fleet-sim (render-broker-config
    // --sim-listener): plain TCP on 127.0.0.1:sim_port(), user name + password from this file.
    fs::path password_file{};
    // The TLS listener's address (an IPv4 address of this namespace), e.g. the cloud side of a
    // NatSite (kit_net.hpp); the broker certificate must name it (PkiOptions::sans).
    std::string bind_address{"127.0.0.1"};
    // Non-empty: also the console listener (render-broker-config --console-listener) on
    // 127.0.0.1:console_port(), with these logins, added by scripts/console-user to the password
    // file (a copy of password_file, merged, when both are given) and to the ACL fragment that
    // render-broker-config appends to broker-config/acl.
    std::vector<ConsoleUser> console_users{};
    // A core broker: the ACL blocks of these sites' bridges (render-broker-config --site).
    std::vector<std::string> sites{};
    // A site broker: its bridge to the core at bridge_to ("127.0.0.1:PORT") as bridge_name, with
    // that name's client certificate from the Pki (render-broker-config --bridge-to).
    std::string bridge_to{};
    std::string bridge_name{};
};
class Broker {
public:
    explicit Broker(const Pki& pki, BrokerOptions options = {});
    ~Broker();
    Broker(const Broker&) = delete;
    Broker& operator=(const Broker&) = delete;
    [[nodiscard]] int port() const { return port_; }
    [[nodiscard]] std::string url() const;  // "mqtts://<bind address>:<port>"
    [[nodiscard]] const std::string& host() const { return options_.bind_address; }
    [[nodiscard]] int pid() const;  // the running mosquitto's PID (-1 when stopped)
    [[nodiscard]] int sim_port() const { return sim_port_; }  // 0 without BrokerOptions::password_file
    [[nodiscard]] int console_port() const { return console_port_; }  // 0 without BrokerOptions::console_users
    // The console listener's URL for ota::mqtt ("tcp://127.0.0.1:<console_port>").
    [[nodiscard]] std::string console_url() const;
    [[nodiscard]] std::string log() const;
    // Replace the console users (scripts/console-user on the broker's files, the config rendered
    // again, then SIGHUP: what broker-config/README.md tells operators to do). Only for a broker
    // made with console users. Returns once the broker has logged the reload.
    void set_console_users(std::vector<ConsoleUser> users);
    // Stop and start again on the same port with the same persistence (retained messages kept).
    void restart();
    // kill -9 (nothing saved on the way out: what persistence wrote last survives), then start
    // again on the same port.
    void crash_restart();
    void stop();

private:
    void start();
    [[nodiscard]] std::string render() const;  // mosquitto.conf by scripts/render-broker-config
    void start_process(const fs::path& conf);
    const Pki& pki_;
    BrokerOptions options_;
    TempDir dir_;
    int port_{0};
    int sim_port_{0};
    int console_port_{0};
    std::unique_ptr<Process> proc_;
};

// A real nginx serving `root()` over HTTPS (the artifact server's cert from the Pki) on a free
// loopback port, with Range requests, ETag and If-Range as nginx does them.
class ArtifactServer {
public:
    // Variants of the server for tests, as raw nginx directives (scripts/render-nginx-config).
    struct Options {
        std::vector<std::string> http;    // in the http block, e.g. a `map`
        std::vector<std::string> server;  // in the server block, e.g. "ssl_verify_client on;"
        // location prefix -> its directives, e.g. {"/norange/", "max_ranges 0;"} (files under
        // root()/norange/ are then served without Range support)
        std::vector<std::pair<std::string, std::string>> locations;
        // The listening address (an IPv4 address of this namespace), e.g. the cloud side of a
        // NatSite; url() uses it. The certificate must name it.
        std::string listen_address{"127.0.0.1"};
        // Parameters of the listen directive, e.g. "sndbuf=32k".
        std::string listen_params;
        // Another certificate and key than the PKI's `artifacts` (issue_server_cert, another Pki).
        fs::path cert, key;
        // Non-zero: the web console's server (render-nginx-config --console-proxy): CSP headers,
        // MIME types, /mqtt proxied to websockify on this loopback port.
        int console_proxy{0};
        // Non-empty: a site artifact cache in front of this origin (render-nginx-config
        // --cache-origin, "https://127.0.0.1:PORT/"; verified as "localhost" against the Pki's CA),
        // in pieces of cache_slice. root() is then not served; cache_dir() holds the cache.
        std::string cache_origin;
        std::string cache_slice{"1m"};
    };
    explicit ArtifactServer(const Pki& pki) : ArtifactServer(pki, Options{}) {}
    ArtifactServer(const Pki& pki, const Options& options);
    ~ArtifactServer();
    ArtifactServer(const ArtifactServer&) = delete;
    ArtifactServer& operator=(const ArtifactServer&) = delete;
    [[nodiscard]] int port() const { return port_; }
    [[nodiscard]] const fs::path& root() const { return root_; }
    [[nodiscard]] fs::path cache_dir() const { return dir_ / "cache"; }
    [[nodiscard]] std::string url(std::string_view path) const;  // "https://<listen address>:<port>/<path>"
    [[nodiscard]] std::string log() const;
    // nginx's access log (one line per request: "... \"GET /path HTTP/1.1\" status bytes ...";
    // a cache's lines end with cache=HIT, MISS, ...).
    [[nodiscard]] std::string access_log() const;

private:
    const Pki& pki_;
    TempDir dir_;
    fs::path root_;
    std::string host_;
    int port_{0};
    std::unique_ptr<Process> proc_;
};

// Subscribe with the mosquitto_sub client as `who` (a Pki identity; "" connects without a client
// certificate) to `topic` at QoS 1 and collect messages for `duration` after the broker has
// acknowledged the subscription (or until `count` messages arrived; count <= 0: for `duration`).
// exit_code is the client's own when it gave up by itself (refused connection), else 0.
struct Received {
    std::vector<std::pair<std::string, std::string>> messages;  // (topic, payload)
    int exit_code{0};
    std::string err;
};
Received mosquitto_sub(const Broker& broker, const Pki& pki, std::string_view who,
                       std::string_view topic, int count, std::chrono::milliseconds duration);
// Publish with mosquitto_pub as `who`. Returns the run result (exit 0 even when the ACL
// silently drops the message with MQTT 3.1.1; use MQTT 5 (`-V 5`) to see the reason code).
RunResult mosquitto_pub(const Broker& broker, const Pki& pki, std::string_view who,
                        std::string_view topic, std::string_view payload, bool retain = false,
                        int qos = 1);

// A mosquitto_sub (QoS 1, clean session) running in the background, for tests that must publish
// only once a subscriber is in place: the constructor returns when the broker has acknowledged
// the subscription (SUBACK) or the client has given up, bounded by `ready_timeout`.
class Subscriber {
public:
    Subscriber(const Broker& broker, const Pki& pki, std::string_view who, std::string_view topic,
               std::chrono::milliseconds ready_timeout = 10s);
    ~Subscriber();
    Subscriber(const Subscriber&) = delete;
    Subscriber& operator=(const Subscriber&) = delete;
    // True once the SUBACK arrived and granted the subscription.
    [[nodiscard]] bool subscribed() const { return subscribed_; }
    // Wait until `count` messages arrived, the client exited or `timeout` passed; what arrived so far.
    Received wait(std::size_t count, std::chrono::milliseconds timeout);
    // Disconnect (SIGTERM) and return everything received; exit_code is the client's own if it
    // exited by itself, 0 if it was stopped here.
    Received stop();
    // The client's debug output (-d): CONNECT/SUBACK/PUBLISH exchange and any error.
    [[nodiscard]] std::string log() const;

private:
    [[nodiscard]] Received parse() const;
    TempDir dir_;
    std::unique_ptr<Process> proc_;
    bool subscribed_{false};
    bool stopped_by_us_{false};
    int exit_code_{0};
};

}  // namespace ota::testkit
