// ota-download-bench: one ota::download::fetch() from the command line, for bench/download.sh and
// for the tests that must kill a download mid-transfer (kill -9) or run it in a mount namespace
// with a tiny tmpfs (disk full).
//   ota-download-bench --url URL --dest FILE --size N --sha256 HEX [--cafile F] [--cert F --key F]
//                      [--low-speed-limit BYTES] [--low-speed-time S] [--stall-timeout S]
//                      [--deadline S] [--total-deadline S] [--attempts N] [--list-dir]
// Success: exit 0 and one line on stdout
//   ok bytes_transferred=N resumed_from=N attempts=N restarts_from_zero=N seconds=S MBps=R sha256=HEX
// Failure: exit 1 and "ota-download-bench: <code>: <message>" on stderr. --list-dir prints the
// names in the destination's directory afterwards ("dir: a b c"), for callers that cannot look.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>

#include "ota/download.hpp"

int main(int argc, char** argv) {
    std::map<std::string, std::string> opt;
    bool list_dir = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--list-dir") {
            list_dir = true;
        } else if (a.rfind("--", 0) == 0 && i + 1 < argc) {
            opt[a.substr(2)] = argv[++i];
        } else {
            std::cerr << "ota-download-bench: unexpected argument " << a << "\n";
            return 2;
        }
    }
    for (const char* required : {"url", "dest", "size", "sha256"}) {
        if (!opt.contains(required)) {
            std::cerr << "ota-download-bench: --" << required << " is required\n";
            return 2;
        }
    }
    auto num = [&](const std::string& key, std::uint64_t fallback) {
        return opt.contains(key) ? std::strtoull(opt[key].c_str(), nullptr, 10) : fallback;
    };
    ota::download::Request r;
    r.url = opt["url"];
    r.dest = opt["dest"];
    r.expected_size = num("size", 0);
    r.expected_sha256 = opt["sha256"];
    r.cafile = opt["cafile"];
    r.certfile = opt["cert"];
    r.keyfile = opt["key"];
    r.low_speed_limit = num("low-speed-limit", r.low_speed_limit);
    r.low_speed_time = std::chrono::seconds(num("low-speed-time", 30));
    r.stall_timeout = std::chrono::seconds(num("stall-timeout", 10));
    r.deadline = std::chrono::seconds(num("deadline", 3600));
    r.total_deadline = std::chrono::seconds(num("total-deadline", 6 * 3600));
    r.max_attempts = static_cast<int>(num("attempts", 5));
    r.retry_window = std::chrono::seconds(num("retry-window", 0));
    r.backoff_min = std::chrono::milliseconds(50);
    r.backoff_max = std::chrono::milliseconds(500);

    const auto start = std::chrono::steady_clock::now();
    auto result = ota::download::fetch(r);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    int rc = 0;
    if (result) {
        std::printf("ok bytes_transferred=%llu resumed_from=%llu attempts=%d restarts_from_zero=%d seconds=%.3f "
                    "MBps=%.1f sha256=%s\n",
                    static_cast<unsigned long long>(result->bytes_transferred),
                    static_cast<unsigned long long>(result->resumed_from), result->attempts, result->restarts_from_zero,
                    seconds, static_cast<double>(result->bytes_transferred) / 1e6 / seconds, result->sha256.c_str());
    } else {
        std::cerr << "ota-download-bench: " << result.error().describe() << "\n";
        rc = 1;
    }
    if (list_dir) {
        std::string names;
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(r.dest.parent_path(), ec))
            names += " " + e.path().filename().string();
        std::printf("dir:%s\n", names.c_str());
    }
    std::fflush(stdout);
    return rc;
}
