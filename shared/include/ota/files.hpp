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
// A file written in pieces and put in place atomically, for content too large to hold in memory:
// the bytes go to "<path>.tmp.<pid>" in the target's directory; commit() fsyncs it, renames it
// over `path` and fsyncs the directory. Destroyed without a successful commit(), the temp file
// is removed and `path` is untouched.
class AtomicFileWriter {
public:
    // `mode` applies to the new file.
    [[nodiscard]] static Expected<AtomicFileWriter> create(const std::filesystem::path& path, unsigned mode = 0644);
    AtomicFileWriter(AtomicFileWriter&& other) noexcept;
    AtomicFileWriter& operator=(AtomicFileWriter&&) = delete;
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
    ~AtomicFileWriter();
    [[nodiscard]] Expected<void> write(std::string_view data);
    [[nodiscard]] Expected<void> commit();

private:
    AtomicFileWriter(std::filesystem::path path, std::filesystem::path tmp, int fd);
    void discard();
    std::filesystem::path path_;
    std::filesystem::path tmp_;
    int fd_{-1};
};

// fsync a directory so a rename inside it is durable.
[[nodiscard]] Expected<void> fsync_dir(const std::filesystem::path& dir);

}  // namespace ota
