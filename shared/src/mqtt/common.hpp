// Helpers both MQTT clients use (shared/src/mqtt.cpp: paho; shared/src/mqtt_mosquitto.cpp:
// libmosquitto), free of either library.
#pragma once

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>

namespace ota::mqtt::detail {

// "0x87"
[[nodiscard]] std::string hex_code(int code);
// "5s", "250ms"
[[nodiscard]] std::string ms_text(std::chrono::milliseconds d);
[[nodiscard]] bool is_tls_uri(std::string_view uri);
// Parse "scheme://host:port" (host may be "[v6]"). Returns false if it does not look like one.
[[nodiscard]] bool split_uri(std::string_view uri, std::string& host, std::string& port);
// Open a plain TCP connection to the broker's address: "" when TCP works (the failure was in the
// TLS or MQTT handshake), else a readable cause (refused, unreachable, unresolvable).
[[nodiscard]] std::string probe_tcp(const std::string& uri);
// Why `path` cannot be opened for reading ("" when it can): strerror.
[[nodiscard]] std::string read_problem(const std::string& path);

// For a TLS broker: "cannot read the <CA file|client certificate|private key> '<path>': <why>"
// for the first of the three that cannot be opened ("" when all can; empty paths are skipped).
[[nodiscard]] std::string tls_files_problem(const std::string& cafile, const std::string& certfile, const std::string& keyfile);

// Run an application handler on the dispatch thread: whatever it throws is printed (naming the
// client) and swallowed, so it cannot end that thread or the process.
template <class Call>
void run_handler(const std::string& where, Call&& call) noexcept {
    try {
        call();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ota::mqtt: handler threw on %s: %s\n", where.c_str(), e.what());
    } catch (...) {
        std::fprintf(stderr, "ota::mqtt: handler threw on %s\n", where.c_str());
    }
}

}  // namespace ota::mqtt::detail
