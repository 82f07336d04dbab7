#include "options.hpp"

#include <cstdio>
#include <sstream>

#include <CLI/CLI.hpp>

#include "ota/build_info.hpp"
#include "ota/topics.hpp"

namespace ota::fleetsim {
namespace {

Expected<std::pair<std::string, std::string>> key_value(const std::string& flag, const std::string& text) {
    const auto eq = text.find('=');
    if (eq == std::string::npos || eq == 0)
        return fail(ErrorCode::config_invalid, flag + ": expected NAME=VALUE, got '" + text + "'");
    return std::pair{text.substr(0, eq), text.substr(eq + 1)};
}

std::set<std::string> split_list(const std::vector<std::string>& items) {
    std::set<std::string> out;
    for (const auto& item : items) {
        std::stringstream ss(item);
        for (std::string s; std::getline(ss, s, ',');)
            if (!s.empty()) out.insert(s);
    }
    return out;
}

Expected<void> invalid(const std::string& what) { return fail(ErrorCode::config_invalid, what); }

std::string version_text() {
    return std::string("ota-fleet-sim ") + build::version + " (commit " + build::git_commit + ", built " + build::date + ")";
}

}  // namespace

Expected<void> check_id_format(const std::string& format) {
    int conversions = 0;
    for (std::size_t i = 0; i < format.size(); ++i) {
        if (format[i] != '%') continue;
        std::size_t j = i + 1;
        while (j < format.size() && format[j] >= '0' && format[j] <= '9') ++j;
        if (j >= format.size() || format[j] != 'd')
            return invalid("--id-format: only one %d (with an optional width such as %05d) is allowed, got '" + format + "'");
        ++conversions;
        i = j;
    }
    if (conversions != 1) return invalid("--id-format: needs exactly one %d, got '" + format + "'");
    return {};
}

std::string format_id(const std::string& format, int number) {
    // check_id_format() allowed exactly one "%<digits>d": build it by hand, no printf on user text.
    const auto pct = format.find('%');
    const auto d = format.find('d', pct);
    const int width = d > pct + 1 ? std::stoi(format.substr(pct + 1, d - pct - 1)) : 0;
    const bool zero = d > pct + 1 && format[pct + 1] == '0';
    std::string digits = std::to_string(number);
    if (static_cast<int>(digits.size()) < width)
        digits.insert(0, static_cast<std::size_t>(width) - digits.size(), zero ? '0' : ' ');
    return format.substr(0, pct) + digits + format.substr(d + 1);
}

std::string SimOptions::device_id(int index) const { return format_id(id_format, first + index); }

Expected<ExitWhen> parse_exit_when(const std::string& text) {
    ExitWhen w;
    std::stringstream ss(text);
    for (std::string item; std::getline(ss, item, ',');) {
        if (item == "connected") w.connected = true;
        else if (item == "halted") w.halted = true;
        else if (item == "flood-done") w.flood_done = true;
        else if (item.starts_with("version=") && item.size() > 8) w.version = item.substr(8);
        else if (item.starts_with("final=") && item.size() > 6 && item.find_first_not_of("0123456789", 6) == std::string::npos)
            w.final_count = std::stoull(item.substr(6));
        else
            return fail(ErrorCode::config_invalid, "--exit-when: unknown condition '" + item +
                                                       "' (connected, halted, flood-done, version=V, final=N)");
    }
    return w;
}

Expected<void> validate(const SimOptions& o) {
    if (o.devices < 1 || o.devices > 1'000'000) return invalid("--devices: 1..1000000");
    if (o.first < 0) return invalid("--first: must not be negative");
    if (auto f = check_id_format(o.id_format); !f) return f;
    for (int i : {0, o.devices - 1})
        if (auto c = check_segment("device id", o.device_id(i)); !c) return invalid("--id-format: " + c.error().message);
    if (o.port < 1 || o.port > 65535) return invalid("--port: 1..65535");
    if (o.components.empty()) return invalid("--component: at least one");
    for (const auto& [name, version] : o.components)
        if (auto c = check_segment("component", name); !c) return invalid("--component: " + c.error().message);
    if (o.tls() && o.cert_dir.empty()) return invalid("--cafile needs --cert-dir (DIR/<device id>.pem and .key)");
    if (!o.tls() && o.password.empty() && o.secret.empty())
        return invalid("no credentials: give --secret (per-device passwords, see make-passwords), --password, "
                       "or --cafile with --cert-dir");
    if (o.trusted_keys.empty() && o.flood == 0 && !o.exit_when.connected)
        return invalid("--trusted-keys: required (the release signing key(s)), except with --flood or --exit-when connected");
    for (double r : {o.fail_rate, o.silent_rate, o.early_fraction})
        if (r < 0 || r > 1) return invalid("--fail-rate, --silent-rate, --early-fraction: 0..1");
    if (o.work_ms < 0 || o.jitter_ms < 0) return invalid("--work-ms, --jitter-ms: not negative");
    if (o.progress_steps < 1 || o.progress_steps > 100) return invalid("--progress-steps: 1..100");
    if (o.connect_window < 1) return invalid("--connect-window: at least 1");
    if (o.connect_timeout_ms < 100) return invalid("--connect-timeout-ms: at least 100");
    if (o.keepalive_s < 5 || o.keepalive_s > 1200) return invalid("--keepalive: 5..1200 s");
    if (o.flood_window < 1 || o.flood_window > 1000) return invalid("--flood-window: 1..1000");
    if (o.duration_s < 0) return invalid("--duration: not negative");
    if (o.download_sample < 0) return invalid("--download-sample: not negative");
    if (auto c = check_segment("rollout", o.flood_rollout); !c) return invalid("--flood-rollout: " + c.error().message);
    if (o.exit_when.flood_done && o.flood == 0) return invalid("--exit-when flood-done needs --flood N");
    if (auto c = check_segment("error code", o.fail_code); !c) return invalid("--fail-code: " + c.error().message);
    return {};
}

Command parse_command_line(int argc, const char* const* argv) {
    CLI::App app{"ota-fleet-sim: many simulated devices in one process, each a real MQTT client of the broker"};
    app.set_version_flag("--version", version_text());
    SimOptions o;
    std::vector<std::string> components, labels, fail_devices, silent_devices, fail_versions;
    std::string early_label = "ring=early", exit_when;
    std::int64_t seq_start = -1;

    app.add_option("--host", o.host, "Broker host")->capture_default_str()->group("Broker");
    app.add_option("--port", o.port, "Broker port (the simulation listener, see broker-config/README.md)")
        ->capture_default_str()->group("Broker");
    app.add_option("--secret", o.secret, "Per-device passwords are derived from this secret (make-passwords)")
        ->envname("OTA_FLEET_SIM_SECRET")->group("Broker");
    app.add_option("--password", o.password, "One password for every device (user name = device id)")->group("Broker");
    app.add_option("--cafile", o.cafile, "TLS with device certificates instead: the CA file")->group("Broker");
    app.add_option("--cert-dir", o.cert_dir, "With --cafile: DIR/<device id>.pem and DIR/<device id>.key")->group("Broker");
    app.add_option("--topic-prefix", o.topic_prefix, "Topic prefix")->capture_default_str()->group("Broker");
    app.add_option("--keepalive", o.keepalive_s, "MQTT keepalive, seconds")->capture_default_str()->group("Broker");
    app.add_option("--connect-window", o.connect_window, "Connections in progress at most (Mosquitto's listen backlog is 100)")
        ->capture_default_str()->group("Broker");
    app.add_option("--connect-timeout-ms", o.connect_timeout_ms, "No CONNACK within this: close and try again")
        ->capture_default_str()->group("Broker");

    app.add_option("--devices", o.devices, "Number of simulated devices")->capture_default_str()->group("Fleet");
    app.add_option("--first", o.first, "Number of the first device")->capture_default_str()->group("Fleet");
    app.add_option("--id-format", o.id_format, "Device id from its number (one %d, e.g. device-%03d)")
        ->capture_default_str()->group("Fleet");
    app.add_option("--component", components, "NAME=VERSION installed on every device (repeatable; VERSION empty = unknown); default app=1.0.0")
        ->group("Fleet");
    app.add_option("--platform", o.platform, "Platform in the inventory")->capture_default_str()->group("Fleet");
    app.add_option("--agent-version", o.agent_version, "Agent version reported")->capture_default_str()->group("Fleet");
    app.add_option("--label", labels, "KEY=VALUE label on every device (repeatable)")->group("Fleet");
    app.add_option("--early-fraction", o.early_fraction, "Fraction of devices (stable hash of the id) with --early-label")
        ->capture_default_str()->group("Fleet");
    app.add_option("--early-label", early_label, "The label of the early fraction")->capture_default_str()->group("Fleet");

    app.add_option("--trusted-keys", o.trusted_keys, "Release public key(s): a PEM file or a directory of *.pub/*.pem")
        ->group("Behaviour");
    app.add_flag("--verify-each", o.verify_each, "Verify the signature for every device (default: once per distinct envelope)")
        ->group("Behaviour");
    app.add_option("--work-ms", o.work_ms, "Time from the first status to the final one")->capture_default_str()->group("Behaviour");
    app.add_option("--jitter-ms", o.jitter_ms, "Up to this much more work time per update (uniform)")
        ->capture_default_str()->group("Behaviour");
    app.add_option("--progress-steps", o.progress_steps,
                   "downloading reports per update: 0 %, then evenly up to (not including) 100 % (the agent: 1 for a quick download)")
        ->capture_default_str()->group("Behaviour");
    app.add_flag("--health-check", o.health_check, "Report health_checking (components with a health check)")->group("Behaviour");
    app.add_option("--fail-rate", o.fail_rate, "Fraction of updates that fail (stable per device and rollout)")
        ->capture_default_str()->group("Behaviour");
    app.add_option("--fail-devices", fail_devices, "Devices whose updates fail (comma-separated, repeatable)")->group("Behaviour");
    app.add_option("--fail-versions", fail_versions, "Failures apply only to these versions; alone: every device fails them")
        ->group("Behaviour");
    app.add_option("--fail-code", o.fail_code, "Error code of a failure (health_check_failed: rolled_back; others: failed)")
        ->capture_default_str()->group("Behaviour");
    app.add_option("--silent-rate", o.silent_rate, "Fraction of devices that report downloading, then nothing")
        ->capture_default_str()->group("Behaviour");
    app.add_option("--silent-devices", silent_devices, "Devices that go silent (comma-separated, repeatable)")->group("Behaviour");
    app.add_option("--seed", o.seed, "Seed of the stable random choices")->capture_default_str()->group("Behaviour");
    app.add_option("--seq-start", seq_start, "First status seq of every device (default: microseconds since the epoch)")
        ->group("Behaviour");

    app.add_option("--download-sample", o.download_sample, "This many updates really download the artifact (HTTPS) and check size and SHA-256")
        ->capture_default_str()->group("Downloads");
    app.add_option("--download-cafile", o.download_cafile, "CA of the artifact server (default: the system's)")->group("Downloads");
    app.add_option("--download-dir", o.download_dir, "Where samples are downloaded to (default: a temporary directory)")
        ->group("Downloads");

    app.add_option("--events", o.events_file, "Write one JSON line per event to this file")->group("Measurement");
    app.add_option("--duration", o.duration_s, "Stop after this many seconds (0: until SIGINT/SIGTERM or --exit-when)")
        ->capture_default_str()->group("Measurement");
    app.add_option("--exit-when", exit_when, "Stop when: connected, halted, flood-done, version=V, final=N (comma: any)")
        ->group("Measurement");
    app.add_option("--flood", o.flood, "Flood mode: each device publishes N status messages as fast as the broker takes them")
        ->group("Measurement");
    app.add_option("--flood-rollout", o.flood_rollout, "Rollout id in flood messages")->capture_default_str()->group("Measurement");
    app.add_option("--flood-component", o.flood_component, "Component of flood messages (default: the first)")->group("Measurement");
    app.add_option("--flood-window", o.flood_window, "Unacknowledged flood messages per device, at most")
        ->capture_default_str()->group("Measurement");
    app.add_flag("--quiet", o.quiet, "No progress lines on stderr");

    PasswordOptions p;
    auto* mk = app.add_subcommand("make-passwords", "Write a Mosquitto password file for the simulated devices");
    mk->add_option("--devices", p.devices, "Number of devices")->capture_default_str();
    mk->add_option("--first", p.first, "Number of the first device")->capture_default_str();
    mk->add_option("--id-format", p.id_format, "Device id from its number")->capture_default_str();
    mk->add_option("--secret", p.secret, "Derive each device's password from this secret")->envname("OTA_FLEET_SIM_SECRET");
    mk->add_option("--password", p.password, "One password for every device instead");
    mk->add_option("--out", p.out, "The password file to write (mode 0600)")->required();
    mk->add_option("--hash", p.hash, "pbkdf2 ($7$, as mosquitto_passwd) or sha512 ($6$, cheaper for the broker)")
        ->capture_default_str()->check(CLI::IsMember({"pbkdf2", "sha512"}));
    mk->add_option("--iterations", p.iterations, "PBKDF2 iterations")->capture_default_str()->check(CLI::Range(1, 1000000));

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        std::ostringstream out, err;
        const int code = app.exit(e, out, err);
        return Exit{code == 0 ? 0 : 2, code == 0 ? out.str() : err.str()};
    }
    auto usage = [](const Error& e) { return Exit{2, "ota-fleet-sim: " + e.describe() + "\n"}; };

    if (*mk) {
        if (auto f = check_id_format(p.id_format); !f) return usage(f.error());
        if (p.secret.empty() == p.password.empty())
            return usage({ErrorCode::config_invalid, "make-passwords: give exactly one of --secret and --password"});
        if (p.devices < 1 || p.first < 0) return usage({ErrorCode::config_invalid, "make-passwords: --devices >= 1, --first >= 0"});
        return p;
    }

    if (!components.empty()) {
        o.components.clear();
        for (const auto& c : components) {
            auto kv = key_value("--component", c);
            if (!kv) return usage(kv.error());
            o.components.push_back(*kv);
        }
    }
    for (const auto& l : labels) {
        auto kv = key_value("--label", l);
        if (!kv) return usage(kv.error());
        o.labels[kv->first] = kv->second;
    }
    auto el = key_value("--early-label", early_label);
    if (!el) return usage(el.error());
    o.early_label = *el;
    o.fail_devices = split_list(fail_devices);
    o.silent_devices = split_list(silent_devices);
    o.fail_versions = split_list(fail_versions);
    if (seq_start >= 0) o.seq_start = seq_start;
    if (!exit_when.empty()) {
        auto w = parse_exit_when(exit_when);
        if (!w) return usage(w.error());
        o.exit_when = *w;
    }
    if (o.flood_component.empty()) o.flood_component = o.components.front().first;
    if (auto v = validate(o); !v) return usage(v.error());
    return o;
}

}  // namespace ota::fleetsim
