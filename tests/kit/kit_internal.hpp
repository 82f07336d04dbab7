// Helpers shared by the kit's implementation files (kit.cpp, kit_pki.cpp, kit_services.cpp,
// kit_net.cpp); not part of the kit's interface.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

namespace ota::testkit::detail {

[[nodiscard]] std::string errno_text(int err);
// Throws std::runtime_error("test kit: <what>").
[[noreturn]] void fail(const std::string& what);
// The last `lines` lines of `text`, for error messages.
[[nodiscard]] std::string tail(const std::string& text, std::size_t lines = 30);
[[nodiscard]] std::string read_file_or_empty(const std::filesystem::path& path);
// An executable by name: $PATH first, then the sbin directories a non-root PATH may lack.
[[nodiscard]] std::string find_tool(const std::string& name);
// Whether a TCP connect to host:port (an IPv4 address) succeeds now.
[[nodiscard]] bool port_accepts(int port, const std::string& host = "127.0.0.1");

}  // namespace ota::testkit::detail
