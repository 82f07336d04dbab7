// Build identity shown by every binary's --version.
#pragma once

namespace ota::build {
extern const char* const version;     // project version, e.g. "0.1.0"
extern const char* const git_commit;  // short commit the build was configured from
extern const char* const date;        // UTC date of the configure step
}  // namespace ota::build
