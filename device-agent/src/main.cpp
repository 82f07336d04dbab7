// ota-agent: the device agent (docs/agent.md).
//   ota-agent --config /etc/ota/agent.json [--once] [--no-auto-update] [--force-update]
//             [--print-config | --check-config | --sandbox-dropin]
// Exit status: 0 stopped cleanly, 1 fatal error (one line on stderr), 2 usage or config error,
// 3 restart requested after a self-update (the supervisor starts the new binary).
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include <CLI/CLI.hpp>

#include "agent.hpp"
#include "ota/build_info.hpp"
#include "ota/config.hpp"
#include "ota/crypto.hpp"
#include "ota/log.hpp"

namespace {
void on_signal(int) { ota::agent::g_stop = true; }
}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ota-agent: the OTA device agent"};
    std::string config_path = "/etc/ota/agent.json";
    bool once = false, no_auto = false, force = false, print_config = false, check_config = false, dropin = false;
    int once_wait = 10;
    app.set_version_flag("--version", std::string("ota-agent ") + ota::build::version + " (commit " +
                                          ota::build::git_commit + ", built " + ota::build::date + ")");
    app.add_option("--config", config_path, "Config file (JSON); <file>.d/*.json and OTA_AGENT_* override it")
        ->capture_default_str();
    app.add_flag("--once", once, "One reconcile cycle, then exit");
    app.add_option("--once-wait", once_wait, "With --once: seconds to wait for the broker and retained messages")
        ->capture_default_str();
    app.add_flag("--no-auto-update", no_auto, "Report only; download nothing (also AUTO_UPDATE=0)");
    app.add_flag("--force-update", force, "Apply the offered release now, even with auto-update off");
    app.add_flag("--print-config", print_config, "Print the effective config and exit");
    app.add_flag("--check-config", check_config,
                 "Check the config (and that its trusted keys load) without starting; exit 0 or 2 (the unit's ExecStartPre=)");
    app.add_flag("--sandbox-dropin", dropin,
                 "Print the systemd drop-in that makes the config's install targets writable, and exit (the generator's)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }

    auto layers = ota::config::load_layers(config_path, true, "OTA_AGENT_");
    if (!layers) {
        std::fprintf(stderr, "ota-agent: %s\n", layers.error().describe().c_str());
        return 2;
    }
    auto config = ota::agent::parse_agent_config(*layers);
    if (!config) {
        std::fprintf(stderr, "ota-agent: %s: %s\n", config_path.c_str(), config.error().describe().c_str());
        return 2;
    }
    if (const char* a = std::getenv("AUTO_UPDATE"); a && std::string(a) == "0") config->auto_update = false;
    if (no_auto) config->auto_update = false;
    if (print_config) {
        std::printf("%s\n", config->to_json().dump(2).c_str());
        return 0;
    }
    if (dropin) {
        std::fputs(ota::agent::sandbox_dropin(*config, config_path).c_str(), stdout);
        return 0;
    }
    auto format = ota::log::parse_format(config->log_format);
    auto level = ota::log::parse_level(config->log_level);
    if (!format || !level) {
        std::fprintf(stderr, "ota-agent: %s\n", (!format ? format.error() : level.error()).describe().c_str());
        return 2;
    }
    if (check_config) {
        ota::crypto::TrustStore trusted;
        if (auto t = trusted.load(config->trusted_keys); !t) {
            std::fprintf(stderr, "ota-agent: %s: trusted_keys %s: %s\n", config_path.c_str(), config->trusted_keys.c_str(),
                         t.error().describe().c_str());
            return 2;
        }
        // Under systemd this runs in the agent's sandbox: a target the config names but the sandbox
        // keeps read-only means the drop-in is older than the config (docs/systemd.md).
        for (const auto& dir : config->write_paths()) {
            if (::access(dir.c_str(), W_OK) == 0 || errno != EROFS) continue;
            std::fprintf(stderr,
                         "ota-agent: %s: warning: %s is read-only here; under systemd run `systemctl daemon-reload` "
                         "after changing install targets (docs/systemd.md, \"Install targets\")\n",
                         config_path.c_str(), dir.c_str());
        }
        std::printf("ota-agent: %s: config OK (device %s, %zu components, broker %s)\n", config_path.c_str(),
                    config->device_id.c_str(), config->components.size(), config->broker.c_str());
        return 0;
    }
    ota::log::init(*format, *level);

    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    ota::agent::Agent agent(std::move(*config));
    return agent.run({.once = once, .force_update = force, .once_wait = std::chrono::seconds(once_wait)});
}
