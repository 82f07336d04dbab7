// Explaining paho's failures in one line (shared/src/mqtt.cpp): paho's error codes and MQTT 5
// reason codes as text. The plain TCP probe of the broker, for a connect that paho reports only
// as "TCP/TLS connect failure" (see mqtt.cpp's header for why), is in common.hpp.
#pragma once

#include <string>

#include <mqtt/exception.h>

#include "common.hpp"

namespace ota::mqtt::detail {

// "Not authorized (0x87)"; paho's table of MQTT 5 reason code names.
[[nodiscard]] std::string reason_text(int code);
// "paho <rc>: <message>"
[[nodiscard]] std::string paho_text(const ::mqtt::exception& e);
// A readable cause for a paho failure of a publish/subscribe/disconnect.
[[nodiscard]] std::string operation_cause(const ::mqtt::exception& e);

}  // namespace ota::mqtt::detail
