// ota-controller: opens releases wave by wave and halts waves that fail (docs/controller.md).
//   ota-controller --config /etc/ota/controller.json [--print-config | --check-config]
// Exit status: 0 stopped cleanly (SIGTERM/SIGINT), 1 fatal error, 2 usage or config error.
#include <atomic>
#include <csignal>
#include <cstdio>

#include <CLI/CLI.hpp>

#include "ota/build_info.hpp"
#include "ota/config.hpp"
#include "ota/crypto.hpp"
#include "ota/log.hpp"
#include "policy.hpp"
#include "service.hpp"

namespace {
std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }
}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ota-controller: staged rollouts that halt themselves"};
    std::string config_path = "/etc/ota/controller.json";
    bool print_config = false, check_config = false;
    app.set_version_flag("--version", std::string("ota-controller ") + ota::build::version + " (commit " +
                                          ota::build::git_commit + ", built " + ota::build::date + ")");
    app.add_option("--config", config_path, "Config file (JSON); <file>.d/*.json and OTA_CONTROLLER_* override it")
        ->capture_default_str();
    app.add_flag("--print-config", print_config, "Print the effective config (with every wave's policy) and exit");
    app.add_flag("--check-config", check_config,
                 "Check the config (and that its trusted keys load) without starting; exit 0 or 2 (the unit's ExecStartPre=)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
    auto layers = ota::config::load_layers(config_path, true, "OTA_CONTROLLER_");
    if (!layers) {
        std::fprintf(stderr, "ota-controller: %s\n", layers.error().describe().c_str());
        return 2;
    }
    auto config = ota::controller::parse_controller_config(*layers);
    if (!config) {
        std::fprintf(stderr, "ota-controller: %s: %s\n", config_path.c_str(), config.error().describe().c_str());
        return 2;
    }
    if (print_config) {
        std::printf("%s\n", config->to_json().dump(2).c_str());
        return 0;
    }
    auto format = ota::log::parse_format(config->log_format);
    auto level = ota::log::parse_level(config->log_level);
    if (!format || !level) {
        std::fprintf(stderr, "ota-controller: %s\n", (!format ? format.error() : level.error()).describe().c_str());
        return 2;
    }
    if (check_config) {
        ota::crypto::TrustStore trusted;
        if (auto t = trusted.load(config->trusted_keys); !t) {
            std::fprintf(stderr, "ota-controller: %s: trusted_keys %s: %s\n", config_path.c_str(),
                         config->trusted_keys.c_str(), t.error().describe().c_str());
            return 2;
        }
        std::printf("ota-controller: %s: config OK (%zu fleets, database %s)\n", config_path.c_str(),
                    config->fleets.size(), config->database.c_str());
        return 0;
    }
    ota::log::init(*format, *level);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    return ota::controller::run_service(*config, g_stop);
}
