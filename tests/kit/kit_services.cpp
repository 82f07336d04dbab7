// The test kit's services (kit.hpp): a real Mosquitto with the project's broker config, a real
// nginx with the project's artifact-server config, and the mosquitto_sub / mosquitto_pub clients.
// Both services run on free ports of 127.0.0.1 unless told another address of this namespace.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <utility>

#include "kit.hpp"
#include "kit_internal.hpp"

namespace ota::testkit {

using namespace detail;

// ---- Broker ---------------------------------------------------------------------------------

std::string_view to_string(ConsoleRole role) {
    switch (role) {
        case ConsoleRole::operator_: return "operator";
        case ConsoleRole::viewer: return "viewer";
    }
    return "viewer";
}

namespace {
// The password file and ACL fragment of the console users, written by scripts/console-user (the
// operators' tool) into `dir`: passwd starts as a copy of the sim listener's file, if any.
void write_console_users(const fs::path& dir, const fs::path& sim_passwords, const std::vector<ConsoleUser>& users) {
    const auto passwd = dir / "passwd";
    std::error_code ec;
    fs::remove(passwd, ec);
    fs::remove(dir / "console.acl", ec);
    if (!sim_passwords.empty()) fs::copy_file(sim_passwords, passwd);
    write_file(dir / "console.acl", "");
    for (const auto& u : users) {
        auto r = run({(source_dir() / "scripts" / "console-user").string(), "--password-file", passwd.string(),
                      "--acl-fragment", (dir / "console.acl").string(), "add", u.name, "--role", std::string(to_string(u.role))},
                     30s, {}, u.password + "\n");
        if (r.exit_code != 0) fail("scripts/console-user add " + u.name + " failed: " + r.err);
    }
}
}  // namespace

Broker::Broker(const Pki& pki, BrokerOptions options) : pki_(pki), options_(std::move(options)), dir_("ota-broker") {
    fs::create_directories(dir_ / "data");
    if (!options_.console_users.empty()) write_console_users(dir_.path(), options_.password_file, options_.console_users);
    if (!options_.password_file.empty()) {
        // Each simulated device is a descriptor of the broker (a child inherits the limit).
        rlimit r{};
        if (::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
            r.rlim_cur = r.rlim_max;
            ::setrlimit(RLIMIT_NOFILE, &r);
        }
    }
    // A port found free may be taken by someone else before Mosquitto binds it: try another.
    for (int attempt = 1;; ++attempt) {
        port_ = free_port();
        if (!options_.password_file.empty()) sim_port_ = free_port();
        if (!options_.console_users.empty()) console_port_ = free_port();
        try {
            start();
            return;
        } catch (const std::runtime_error& e) {
            if (attempt >= 3 || std::string(e.what()).find("Address already in use") == std::string::npos) throw;
        }
    }
}

Broker::~Broker() { stop(); }

std::string Broker::url() const { return "mqtts://" + options_.bind_address + ":" + std::to_string(port_); }

std::string Broker::console_url() const { return "tcp://127.0.0.1:" + std::to_string(console_port_); }

int Broker::pid() const { return proc_ ? proc_->pid() : -1; }

std::string Broker::log() const { return read_file_or_empty(dir_ / "mosquitto.log"); }

void Broker::set_console_users(std::vector<ConsoleUser> users) {
    if (console_port_ == 0) fail("Broker::set_console_users: the broker has no console listener (BrokerOptions::console_users)");
    options_.console_users = std::move(users);
    write_console_users(dir_.path(), options_.password_file, options_.console_users);
    write_file(dir_ / "mosquitto.conf", render());
    if (!proc_) return;
    const auto offset = log().size();
    ::kill(proc_->pid(), SIGHUP);
    if (!wait_until([&] { return log().find("Reloading config", offset) != std::string::npos; }, 10s))
        fail("mosquitto did not log a reload within 10 s of SIGHUP; log tail:\n" + tail(log().substr(offset)));
}

void Broker::start() {
    if (proc_) return;
    const fs::path conf = dir_ / "mosquitto.conf";
    write_file(conf, render());
    // The broker's own certificate and key are in the PKI under the standard names.
    for (const auto& f : {pki_.ca(), pki_.cert("broker"), pki_.key("broker"), pki_.crl()})
        if (!fs::exists(f)) fail("broker: missing " + f.string());
    start_process(conf);
}

std::string Broker::render() const {
    // Mosquitto 2.0 drops privileges to `user` before it reads the certificates, so as root it
    // stays root here to read the 0600 keys in the (0700) temporary PKI directory.
    const std::string user = ::geteuid() == 0 ? "root" : "mosquitto";
    // The config is broker-config/mosquitto.conf.in, rendered by the same script the demo uses.
    std::vector<std::string> argv{(source_dir() / "scripts" / "render-broker-config").string(), "--port",
                                  std::to_string(port_), "--certs", pki_.dir.string(), "--data", (dir_ / "data").string(),
                                  "--acl", (source_dir() / "broker-config" / "acl").string(), "--user", user,
                                  "--bind", options_.bind_address};
    if (sim_port_ != 0) argv.insert(argv.end(), {"--sim-listener", std::to_string(sim_port_)});
    if (console_port_ != 0)
        argv.insert(argv.end(), {"--console-listener", std::to_string(console_port_), "--console-acl", (dir_ / "console.acl").string()});
    for (const auto& site : options_.sites) argv.insert(argv.end(), {"--site", site});
    if (console_port_ != 0 || !options_.sites.empty() || !options_.bridge_to.empty())
        argv.insert(argv.end(), {"--acl-out", (dir_ / "acl").string()});
    if (!options_.bridge_to.empty())
        argv.insert(argv.end(), {"--bridge-to", options_.bridge_to, "--bridge-name", options_.bridge_name});
    // One password file for both plain-TCP listeners (password_file is global): with console
    // users it is the merged copy.
    if (console_port_ != 0) argv.insert(argv.end(), {"--password-file", (dir_ / "passwd").string()});
    else if (sim_port_ != 0) argv.insert(argv.end(), {"--password-file", options_.password_file.string()});
    auto rendered = run(argv, 10s);
    if (rendered.exit_code != 0) fail("scripts/render-broker-config failed: " + rendered.err);
    return rendered.out;
}

void Broker::start_process(const fs::path& conf) {

    const auto log_file = dir_ / "mosquitto.log";
    const auto offset = read_file_or_empty(log_file).size();
    proc_ = std::make_unique<Process>(std::vector<std::string>{find_tool("mosquitto"), "-c", conf.string()}, log_file);
    // "running" is logged once every listener is bound; then the port must accept.
    const bool up = wait_until(
        [&] {
            if (!proc_->running()) return false;
            const auto text = read_file_or_empty(log_file);
            return text.size() > offset && text.find(" running", offset) != std::string::npos && port_accepts(port_, options_.bind_address) &&
                   (sim_port_ == 0 || port_accepts(sim_port_)) &&
                   (console_port_ == 0 || port_accepts(console_port_));
        },
        10s);
    if (!up) {
        proc_->stop(1s);
        proc_.reset();
        fail("mosquitto did not start on " + options_.bind_address + ":" + std::to_string(port_) + " within 10 s; log tail:\n" +
             tail(read_file_or_empty(log_file).substr(offset)));
    }
}

void Broker::stop() {
    if (!proc_) return;
    proc_->stop(5s);  // SIGTERM: Mosquitto writes its persistence file on the way out
    proc_.reset();
}

void Broker::restart() {
    stop();
    start();
}

void Broker::crash_restart() {
    if (proc_) {
        proc_->kill(SIGKILL);
        proc_->stop(0ms);  // collect it
        proc_.reset();
    }
    start();
}

// ---- ArtifactServer ---------------------------------------------------------------------------

ArtifactServer::ArtifactServer(const Pki& pki, const Options& options)
    : pki_(pki), dir_("ota-nginx"), root_(dir_ / "root"), host_(options.listen_address) {
    fs::create_directories(root_);
    fs::create_directories(dir_ / "tmp");
    const auto conf = dir_ / "nginx.conf";
    const auto log_file = dir_ / "nginx.log";
    const auto pid_file = dir_ / "nginx.pid";
    for (int attempt = 1;; ++attempt) {
        port_ = free_port();
        // The config comes from the same script the demo uses.
        const auto cert = options.cert.empty() ? pki_.cert("artifacts") : options.cert;
        const auto key = options.key.empty() ? pki_.key("artifacts") : options.key;
        std::vector<std::string> argv{(source_dir() / "scripts" / "render-nginx-config").string(), "--port",
                                      std::to_string(port_), "--listen", host_, "--listen-params", options.listen_params, "--cert", cert.string(), "--key",
                                      key.string(), "--root", root_.string(), "--prefix", dir_.path().string(),
                                      "--error-log", "stderr"};
        for (const auto& d : options.http) argv.insert(argv.end(), {"--http", d});
        for (const auto& d : options.server) argv.insert(argv.end(), {"--server", d});
        for (const auto& [prefix, d] : options.locations) argv.insert(argv.end(), {"--location", prefix, d});
        if (options.console_proxy > 0) argv.insert(argv.end(), {"--console-proxy", std::to_string(options.console_proxy)});
        if (!options.cache_origin.empty())
            argv.insert(argv.end(), {"--cache-origin", options.cache_origin, "--cache-origin-name", "localhost", "--cache-dir",
                                     cache_dir().string(), "--cache-ca", pki_.ca().string(), "--cache-slice", options.cache_slice});
        auto rendered = run(argv, 10s);
        if (rendered.exit_code != 0) fail("scripts/render-nginx-config failed: " + rendered.err);
        write_file(conf, rendered.out);
        std::error_code ec;
        fs::remove(pid_file, ec);
        const auto offset = read_file_or_empty(log_file).size();
        proc_ = std::make_unique<Process>(
            std::vector<std::string>{find_tool("nginx"), "-p", dir_.path().string(), "-c", conf.string(), "-e", "stderr"},
            log_file);
        // The pid file is written after the listening socket is bound.
        const bool up = wait_until([&] { return proc_->running() && fs::exists(pid_file) && port_accepts(port_, host_); }, 10s);
        if (up) return;
        proc_->stop(1s);
        proc_.reset();
        const auto text = read_file_or_empty(log_file).substr(offset);
        if (attempt < 3 && text.find("Address already in use") != std::string::npos) continue;
        fail("nginx did not start on " + host_ + ":" + std::to_string(port_) + " within 10 s; log tail:\n" + tail(text));
    }
}

ArtifactServer::~ArtifactServer() {
    if (proc_) proc_->stop(5s);
}

std::string ArtifactServer::url(std::string_view path) const {
    while (!path.empty() && path.front() == '/') path.remove_prefix(1);
    return "https://" + host_ + ":" + std::to_string(port_) + "/" + std::string(path);
}

std::string ArtifactServer::log() const { return read_file_or_empty(dir_ / "nginx.log"); }

std::string ArtifactServer::access_log() const { return read_file_or_empty(dir_ / "access.log"); }

// ---- mosquitto clients ------------------------------------------------------------------------

namespace {
std::vector<std::string> client_args(const std::string& tool, const Broker& broker, const Pki& pki, std::string_view who) {
    std::vector<std::string> a{tool, "-h", broker.host(), "-p", std::to_string(broker.port()), "--cafile", pki.ca().string()};
    if (!who.empty()) {
        a.insert(a.end(), {"--cert", pki.cert(who).string(), "--key", pki.key(who).string()});
    }
    return a;
}
}  // namespace

RunResult mosquitto_pub(const Broker& broker, const Pki& pki, std::string_view who, std::string_view topic,
                        std::string_view payload, bool retain, int qos) {
    auto a = client_args("mosquitto_pub", broker, pki, who);
    // The payload goes through stdin (-s), so any bytes can be sent; an empty one (which -s
    // refuses: "Zero length input") with -n, e.g. to delete a retained message.
    a.insert(a.end(), {"-t", std::string(topic), "-q", std::to_string(qos), payload.empty() ? "-n" : "-s"});
    if (retain) a.emplace_back("-r");
    return run(a, 10s, {}, std::string(payload));
}

Subscriber::Subscriber(const Broker& broker, const Pki& pki, std::string_view who, std::string_view topic,
                       std::chrono::milliseconds ready_timeout)
    : dir_("ota-sub") {
    // -d prints the protocol exchange (SUBACK, and each PUBLISH with its payload length), which
    // tells when the subscription is in place and delimits payloads exactly. mosquitto_sub flushes
    // stdout only after a message, so stdbuf makes it line-buffered for the SUBACK to show.
    auto a = client_args("mosquitto_sub", broker, pki, who);
    a.insert(a.begin(), {"stdbuf", "-oL"});
    a.insert(a.end(), {"-t", std::string(topic), "-q", "1", "-v", "-d"});
    proc_ = std::make_unique<Process>(a, dir_ / "sub.log");
    wait_until(
        [this] {
            if (!proc_->running()) return true;
            const auto text = proc_->log();
            const auto pos = text.find("Subscribed (mid: ");
            if (pos == std::string::npos) return false;
            const auto colon = text.find("): ", pos);
            const auto nl = text.find('\n', pos);
            if (colon == std::string::npos || nl == std::string::npos) return false;
            subscribed_ = std::atoi(text.c_str() + colon + 3) < 128;  // 0x80: refused
            return true;
        },
        ready_timeout, 5ms);
}

Subscriber::~Subscriber() {
    if (proc_) proc_->stop(2s);
}

std::string Subscriber::log() const { return proc_->log(); }

Received Subscriber::parse() const {
    Received r;
    const std::string text = proc_->log();
    const std::string marker = " received PUBLISH (";
    std::size_t pos = 0;
    while (pos < text.size()) {
        auto nl = text.find('\n', pos);
        if (nl == std::string::npos) break;  // a line still being written
        const std::string line = text.substr(pos, nl - pos);
        const auto m = line.find(marker);
        if (line.rfind("Client ", 0) == 0 && m != std::string::npos) {
            // Client <id> received PUBLISH (d0, q1, r1, m1, '<topic>', ... (<n> bytes))
            const auto q1 = line.find('\'', m);
            const auto q2 = line.rfind("', ... (");
            const auto nb = line.rfind('(');
            if (q1 == std::string::npos || q2 == std::string::npos || q2 <= q1) {
                pos = nl + 1;
                continue;
            }
            const std::string topic = line.substr(q1 + 1, q2 - q1 - 1);
            const auto size = static_cast<std::size_t>(std::strtoull(line.c_str() + nb + 1, nullptr, 10));
            // The -v line "<topic> <payload>\n" follows, possibly after other debug lines.
            std::size_t p = nl + 1;
            bool found = false;
            while (p < text.size()) {
                if (text.compare(p, topic.size() + 1, topic + " ") == 0 && p + topic.size() + 1 + size <= text.size()) {
                    r.messages.emplace_back(topic, text.substr(p + topic.size() + 1, size));
                    const auto end = p + topic.size() + 1 + size;
                    pos = end < text.size() && text[end] == '\n' ? end + 1 : end;
                    found = true;
                    break;
                }
                const auto next = text.find('\n', p);
                if (next == std::string::npos || text.compare(p, 7, "Client ") != 0) break;
                p = next + 1;
            }
            if (!found) break;  // its payload is not all written yet
            continue;
        }
        if (line.rfind("Client ", 0) != 0 && line.rfind("Subscribed (", 0) != 0) r.err += line + "\n";
        pos = nl + 1;
    }
    r.exit_code = stopped_by_us_ ? 0 : exit_code_;
    return r;
}

Received Subscriber::wait(std::size_t count, std::chrono::milliseconds timeout) {
    wait_until([&] { return !proc_->running() || parse().messages.size() >= count; }, timeout, 10ms);
    if (!proc_->running() && !stopped_by_us_) exit_code_ = proc_->stop(0ms);
    return parse();
}

Received Subscriber::stop() {
    if (proc_->running()) {
        stopped_by_us_ = true;
        proc_->stop(2s);
    } else if (!stopped_by_us_) {
        exit_code_ = proc_->stop(0ms);
    }
    return parse();
}

Received mosquitto_sub(const Broker& broker, const Pki& pki, std::string_view who, std::string_view topic, int count,
                       std::chrono::milliseconds duration) {
    Subscriber s(broker, pki, who, topic);
    if (s.subscribed()) s.wait(count > 0 ? static_cast<std::size_t>(count) : SIZE_MAX, duration);
    return s.stop();
}

}  // namespace ota::testkit
