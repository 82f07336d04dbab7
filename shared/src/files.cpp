#include "ota/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ota {
namespace {

namespace fs = std::filesystem;

// A full disk (ENOSPC, EDQUOT: also from fsync and rename) is disk_full; anything else io_error.
std::unexpected<Error> io_fail(std::string_view what, const fs::path& path, int err) {
    const auto code = (err == ENOSPC || err == EDQUOT) ? ErrorCode::disk_full : ErrorCode::io_error;
    return fail(code, std::string(what) + " " + path.string() + ": " + std::strerror(err));
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

Expected<AtomicFileWriter> AtomicFileWriter::create(const fs::path& path, unsigned mode) {
    auto tmp = temp_name(path);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, static_cast<mode_t>(mode));
    if (fd < 0) return io_fail("cannot create", tmp, errno);
    AtomicFileWriter w(path, std::move(tmp), fd);
    if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) return io_fail("chmod", w.tmp_, errno);
    return w;
}

AtomicFileWriter::AtomicFileWriter(fs::path path, fs::path tmp, int fd)
    : path_(std::move(path)), tmp_(std::move(tmp)), fd_(fd) {}

AtomicFileWriter::AtomicFileWriter(AtomicFileWriter&& other) noexcept
    : path_(std::move(other.path_)), tmp_(std::move(other.tmp_)), fd_(other.fd_) {
    other.fd_ = -1;
}

AtomicFileWriter::~AtomicFileWriter() { discard(); }

void AtomicFileWriter::discard() {
    if (fd_ < 0) return;
    ::close(fd_);
    fd_ = -1;
    ::unlink(tmp_.c_str());
}

Expected<void> AtomicFileWriter::write(std::string_view data) {
    if (fd_ < 0) return fail(ErrorCode::internal, "writing " + tmp_.string() + " after it was closed");
    auto w = write_all(fd_, data.data(), data.size(), tmp_);
    if (!w) discard();
    return w;
}

Expected<void> AtomicFileWriter::commit() {
    if (fd_ < 0) return fail(ErrorCode::internal, "committing " + tmp_.string() + " after it was closed");
    if (::fsync(fd_) != 0) {
        const int err = errno;
        discard();
        return io_fail("syncing", tmp_, err);
    }
    ::close(fd_);
    fd_ = -1;
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp_.c_str());
        return io_fail("renaming into", path_, err);
    }
    return fsync_dir(path_.parent_path().empty() ? fs::path(".") : path_.parent_path());
}

Expected<void> write_file_atomic(const fs::path& path, std::string_view content, unsigned mode) {
    auto out = AtomicFileWriter::create(path, mode);
    if (!out) return std::unexpected(out.error());
    if (auto w = out->write(content); !w) return w;
    return out->commit();
}

Expected<void> copy_file_atomic(const fs::path& from, const fs::path& to) {
    Fd in{::open(from.c_str(), O_RDONLY | O_CLOEXEC)};
    if (in.fd < 0) return io_fail("cannot read", from, errno);
    std::error_code ec;
    if (!to.parent_path().empty()) fs::create_directories(to.parent_path(), ec);
    if (ec) return fail(ErrorCode::io_error, "cannot create directory " + to.parent_path().string() + ": " + ec.message());
    auto out = AtomicFileWriter::create(to, 0644);
    if (!out) return std::unexpected(out.error());
    char buf[1 << 16];
    while (true) {
        const auto n = ::read(in.fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return io_fail("cannot read", from, errno);
        }
        if (n == 0) break;
        if (auto w = out->write({buf, static_cast<std::size_t>(n)}); !w) return w;
    }
    return out->commit();
}

}  // namespace ota
