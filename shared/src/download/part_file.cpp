// `<dest>.part`: the lock, and the writer thread that hashes and writes received bytes in order.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "internal.hpp"

namespace ota::download::detail {

PartFile::~PartFile() {
    if (worker_.joinable()) {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        worker_.join();
    }
    if (fd_ >= 0) ::close(fd_);
}

Expected<void> PartFile::open() {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return write_error("cannot open", errno);
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            return fail(ErrorCode::io_error, path_.string() + ": another download to this file is in progress");
        return write_error("cannot lock", errno);
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return write_error("cannot stat", errno);
    on_disk_ = accepted_ = static_cast<std::uint64_t>(st.st_size);
    for (int i = 0; i < kBuffers; ++i) {
        free_.emplace_back();
        free_.back().reserve(kWriteBuffer);
    }
    current_ = take_free();
    worker_ = std::thread([this] { write_loop(); });
    return {};
}

// Before any append (the writer is idle).
Expected<void> PartFile::hash_existing(const std::function<bool()>& cancelled) {
    std::vector<char> buf(std::size_t{1} << 20);
    std::uint64_t pos = 0;
    while (pos < on_disk_) {
        if (cancelled && cancelled()) return fail(ErrorCode::timeout, path_.string() + ": cancelled");
        const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), on_disk_ - pos));
        const auto n = ::pread(fd_, buf.data(), want, static_cast<off_t>(pos));
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail(ErrorCode::io_error, "cannot read " + path_.string() + ": " + errno_text(errno));
        }
        if (n == 0) break;  // shrank under us: hash what is there
        hash_->update(buf.data(), static_cast<std::size_t>(n));
        pos += static_cast<std::uint64_t>(n);
    }
    on_disk_ = accepted_ = pos;
    return {};
}

Expected<void> PartFile::truncate() {
    current_.clear();
    if (auto d = drain(); !d) return d;
    hash_ = std::make_unique<crypto::Sha256>();
    if (::ftruncate(fd_, 0) != 0) return write_error("cannot truncate", errno);
    on_disk_ = accepted_ = 0;
    return {};
}

Expected<void> PartFile::append(const char* data, std::size_t n) {
    if (failed_.load(std::memory_order_relaxed)) return writer_error();
    if (n > 0 && current_.empty()) first_held_ = Clock::now();
    accepted_ += n;
    while (n > 0) {
        const auto take = std::min(n, kWriteBuffer - current_.size());
        current_.insert(current_.end(), data, data + take);
        data += take;
        n -= take;
        if (current_.size() >= kWriteBuffer) {
            submit();
            if (n > 0) first_held_ = Clock::now();
        }
    }
    tick();
    return {};
}

void PartFile::tick() {
    // A slow or stalled transfer still reaches the disk within a second, for a resume after a kill.
    if (!current_.empty() && Clock::now() - first_held_ >= kFlushInterval) submit();
}

Expected<void> PartFile::flush() {
    if (!current_.empty()) submit();
    return drain();
}

Expected<std::string> PartFile::finish() {
    if (auto f = flush(); !f) return std::unexpected(f.error());
    if (::fsync(fd_) != 0) return write_error("cannot sync", errno);
    ::close(fd_);  // releases the lock; the caller renames or deletes the file next
    fd_ = -1;
    return hash_->hex();
}

std::vector<char> PartFile::take_free() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !free_.empty(); });  // the writer always returns buffers
    auto b = std::move(free_.back());
    free_.pop_back();
    b.clear();
    return b;
}

void PartFile::submit() {
    {
        std::lock_guard lock(mu_);
        queue_.push_back(std::move(current_));
    }
    cv_.notify_all();
    current_ = take_free();
}

Expected<void> PartFile::drain() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
    if (error_) return std::unexpected(*error_);
    return {};
}

std::unexpected<Error> PartFile::writer_error() {
    std::lock_guard lock(mu_);
    return std::unexpected(error_.value_or(Error{ErrorCode::io_error, "writing " + path_.string() + " failed"}));
}

// The writer thread: hash and write each queued buffer in order; after an error, only recycle
// buffers (the error is reported by the next append, flush or truncate).
void PartFile::write_loop() {
    std::unique_lock lock(mu_);
    while (true) {
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stop_
        auto buf = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
        const bool ok = !error_;
        lock.unlock();
        std::optional<Error> err;
        if (ok) {
            hash_->update(buf.data(), buf.size());
            if (auto w = write_at_end(buf.data(), buf.size()); !w) err = w.error();
        }
        lock.lock();
        if (err) {
            error_ = std::move(err);
            failed_ = true;
        }
        free_.push_back(std::move(buf));
        busy_ = false;
        cv_.notify_all();
    }
}

Expected<void> PartFile::write_at_end(const char* data, std::size_t n) {
    while (n > 0) {
        const auto w = ::pwrite(fd_, data, n, static_cast<off_t>(on_disk_));
        if (w < 0) {
            if (errno == EINTR) continue;
            return write_error("cannot write", errno);
        }
        data += w;
        n -= static_cast<std::size_t>(w);
        on_disk_ += static_cast<std::uint64_t>(w);
    }
    return {};
}

std::unexpected<Error> PartFile::write_error(std::string_view what, int err) const {
    const auto code = (err == ENOSPC || err == EDQUOT) ? ErrorCode::disk_full : ErrorCode::io_error;
    return fail(code, std::string(what) + " " + path_.string() + ": " + errno_text(err));
}

}  // namespace ota::download::detail
