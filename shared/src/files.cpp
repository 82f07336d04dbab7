#include "ota/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ota {
namespace {

namespace fs = std::filesystem;

std::unexpected<Error> io_fail(std::string_view what, const fs::path& path, int err) {
    return fail(ErrorCode::io_error, std::string(what) + " " + path.string() + ": " + std::strerror(err));
}

// Closes a descriptor on scope exit.
struct Fd {
    int fd{-1};
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

Expected<void> write_all(int fd, const char* data, std::size_t size, const fs::path& path) {
    while (size > 0) {
        const auto n = ::write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            return io_fail("writing", path, errno);
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return {};
}

fs::path temp_name(const fs::path& path) {
    return path.parent_path() / (path.filename().string() + ".tmp." + std::to_string(::getpid()));
}

Expected<void> finish(Fd& out, const fs::path& tmp, const fs::path& path) {
    if (::fsync(out.fd) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        return io_fail("syncing", tmp, err);
    }
    ::close(out.fd);
    out.fd = -1;
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        return io_fail("renaming into", path, err);
    }
    return fsync_dir(path.parent_path().empty() ? fs::path(".") : path.parent_path());
}

}  // namespace

Expected<std::string> read_file(const fs::path& path, std::size_t max_bytes) {
    Fd in{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (in.fd < 0) return io_fail("cannot read", path, errno);
    std::string out;
    char buf[65536];
    while (true) {
        const auto n = ::read(in.fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return io_fail("cannot read", path, errno);
        }
        if (n == 0) break;
        out.append(buf, static_cast<std::size_t>(n));
        if (out.size() > max_bytes)
            return fail(ErrorCode::io_error, "cannot read " + path.string() + ": larger than " +
                                                 std::to_string(max_bytes) + " bytes");
    }
    return out;
}

Expected<void> fsync_dir(const fs::path& dir) {
    Fd d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (d.fd < 0) return io_fail("opening directory", dir, errno);
    if (::fsync(d.fd) != 0) return io_fail("syncing directory", dir, errno);
    return {};
}

Expected<void> write_file_atomic(const fs::path& path, std::string_view content, unsigned mode) {
    const auto tmp = temp_name(path);
    Fd out{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, static_cast<mode_t>(mode))};
    if (out.fd < 0) return io_fail("cannot create", tmp, errno);
    if (::fchmod(out.fd, static_cast<mode_t>(mode)) != 0) return io_fail("chmod", tmp, errno);
    if (auto w = write_all(out.fd, content.data(), content.size(), tmp); !w) {
        ::unlink(tmp.c_str());
        return w;
    }
    return finish(out, tmp, path);
}

Expected<void> copy_file_atomic(const fs::path& from, const fs::path& to) {
    Fd in{::open(from.c_str(), O_RDONLY | O_CLOEXEC)};
    if (in.fd < 0) return io_fail("cannot read", from, errno);
    std::error_code ec;
    if (!to.parent_path().empty()) fs::create_directories(to.parent_path(), ec);
    if (ec) return fail(ErrorCode::io_error, "cannot create directory " + to.parent_path().string() + ": " + ec.message());
    const auto tmp = temp_name(to);
    Fd out{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (out.fd < 0) return io_fail("cannot create", tmp, errno);
    char buf[1 << 16];
    while (true) {
        const auto n = ::read(in.fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            ::unlink(tmp.c_str());
            return io_fail("cannot read", from, err);
        }
        if (n == 0) break;
        if (auto w = write_all(out.fd, buf, static_cast<std::size_t>(n), tmp); !w) {
            ::unlink(tmp.c_str());
            return w;
        }
    }
    return finish(out, tmp, to);
}

}  // namespace ota
