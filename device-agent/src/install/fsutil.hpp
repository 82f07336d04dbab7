// Small POSIX file helpers shared by the installers (internal to ota::agent_install). Every
// failed call is an Error naming the call, the path and errno's text; nothing is ignored.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ota/error.hpp"

namespace ota::agent::detail {

namespace fs = std::filesystem;

// Closes a descriptor on scope exit.
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() { reset(); }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    Fd(Fd&& other) noexcept : fd_(other.release()) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) {
            reset();
            fd_ = other.release();
        }
        return *this;
    }
    [[nodiscard]] int get() const { return fd_; }
    [[nodiscard]] bool valid() const { return fd_ >= 0; }
    int release() {
        const int fd = fd_;
        fd_ = -1;
        return fd;
    }
    void reset();

private:
    int fd_{-1};
};

// "<what> <path>: <strerror(err)>" with `code`.
[[nodiscard]] std::unexpected<Error> sys_fail(ErrorCode code, std::string_view what, const fs::path& path, int err);

// Which file a path names (lstat: a symlink is itself), to recognise a file the agent placed
// after renames and restarts. Inode numbers are stable on the local filesystems devices use
// (ext4, xfs, btrfs, f2fs); the size guards against an inode reused by another file.
struct FileId {
    std::uint64_t ino{0};
    std::uint64_t size{0};
    bool operator==(const FileId&) const = default;
    [[nodiscard]] nlohmann::json to_json() const { return {{"ino", ino}, {"size", size}}; }
    [[nodiscard]] static std::optional<FileId> from_json(const nlohmann::json& j);
};
// nullopt when the path does not exist (or cannot be examined).
[[nodiscard]] std::optional<FileId> file_id(const fs::path& path);
[[nodiscard]] bool exists_nofollow(const fs::path& path);

// Write everything or fail.
[[nodiscard]] Expected<void> write_all(int fd, const char* data, std::size_t size, const fs::path& path);
// fsync an open descriptor / a file by path / a directory.
[[nodiscard]] Expected<void> fsync_fd(int fd, const fs::path& path);
[[nodiscard]] Expected<void> fsync_path(const fs::path& path);
[[nodiscard]] Expected<void> fsync_parent(const fs::path& path);
// rename(2) then fsync the target's directory (and the source's, when it differs).
[[nodiscard]] Expected<void> rename_durable(const fs::path& from, const fs::path& to);
// Remove a file or symlink if it exists (not a directory), then fsync its directory.
[[nodiscard]] Expected<void> remove_file_durable(const fs::path& path);
// Remove a directory tree so that a crash midway never leaves a half-deleted tree under its
// name: rename it to "<parent>/.<name>.deleting" (fsync), then delete that.
[[nodiscard]] Expected<void> remove_tree_durable(const fs::path& dir);
// Create `to` as a new file (O_EXCL after removing a stale one) with `mode`, let `fill` write its
// content through the writer it is given, fsync it; on any failure `to` is removed.
using ChunkWriter = std::function<Expected<void>(std::string_view chunk)>;
[[nodiscard]] Expected<void> write_new_file(const fs::path& to, unsigned mode,
                                            const std::function<Expected<void>(const ChunkWriter&)>& fill);
// Copy `from` into a new file `to` as write_new_file does, streaming.
[[nodiscard]] Expected<void> copy_to_new_file(const fs::path& from, const fs::path& to, unsigned mode);
// Replace `link_path` with a hard link to `target` (via "<link_path>.tmp" + rename), falling back to
// a copy (same mode) where hard links are not possible; durable.
[[nodiscard]] Expected<void> link_or_copy_durable(const fs::path& target, const fs::path& link_path, unsigned mode);

// The last non-empty line of `text` (for error messages), at most 300 characters.
[[nodiscard]] std::string last_line(std::string_view text);
// A file name made only of [A-Za-z0-9._+-], not "." or "..", not starting with '.', 1-255 chars.
[[nodiscard]] bool is_safe_name(std::string_view name);
// The URL's last path segment (query and fragment removed): where a `file` install puts it.
[[nodiscard]] std::string url_basename(std::string_view url);

}  // namespace ota::agent::detail
