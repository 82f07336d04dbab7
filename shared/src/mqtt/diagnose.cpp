#include "diagnose.hpp"

#include <mqtt/async_client.h>

namespace ota::mqtt::detail {

namespace paho = ::mqtt;

std::string reason_text(int code) {
    std::string name = paho::exception::reason_code_str(code);
    if (name.empty()) name = "reason code";
    return name + " (" + hex_code(code) + ")";
}

std::string paho_text(const paho::exception& e) {
    std::string msg = e.get_message();
    if (msg.empty()) msg = e.get_error_str();
    return "paho " + std::to_string(e.get_return_code()) + ": " + msg;
}

std::string operation_cause(const paho::exception& e) {
    int rc = e.get_return_code();
    int reason = static_cast<int>(e.get_reason_code());
    if (reason >= 0x80) return "the broker answered " + reason_text(reason);
    switch (rc) {
        case MQTTASYNC_DISCONNECTED: return "not connected";
        case MQTTASYNC_MAX_BUFFERED_MESSAGES:
            return "too many messages buffered or awaiting acknowledgement (raise Options::max_buffered)";
        case MQTTASYNC_BAD_UTF8_STRING: return "the topic is not valid UTF-8";
        case MQTTASYNC_NULL_PARAMETER: return "empty topic";
        case MQTTASYNC_TOPICNAME_TRUNCATED: return "the topic contains a NUL character";
        case MQTTASYNC_BAD_QOS: return "QoS must be 0, 1 or 2";
        case MQTTASYNC_OPERATION_INCOMPLETE: return "the connection was lost before the broker answered";
        default: return paho_text(e);
    }
}

}  // namespace ota::mqtt::detail
