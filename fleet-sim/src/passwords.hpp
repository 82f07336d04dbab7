// Credentials of simulated devices on the broker's simulation listener: user name = device id,
// and a password that is either the same for all devices or derived per device from a secret,
// so the simulator and the password file agree without storing 10,000 passwords anywhere.
#pragma once

#include <string>
#include <string_view>

#include "ota/error.hpp"

namespace ota::fleetsim {

// The first 32 hex characters of HMAC-SHA256(secret, device id).
[[nodiscard]] std::string derive_password(std::string_view secret, std::string_view device);

// One line of a Mosquitto 2.0 password file ("user:$7$<iterations>$<salt>$<hash>" for PBKDF2-
// SHA512, which mosquitto_passwd writes, or "user:$6$<salt>$<hash>" for salted SHA-512), with a
// fresh random 12-byte salt. No newline.
enum class PasswordHash { pbkdf2_sha512, sha512 };
[[nodiscard]] std::string password_file_line(std::string_view user, std::string_view password, PasswordHash hash,
                                             int iterations = 101);

// Check a password against such a line (tests; mirrors what the broker does).
[[nodiscard]] bool password_line_matches(std::string_view line, std::string_view password);

}  // namespace ota::fleetsim
