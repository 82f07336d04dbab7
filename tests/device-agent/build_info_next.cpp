// Test-only build identity for `ota-agent-next`: the same agent sources, reporting version
// 99.0.0, so a self-update can be tested from one real agent binary to a newer one. Linked
// into the executable itself, these definitions win over shared/'s build_info (the archive
// member is then never pulled in).
#include "ota/build_info.hpp"

namespace ota::build {
const char* const version = "99.0.0";
const char* const git_commit = "test-next";
const char* const date = "2026-01-01";
}  // namespace ota::build
