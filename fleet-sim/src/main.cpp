// ota-fleet-sim: N simulated devices in one process, each a real MQTT client of the broker
// (docs/fleet-sim.md).
//   ota-fleet-sim --devices 10000 --port 1884 --secret S --trusted-keys release.pub [...]
//   ota-fleet-sim make-passwords --devices 10000 --secret S --out sim.passwd
// Prints a JSON summary on stdout at exit. Exit status: 0 done, 1 could not start, 2 usage.
#include <sys/stat.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>

#include "fleet.hpp"
#include "options.hpp"
#include "passwords.hpp"

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

int make_passwords(const ota::fleetsim::PasswordOptions& p) {
    using namespace ota::fleetsim;
    const auto hash = p.hash == "sha512" ? PasswordHash::sha512 : PasswordHash::pbkdf2_sha512;
    const auto tmp = p.out.string() + ".tmp";
    {
        const auto old = ::umask(077);
        std::ofstream out(tmp, std::ios::trunc);
        ::umask(old);
        if (!out) {
            std::fprintf(stderr, "ota-fleet-sim: io_error: cannot write %s\n", tmp.c_str());
            return 1;
        }
        for (int i = 0; i < p.devices; ++i) {
            const auto id = format_id(p.id_format, p.first + i);
            out << password_file_line(id, p.password.empty() ? derive_password(p.secret, id) : p.password, hash, p.iterations)
                << '\n';
        }
        out.close();
        if (!out) {
            std::fprintf(stderr, "ota-fleet-sim: io_error: cannot write %s\n", tmp.c_str());
            return 1;
        }
    }
    if (std::rename(tmp.c_str(), p.out.c_str()) != 0) {
        std::fprintf(stderr, "ota-fleet-sim: io_error: cannot rename %s to %s\n", tmp.c_str(), p.out.c_str());
        return 1;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    auto command = ota::fleetsim::parse_command_line(argc, argv);
    if (auto* e = std::get_if<ota::fleetsim::Exit>(&command)) {
        std::fputs(e->text.c_str(), e->code == 0 ? stdout : stderr);
        return e->code;
    }
    if (auto* p = std::get_if<ota::fleetsim::PasswordOptions>(&command)) return make_passwords(*p);
    const auto& options = std::get<ota::fleetsim::SimOptions>(command);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    ota::fleetsim::Fleet fleet(options);
    if (auto i = fleet.init(); !i) {
        std::fprintf(stderr, "ota-fleet-sim: %s\n", i.error().describe().c_str());
        return 1;
    }
    fleet.run(g_stop);
    std::printf("%s\n", fleet.summary().dump().c_str());
    return 0;
}
