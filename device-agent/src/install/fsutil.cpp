#include "install/fsutil.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ota::agent::detail {

void Fd::reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

std::unexpected<Error> sys_fail(ErrorCode code, std::string_view what, const fs::path& path, int err) {
    if (err == ENOSPC || err == EDQUOT) code = ErrorCode::disk_full;
    return fail(code, std::string(what) + " " + path.string() + ": " + std::strerror(err));
}

std::optional<FileId> FileId::from_json(const nlohmann::json& j) {
    if (!j.is_object() || !j.contains("ino") || !j.contains("size")) return std::nullopt;
    if (!j["ino"].is_number_unsigned() || !j["size"].is_number_unsigned()) return std::nullopt;
    return FileId{j["ino"].get<std::uint64_t>(), j["size"].get<std::uint64_t>()};
}

std::optional<FileId> file_id(const fs::path& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
    return FileId{static_cast<std::uint64_t>(st.st_ino), static_cast<std::uint64_t>(st.st_size)};
}

bool exists_nofollow(const fs::path& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

Expected<void> write_all(int fd, const char* data, std::size_t size, const fs::path& path) {
    while (size > 0) {
        const auto n = ::write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            return sys_fail(ErrorCode::io_error, "writing", path, errno);
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return {};
}

Expected<void> fsync_fd(int fd, const fs::path& path) {
    if (::fsync(fd) != 0) return sys_fail(ErrorCode::io_error, "syncing", path, errno);
    return {};
}

Expected<void> fsync_path(const fs::path& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) return sys_fail(ErrorCode::io_error, "opening", path, errno);
    return fsync_fd(fd.get(), path);
}

Expected<void> fsync_parent(const fs::path& path) {
    const auto parent = path.parent_path();
    return fsync_path(parent.empty() ? fs::path(".") : parent);
}

Expected<void> rename_durable(const fs::path& from, const fs::path& to) {
    if (::rename(from.c_str(), to.c_str()) != 0)
        return sys_fail(ErrorCode::io_error, "renaming " + from.string() + " to", to, errno);
    if (auto s = fsync_parent(to); !s) return s;
    if (from.parent_path() != to.parent_path()) return fsync_parent(from);
    return {};
}

Expected<void> remove_file_durable(const fs::path& path) {
    if (::unlink(path.c_str()) != 0) {
        if (errno == ENOENT) return {};
        return sys_fail(ErrorCode::io_error, "removing", path, errno);
    }
    return fsync_parent(path);
}

Expected<void> remove_tree_durable(const fs::path& dir) {
    std::error_code ec;
    const auto doomed = dir.parent_path() / ("." + dir.filename().string() + ".deleting");
    if (exists_nofollow(dir)) {
        fs::remove_all(doomed, ec);
        if (ec) return fail(ErrorCode::io_error, "removing " + doomed.string() + ": " + ec.message());
        if (auto r = rename_durable(dir, doomed); !r) return r;
    }
    fs::remove_all(doomed, ec);
    if (ec) return fail(ErrorCode::io_error, "removing " + doomed.string() + ": " + ec.message());
    return {};
}

Expected<void> write_new_file(const fs::path& to, unsigned mode, const std::function<Expected<void>(const ChunkWriter&)>& fill) {
    if (::unlink(to.c_str()) != 0 && errno != ENOENT) return sys_fail(ErrorCode::io_error, "removing", to, errno);
    Fd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, static_cast<mode_t>(mode)));
    if (!out.valid()) return sys_fail(ErrorCode::io_error, "cannot create", to, errno);
    auto result = [&]() -> Expected<void> {
        if (::fchmod(out.get(), static_cast<mode_t>(mode)) != 0) return sys_fail(ErrorCode::io_error, "chmod", to, errno);
        if (auto f = fill([&](std::string_view chunk) { return write_all(out.get(), chunk.data(), chunk.size(), to); }); !f)
            return f;
        return fsync_fd(out.get(), to);
    }();
    out.reset();
    if (!result) ::unlink(to.c_str());
    return result;
}

Expected<void> copy_to_new_file(const fs::path& from, const fs::path& to, unsigned mode) {
    Fd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in.valid()) return sys_fail(ErrorCode::io_error, "cannot read", from, errno);
    return write_new_file(to, mode, [&](const ChunkWriter& write) -> Expected<void> {
        std::string buf(1 << 20, '\0');
        while (true) {
            const auto n = ::read(in.get(), buf.data(), buf.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                return sys_fail(ErrorCode::io_error, "cannot read", from, errno);
            }
            if (n == 0) return {};
            if (auto w = write({buf.data(), static_cast<std::size_t>(n)}); !w) return w;
        }
    });
}

Expected<void> link_or_copy_durable(const fs::path& target, const fs::path& link_path, unsigned mode) {
    if (const auto id = file_id(link_path); id && id == file_id(target)) return fsync_parent(link_path);  // already linked
    const auto tmp = fs::path(link_path.string() + ".tmp");
    if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) return sys_fail(ErrorCode::io_error, "removing", tmp, errno);
    if (::link(target.c_str(), tmp.c_str()) != 0) {
        const int err = errno;
        if (err != EPERM && err != EXDEV && err != EMLINK && err != ENOTSUP)
            return sys_fail(ErrorCode::io_error, "linking " + target.string() + " to", tmp, err);
        if (auto c = copy_to_new_file(target, tmp, mode); !c) return c;
    }
    // rename(2) of two links to the same file does nothing and leaves both: remove tmp then.
    if (auto r = rename_durable(tmp, link_path); !r) return r;
    return remove_file_durable(tmp);
}

std::string last_line(std::string_view text) {
    std::size_t end = text.size();
    while (end > 0) {
        while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r' || text[end - 1] == ' ')) --end;
        if (end == 0) break;
        const auto nl = text.rfind('\n', end - 1);
        const auto begin = nl == std::string_view::npos ? 0 : nl + 1;
        auto line = std::string(text.substr(begin, end - begin));
        if (line.size() > 300) line = line.substr(0, 300) + "...";
        return line;
    }
    return {};
}

bool is_safe_name(std::string_view name) {
    if (name.empty() || name.size() > 255 || name.front() == '.') return false;
    for (const char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '_' || c == '-' || c == '+';
        if (!ok) return false;
    }
    return true;
}

std::string url_basename(std::string_view url) {
    auto path = url.substr(0, url.find_first_of("?#"));
    const auto slash = path.rfind('/');
    return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

}  // namespace ota::agent::detail
