#include "ota/error.hpp"

namespace ota {

std::string_view to_string(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::io_error: return "io_error";
        case ErrorCode::config_invalid: return "config_invalid";
        case ErrorCode::json_invalid: return "json_invalid";
        case ErrorCode::manifest_invalid: return "manifest_invalid";
        case ErrorCode::schema_unsupported: return "schema_unsupported";
        case ErrorCode::signature_invalid: return "signature_invalid";
        case ErrorCode::unknown_key: return "unknown_key";
        case ErrorCode::key_invalid: return "key_invalid";
        case ErrorCode::version_invalid: return "version_invalid";
        case ErrorCode::version_incomparable: return "version_incomparable";
        case ErrorCode::manifest_expired: return "manifest_expired";
        case ErrorCode::hash_mismatch: return "hash_mismatch";
        case ErrorCode::size_mismatch: return "size_mismatch";
        case ErrorCode::mqtt_connect_failed: return "mqtt_connect_failed";
        case ErrorCode::mqtt_publish_failed: return "mqtt_publish_failed";
        case ErrorCode::mqtt_subscribe_failed: return "mqtt_subscribe_failed";
        case ErrorCode::download_failed: return "download_failed";
        case ErrorCode::download_stalled: return "download_stalled";
        case ErrorCode::disk_full: return "disk_full";
        case ErrorCode::decrypt_failed: return "decrypt_failed";
        case ErrorCode::archive_unsafe: return "archive_unsafe";
        case ErrorCode::install_failed: return "install_failed";
        case ErrorCode::health_check_failed: return "health_check_failed";
        case ErrorCode::platform_incompatible: return "platform_incompatible";
        case ErrorCode::target_not_allowed: return "target_not_allowed";
        case ErrorCode::agent_too_old: return "agent_too_old";
        case ErrorCode::version_not_newer: return "version_not_newer";
        case ErrorCode::crash_loop: return "crash_loop";
        case ErrorCode::rollback_requested: return "rollback_requested";
        case ErrorCode::request_invalid: return "request_invalid";
        case ErrorCode::not_found: return "not_found";
        case ErrorCode::state_conflict: return "state_conflict";
        case ErrorCode::read_only: return "read_only";
        case ErrorCode::keyset_invalid: return "keyset_invalid";
        case ErrorCode::keyset_expired: return "keyset_expired";
        case ErrorCode::timeout: return "timeout";
        case ErrorCode::internal: return "internal";
    }
    return "internal";
}

std::string Error::describe() const {
    return std::string(to_string(code)) + ": " + message;
}

}  // namespace ota
