// The project's one error model: functions that can fail return ota::Expected<T>.
// An Error carries a stable code (documented in docs/protocol.md, sent in status messages)
// and a one-line message that names the input and the cause.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

#include "ota/expected_compat.hpp"  // std::expected where the library hides it (clang 14)

namespace ota {

enum class ErrorCode {
    io_error,             // a file could not be read or written
    config_invalid,       // a config file, env var or flag is wrong
    json_invalid,         // bytes that are not JSON
    manifest_invalid,     // JSON that is not a valid manifest (field path in the message)
    schema_unsupported,   // a manifest/envelope schema version this build does not know
    signature_invalid,    // signature does not verify over the signed bytes
    unknown_key,          // the key id is not in the trusted set
    key_invalid,          // a key file that cannot be loaded
    version_invalid,      // a version string that does not fit its scheme
    version_incomparable, // two versions of different schemes or tag prefixes
    manifest_expired,     // the manifest's expiry time has passed
    hash_mismatch,        // content does not match the declared SHA-256
    size_mismatch,        // content is not of the declared size
    mqtt_connect_failed,  // broker unreachable, TLS failure, or refused connection
    mqtt_publish_failed,  // a publish was not acknowledged or was refused
    mqtt_subscribe_failed,
    download_failed,      // HTTP error, TLS failure, connection lost (after retries)
    download_stalled,     // the transfer fell below the low-speed limit or passed its deadline
    disk_full,            // no space left while writing (ENOSPC/EDQUOT)
    decrypt_failed,       // AES-256-GCM authentication failed or no key for the key id
    archive_unsafe,       // an archive entry with an absolute path, '..' or an escaping link
    install_failed,       // an install step failed (the message names the step and command)
    health_check_failed,  // the component did not become healthy after the install
    platform_incompatible,// the manifest does not list this device's platform
    target_not_allowed,   // the release's install type or target is not what the device's config allows
    agent_too_old,        // the manifest needs a newer agent
    version_not_newer,    // downgrade or replay of an older/equal release
    crash_loop,           // the agent restarted too often in the same step and gave up
    rollback_requested,   // an operator asked to roll back (cmd "rollback")
    request_invalid,      // a control request that is malformed or names no valid command
    not_found,            // a control request names a rollout or device the controller does not know
    state_conflict,       // a control request that the rollout's state does not allow (approve twice...)
    read_only,            // a command that changes the fleet, sent on a read-only query topic
    keyset_invalid,       // a keyset document that is malformed, or conflicts with the accepted one
    keyset_expired,       // the trusted keyset has expired: no new install until a fresh one arrives
    timeout,
    internal,
};

// The stable, snake_case name of a code, as it appears on the wire.
[[nodiscard]] std::string_view to_string(ErrorCode code) noexcept;

struct [[nodiscard]] Error {
    ErrorCode code{ErrorCode::internal};
    std::string message;

    // Prefix the message with where it happened: "reading release.key: <message>".
    [[nodiscard]] Error with_context(std::string_view context) const {
        return Error{code, std::string(context) + ": " + message};
    }
    // "<code>: <message>", for logs and command-line errors.
    [[nodiscard]] std::string describe() const;
};

template <typename T>
using Expected = std::expected<T, Error>;

[[nodiscard]] inline std::unexpected<Error> fail(ErrorCode code, std::string message) {
    return std::unexpected<Error>(Error{code, std::move(message)});
}

}  // namespace ota
