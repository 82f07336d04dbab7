// The downloader's parts (private to ota::download; see download.hpp for the contract):
//   sidecar.cpp    the sidecar `<dest>.part.json` and the resume decision;
//   part_file.cpp  `<dest>.part`: lock, hash and write the received bytes on a writer thread;
//   transfer.cpp   one HTTP attempt with libcurl, judged by its status and headers;
//   download.cpp   fetch(): the attempt loop, its retry budget and the overall deadline.
#pragma once

#include <curl/curl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ota/crypto.hpp"
#include "ota/download.hpp"
#include "ota/download_headers.hpp"
#include "ota/error.hpp"

namespace ota::download::detail {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

[[nodiscard]] fs::path part_path(const fs::path& dest);
[[nodiscard]] fs::path sidecar_path(const fs::path& dest);
[[nodiscard]] std::string errno_text(int err);

// ---- sidecar.cpp ------------------------------------------------------------------------------

struct Sidecar {
    std::string url;
    std::string sha256;
    std::uint64_t size{0};
    std::string etag;
    std::string last_modified;

    [[nodiscard]] bool describes(const Request& r) const {
        return url == r.url && sha256 == r.expected_sha256 && size == r.expected_size;
    }
    // The validator for If-Range: a strong ETag, else Last-Modified (a weak ETag must not be used).
    [[nodiscard]] std::string validator() const {
        if (!etag.empty() && etag.rfind("W/", 0) != 0) return etag;
        return last_modified;
    }
};

[[nodiscard]] std::string to_json(const Sidecar& s);
[[nodiscard]] std::optional<Sidecar> read_sidecar(const fs::path& path);
// Write the sidecar atomically; a full disk is disk_full (files.hpp maps ENOSPC/EDQUOT itself too).
[[nodiscard]] Expected<void> write_sidecar(const fs::path& dest, const Sidecar& s);

// Resume what is on disk only when the sidecar says it is this request's object and records a
// validator, and the partial file is not longer than the expected size.
[[nodiscard]] bool resumable(const Request& r, std::uint64_t on_disk, const std::optional<Sidecar>& sidecar);

// ---- part_file.cpp ----------------------------------------------------------------------------

// `<dest>.part`: an exclusive lock, and a writer thread that hashes (SHA-256) and writes the
// received bytes in order. Bytes are handed to the writer in kWriteBuffer buffers, at most
// kBuffers of them held at once (kHeldMax bytes received but not yet written), and a partly filled
// buffer is handed over once it is kFlushInterval old, also when no new byte arrives (tick()).
// curl's thread decrypts TLS and copies; the writer hashes and writes: two cores instead of one.
// size() counts the bytes accepted (written or queued); flush() waits until they are written.
class PartFile {
public:
    static constexpr std::size_t kWriteBuffer = 64 * 1024;  // one pwrite() each
    static constexpr int kBuffers = 8;
    static constexpr std::size_t kHeldMax = kWriteBuffer * kBuffers;  // 512 KiB
    static constexpr auto kFlushInterval = std::chrono::seconds(1);

    explicit PartFile(fs::path path) : path_(std::move(path)) {}
    ~PartFile();
    PartFile(const PartFile&) = delete;
    PartFile& operator=(const PartFile&) = delete;

    [[nodiscard]] const fs::path& path() const { return path_; }
    [[nodiscard]] std::uint64_t size() const { return accepted_; }

    [[nodiscard]] Expected<void> open();
    // Hash the bytes already on disk (at resume), polling `cancelled` between reads.
    [[nodiscard]] Expected<void> hash_existing(const std::function<bool()>& cancelled);
    [[nodiscard]] Expected<void> truncate();
    [[nodiscard]] Expected<void> append(const char* data, std::size_t n);
    // Hand a partly filled buffer to the writer once it is kFlushInterval old (no new bytes needed).
    void tick();
    // Wait until every accepted byte is hashed and written.
    [[nodiscard]] Expected<void> flush();
    // Flush, fsync, close; the hex digest of everything written.
    [[nodiscard]] Expected<std::string> finish();

private:
    std::vector<char> take_free();
    void submit();
    Expected<void> drain();
    std::unexpected<Error> writer_error();
    void write_loop();
    Expected<void> write_at_end(const char* data, std::size_t n);
    std::unexpected<Error> write_error(std::string_view what, int err) const;

    fs::path path_;
    int fd_{-1};
    std::uint64_t accepted_{0};  // curl's thread
    Clock::time_point first_held_{};  // when the oldest byte of current_ arrived
    std::vector<char> current_;
    // Shared with the writer (under mu_); hash_ and on_disk_ belong to the writer while it is
    // busy and to the caller once drain() returned.
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::vector<char>> queue_;
    std::vector<std::vector<char>> free_;
    bool busy_{false};
    bool stop_{false};
    std::optional<Error> error_;
    std::atomic<bool> failed_{false};
    std::uint64_t on_disk_{0};
    std::unique_ptr<crypto::Sha256> hash_ = std::make_unique<crypto::Sha256>();
    std::thread worker_;
};

// ---- transfer.cpp -----------------------------------------------------------------------------

enum class Next {
    done,       // the whole body arrived
    retry,      // a transient failure: back off, then resume
    retry_now,  // restart from zero at once (416, Content-Range not where we are)
    give_up,    // a failure that retrying cannot fix
};

struct Outcome {
    Next next{Next::done};
    Error error{};
};

// Progress reports of one fetch() call, across its attempts (bounded in count: whole steps).
class ProgressReporter {
public:
    ProgressReporter(const Request& req, std::uint64_t on_disk);
    void set_total(std::uint64_t t) { known_total_ = t; }
    [[nodiscard]] std::uint64_t total() const { return req_.expected_size != 0 ? req_.expected_size : known_total_; }
    [[nodiscard]] int percent(std::uint64_t bytes) const;
    void restarted() { floor_ = 0; }
    // The first report: the bytes already on disk (0 for a fresh download).
    void initial(std::uint64_t bytes);
    void update(std::uint64_t bytes);

private:
    const Request& req_;
    std::uint64_t known_total_{0};
    int floor_{0};
    Clock::time_point last_report_{Clock::now()};
    std::uint64_t last_bytes_{0};
};

class Transfer {
public:
    Transfer(const Request& req, PartFile& part, Sidecar& sidecar, Result& result, ProgressReporter& progress)
        : req_(req), part_(part), sidecar_(sidecar), result_(result), progress_(progress) {}
    // One HTTP request, resuming from the bytes of `part` when there are any, ended after
    // `deadline` at the latest.
    Outcome run(CURL* h, std::chrono::milliseconds deadline);
    // The server said the object is another one than the partial file's (200 or 206 with other
    // validators, 416): the bytes on disk were discarded, so progress counts from zero again.
    [[nodiscard]] bool object_changed() const { return object_changed_; }

private:
    static std::size_t on_header(char* data, std::size_t size, std::size_t n, void* self);
    static std::size_t on_write(char* data, std::size_t size, std::size_t n, void* self);
    static int on_xferinfo(void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t);
    static int on_sockopt(void* self, curl_socket_t fd, curlsocktype purpose);
    std::size_t write(const char* data, std::size_t bytes);
    int tick();
    bool judge();
    bool stop(Next next, Error error);
    bool remember_validators();
    Outcome curl_failure(CURLcode rc, Clock::duration elapsed, std::chrono::milliseconds deadline) const;
    bool redirect_allowed(std::string_view location);

    const Request& req_;
    CURL* handle_{nullptr};
    PartFile& part_;
    Sidecar& sidecar_;
    Result& result_;
    ProgressReporter& progress_;
    ResponseHeaders headers_;
    bool judged_{false};
    bool object_changed_{false};
    std::optional<Outcome> abort_;
    std::uint64_t range_from_{0};
    std::uint64_t known_total_{0};
    Clock::time_point last_byte_{Clock::now()};
    char errbuf_[CURL_ERROR_SIZE]{};
};

}  // namespace ota::download::detail
