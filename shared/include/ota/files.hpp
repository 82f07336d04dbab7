// File helpers with the project's error model. Writes are atomic and durable:
// write "<name>.tmp", fsync it, rename over the target, fsync the directory.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "ota/error.hpp"

namespace ota {

[[nodiscard]] Expected<std::string> read_file(const std::filesystem::path& path,
                                              std::size_t max_bytes = 64 * 1024 * 1024);
// `mode` applies to the new file (e.g. 0600 for private keys).
[[nodiscard]] Expected<void> write_file_atomic(const std::filesystem::path& path, std::string_view content,
                                               unsigned mode = 0644);
// Copy `from` to `to` atomically (temp file in the target directory, fsync, rename, fsync dir),
// creating the target's parent directories.
[[nodiscard]] Expected<void> copy_file_atomic(const std::filesystem::path& from, const std::filesystem::path& to);
// fsync a directory so a rename inside it is durable.
[[nodiscard]] Expected<void> fsync_dir(const std::filesystem::path& dir);

}  // namespace ota
