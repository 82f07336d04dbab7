// Explaining MQTT failures in one line (shared/src/mqtt.cpp): paho's error codes and MQTT 5
// reason codes as text, and a plain TCP probe of the broker for a connect that paho reports only
// as "TCP/TLS connect failure" (see mqtt.cpp's header for why).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include <mqtt/exception.h>

namespace ota::mqtt::detail {

// "5s", "250ms"
[[nodiscard]] std::string ms_text(std::chrono::milliseconds d);
// "Not authorized (0x87)"; paho's table of MQTT 5 reason code names.
[[nodiscard]] std::string reason_text(int code);
[[nodiscard]] bool is_tls_uri(std::string_view uri);
// Parse "scheme://host:port" (host may be "[v6]"). Returns false if it does not look like one.
[[nodiscard]] bool split_uri(std::string_view uri, std::string& host, std::string& port);
// Open a plain TCP connection to the broker's address: "" when TCP works (the failure was in the
// TLS or MQTT handshake), else a readable cause (refused, unreachable, unresolvable).
[[nodiscard]] std::string probe_tcp(const std::string& uri);
// "paho <rc>: <message>"
[[nodiscard]] std::string paho_text(const ::mqtt::exception& e);
// A readable cause for a paho failure of a publish/subscribe/disconnect.
[[nodiscard]] std::string operation_cause(const ::mqtt::exception& e);
// Why `path` cannot be opened for reading ("" when it can): strerror.
[[nodiscard]] std::string read_problem(const std::string& path);

}  // namespace ota::mqtt::detail
