// ota-fleet-sim's command line (docs/fleet-sim.md lists every flag): one struct for a run of the
// simulator and one for the `make-passwords` helper, parsed and checked here so that the rest
// of the simulator can trust them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "ota/error.hpp"

namespace ota::fleetsim {

// What makes a run stop by itself (any of those given, checked a few times a second).
struct ExitWhen {
    bool connected{false};          // every device connected once
    bool halted{false};             // some device received a `halted` wave message
    bool flood_done{false};         // the flood (--flood) finished
    std::optional<std::string> version;  // every device has some component at this version
    std::optional<std::uint64_t> final_count;  // this many devices reached a final stage
};

struct SimOptions {
    // broker
    std::string host{"127.0.0.1"};
    int port{1884};
    std::string topic_prefix{"ota/v1"};
    int keepalive_s{60};
    std::string password;         // the same password for every device (user name = device id)
    std::string secret;           // per-device passwords derived from this (see passwords.hpp)
    std::string cafile;           // TLS instead: the CA, and --cert-dir with <id>.pem / <id>.key
    std::filesystem::path cert_dir;
    int connect_window{64};       // connections started and not yet acknowledged, at most
    int connect_timeout_ms{10000};

    // the fleet
    int devices{100};
    int first{1};
    std::string id_format{"device-%05d"};
    std::vector<std::pair<std::string, std::string>> components{{"app", "1.0.0"}};  // name, version ("" = unknown)
    std::string platform{"linux/amd64"};
    std::string agent_version{"0.1.0"};
    std::map<std::string, std::string> labels;             // on every device
    double early_fraction{0};                               // of devices with early_label
    std::pair<std::string, std::string> early_label{"ring", "early"};

    // behaviour
    std::filesystem::path trusted_keys;
    bool verify_each{false};      // verify every offer (default: once per distinct envelope)
    int work_ms{1000};
    int jitter_ms{0};
    int progress_steps{1};  // downloading reports per update (the agent: 1 for a quick download)
    bool health_check{false};  // report health_checking (a device whose component has a health check)
    double fail_rate{0};
    std::set<std::string> fail_devices;
    std::set<std::string> fail_versions;  // failures only for these versions (all devices fail if no rate/list)
    std::string fail_code{"health_check_failed"};
    double silent_rate{0};
    std::set<std::string> silent_devices;
    std::uint64_t seed{1};
    std::optional<std::int64_t> seq_start;  // default: microseconds since the epoch at start

    // sample downloads
    int download_sample{0};
    std::string download_cafile;
    std::filesystem::path download_dir;

    // measurement and run bounds
    std::filesystem::path events_file;
    double duration_s{0};         // 0: until SIGINT/SIGTERM or --exit-when
    ExitWhen exit_when;
    std::uint64_t flood{0};       // status messages per device
    std::string flood_rollout{"flood"};
    std::string flood_component;  // default: the first component
    int flood_window{20};         // unacknowledged flood messages per device, at most
    bool quiet{false};

    [[nodiscard]] std::string device_id(int index) const;  // index 0 = --first
    [[nodiscard]] bool tls() const { return !cafile.empty(); }
};

struct PasswordOptions {
    int devices{100};
    int first{1};
    std::string id_format{"device-%05d"};
    std::string secret;
    std::string password;
    std::filesystem::path out;
    std::string hash{"pbkdf2"};  // pbkdf2 ($7$, what mosquitto_passwd writes) or sha512 ($6$, cheaper)
    int iterations{101};
};

// What the command line asks for: a run, the password file, or an exit (help, version, a usage
// error) with its status and the text to print.
struct Exit {
    int code{0};
    std::string text;
};
using Command = std::variant<SimOptions, PasswordOptions, Exit>;

[[nodiscard]] Command parse_command_line(int argc, const char* const* argv);

// The checks behind parse_command_line (config_invalid naming the flag).
[[nodiscard]] Expected<void> validate(const SimOptions& o);
[[nodiscard]] Expected<ExitWhen> parse_exit_when(const std::string& text);
// "%05d"-style formats with exactly one integer conversion.
[[nodiscard]] Expected<void> check_id_format(const std::string& format);
[[nodiscard]] std::string format_id(const std::string& format, int number);

}  // namespace ota::fleetsim
