// Resumable HTTPS downloads with the libcurl easy API (see download.hpp for the contract).
//
// One call of fetch():
//   1. Lock and open `<dest>.part`. If it exists and its sidecar `<dest>.part.json` describes this
//      request (same URL, SHA-256, size) and a validator (ETag or Last-Modified) is known, hash
//      the bytes already on disk and resume; otherwise truncate and start from zero.
//   2. Attempts (at most max_attempts): GET with "Range: bytes=N-" + "If-Range: <validator>" when
//      N > 0. The response is judged once, when its body starts (write callback) or ends:
//        206  Content-Range must start at N (and its total must be expected_size): append;
//        200  truncate and write this body from offset 0 (restarts_from_zero + 1);
//        416  truncate, retry from zero at once (restarts_from_zero + 1);
//        5xx  retried with backoff; other statuses fail at once.
//      Bytes are hashed (OpenSSL EVP via ota::crypto::Sha256) and written in 1 MiB buffers by a
//      writer thread, in order, at least every second so a killed process keeps its progress.
//      Never more than expected_size bytes are accepted.
//   3. fsync, compare the hash, rename to `dest`, remove the sidecar, fsync the directory.
//
// Behaviour of curl 7.88 / nginx 1.22 relied on (tests/shared/download/ checks it):
// - nginx's ETag is "<mtime hex>-<size hex>": an object replaced by one of the same size within
//   the same second keeps its ETag, and If-Range then joins bytes of two objects. The final hash
//   check catches it (hash_mismatch, the partial file is deleted, the next call starts over).
// - nginx evaluates If-Range before the range: a changed object gets 200, never 416; 416 comes
//   only when the validator still matches and the partial file is longer than the object.
// - With `max_ranges 0` nginx answers a Range request with 200 and the whole object.
// - curl returns CURLE_OPERATION_TIMEDOUT for the low-speed limit, the overall timeout and the
//   connect timeout alike; they are told apart here by whether a response arrived and the time.
// - The Range header is sent by hand (not CURLOPT_RANGE/RESUME_FROM) so curl applies no range
//   logic of its own; every status is judged here (CURLOPT_FAILONERROR is off).
#include "ota/download.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ota/build_info.hpp"
#include "ota/crypto.hpp"
#include "ota/files.hpp"

namespace ota::download {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::size_t kWriteBuffer = std::size_t{1} << 20;  // bytes handed to the writer thread at once
constexpr auto kFlushInterval = 1s;                          // ...or after this long
// Bytes per pwrite(): on this kernel (6.x, ext4) 1 MiB writes cost 2-3x the system time of
// 64 KiB writes (1.8 vs 0.8 s of sys per GiB downloaded), 16 KiB ones a little more.
constexpr std::size_t kWriteSlice = 64 * 1024;
constexpr long kCurlBuffer = 512L * 1024L;                      // curl's receive buffer
constexpr int kMaxImmediateRestarts = 3;                        // 416 / bad Content-Range, per call

fs::path part_path(const fs::path& dest) { return fs::path(dest.string() + ".part"); }
fs::path sidecar_path(const fs::path& dest) { return fs::path(dest.string() + ".part.json"); }

std::string errno_text(int err) { return std::strerror(err); }

// curl_global_init is not thread-safe in every build: once per process, before any handle.
Expected<void> global_init() {
    static std::once_flag once;
    static CURLcode rc = CURLE_OK;
    std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
    if (rc != CURLE_OK)
        return fail(ErrorCode::download_failed, std::string("curl_global_init failed: ") + curl_easy_strerror(rc));
    return {};
}

// ---- the sidecar --------------------------------------------------------------------------

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

std::string to_json(const Sidecar& s) {
    nlohmann::json j{{"url", s.url},   {"sha256", s.sha256},          {"size", s.size},
                     {"etag", s.etag}, {"last_modified", s.last_modified}};
    return j.dump() + "\n";
}

std::optional<Sidecar> read_sidecar(const fs::path& path) {
    auto text = ota::read_file(path, 64 * 1024);
    if (!text) return std::nullopt;
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return std::nullopt;
    Sidecar s;
    try {
        s.url = j.at("url").get<std::string>();
        s.sha256 = j.at("sha256").get<std::string>();
        s.size = j.at("size").get<std::uint64_t>();
        s.etag = j.value("etag", "");
        s.last_modified = j.value("last_modified", "");
    } catch (const nlohmann::json::exception&) {
        return std::nullopt;  // not ours or damaged: start over
    }
    return s;
}

// A full disk while writing the sidecar is disk_full (files.hpp says so itself since the iofault
// sweeps, docs/testing-faults.md; this stays for the message-only case).
Error sidecar_error(const Error& e) {
    if (e.message.find(errno_text(ENOSPC)) != std::string::npos ||
        e.message.find(errno_text(EDQUOT)) != std::string::npos)
        return Error{ErrorCode::disk_full, e.message};
    return e;
}

// ---- the partial file ---------------------------------------------------------------------

// `<dest>.part`: an exclusive lock, and a writer thread that hashes (SHA-256) and writes the
// received bytes in order, in 1 MiB buffers with at most kBuffers in flight. curl's thread
// decrypts TLS and copies; the writer hashes and writes: two cores instead of one.
// size() counts the bytes accepted (written or queued); flush() waits until they are written.
class PartFile {
public:
    explicit PartFile(fs::path path) : path_(std::move(path)) {}
    ~PartFile() {
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
    PartFile(const PartFile&) = delete;
    PartFile& operator=(const PartFile&) = delete;

    [[nodiscard]] const fs::path& path() const { return path_; }
    [[nodiscard]] std::uint64_t size() const { return accepted_; }

    Expected<void> open() {
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

    // Hash the bytes already on disk (at resume), polling `cancelled` between reads. Before any
    // append (the writer is idle).
    Expected<void> hash_existing(const std::function<bool()>& cancelled) {
        std::vector<char> buf(kWriteBuffer);
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

    Expected<void> truncate() {
        current_.clear();
        if (auto d = drain(); !d) return d;
        hash_ = std::make_unique<crypto::Sha256>();
        if (::ftruncate(fd_, 0) != 0) return write_error("cannot truncate", errno);
        on_disk_ = accepted_ = 0;
        last_submit_ = Clock::now();
        return {};
    }

    Expected<void> append(const char* data, std::size_t n) {
        if (failed_.load(std::memory_order_relaxed)) return writer_error();
        accepted_ += n;
        while (n > 0) {
            const auto take = std::min(n, kWriteBuffer - current_.size());
            current_.insert(current_.end(), data, data + take);
            data += take;
            n -= take;
            if (current_.size() >= kWriteBuffer) submit();
        }
        // A slow transfer still reaches the disk every second, for a resume after a kill.
        if (!current_.empty() && Clock::now() - last_submit_ >= kFlushInterval) submit();
        return {};
    }

    // Wait until every accepted byte is hashed and written.
    Expected<void> flush() {
        if (!current_.empty()) submit();
        return drain();
    }

    // Flush, fsync, close; the hex digest of everything written.
    Expected<std::string> finish() {
        if (auto f = flush(); !f) return std::unexpected(f.error());
        if (::fsync(fd_) != 0) return write_error("cannot sync", errno);
        ::close(fd_);  // releases the lock; the caller renames or deletes the file next
        fd_ = -1;
        return hash_->hex();
    }

private:
    static constexpr int kBuffers = 4;

    std::vector<char> take_free() {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return !free_.empty(); });  // the writer always returns buffers
        auto b = std::move(free_.back());
        free_.pop_back();
        b.clear();
        return b;
    }
    void submit() {
        {
            std::lock_guard lock(mu_);
            queue_.push_back(std::move(current_));
        }
        cv_.notify_all();
        last_submit_ = Clock::now();
        current_ = take_free();
    }
    Expected<void> drain() {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
        if (error_) return std::unexpected(*error_);
        return {};
    }
    std::unexpected<Error> writer_error() {
        std::lock_guard lock(mu_);
        return std::unexpected(error_.value_or(Error{ErrorCode::io_error, "writing " + path_.string() + " failed"}));
    }

    // The writer thread: hash and write each queued buffer in order; after an error, only
    // recycle buffers (the error is reported by the next append, flush or truncate).
    void write_loop() {
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

    Expected<void> write_at_end(const char* data, std::size_t n) {
        while (n > 0) {
            const auto w = ::pwrite(fd_, data, std::min(n, kWriteSlice), static_cast<off_t>(on_disk_));
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
    std::unexpected<Error> write_error(std::string_view what, int err) const {
        const auto code = (err == ENOSPC || err == EDQUOT) ? ErrorCode::disk_full : ErrorCode::io_error;
        return fail(code, std::string(what) + " " + path_.string() + ": " + errno_text(err));
    }

    fs::path path_;
    int fd_{-1};
    std::uint64_t accepted_{0};  // curl's thread
    Clock::time_point last_submit_{Clock::now()};
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

// ---- one attempt --------------------------------------------------------------------------

enum class Next {
    done,         // the whole body arrived
    retry,        // a transient failure: back off, then resume
    retry_now,    // restart from zero at once (416, Content-Range not where we are)
    give_up,      // a failure that retrying cannot fix
};

struct Outcome {
    Next next{Next::done};
    Error error{};
};

struct Headers {
    long status{0};
    std::string etag, last_modified, content_range;
    std::optional<std::uint64_t> content_length;
};

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
    return s;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
    std::uint64_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}

struct ContentRange {
    std::uint64_t first{0}, last{0};
    std::optional<std::uint64_t> total;  // "*": unknown
};
// "bytes 100-199/300" or "bytes 100-199/*".
std::optional<ContentRange> parse_content_range(std::string_view v) {
    if (v.rfind("bytes ", 0) != 0) return std::nullopt;
    v.remove_prefix(6);
    const auto dash = v.find('-');
    const auto slash = v.find('/');
    if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) return std::nullopt;
    auto first = parse_u64(v.substr(0, dash));
    auto last = parse_u64(v.substr(dash + 1, slash - dash - 1));
    if (!first || !last || *last < *first) return std::nullopt;
    ContentRange r{*first, *last, std::nullopt};
    const auto total = v.substr(slash + 1);
    if (total != "*") {
        r.total = parse_u64(total);
        if (!r.total || *r.total <= *last) return std::nullopt;
    }
    return r;
}

class Transfer {
public:
    Transfer(const Request& req, PartFile& part, Sidecar& sidecar, Result& result)
        : req_(req), part_(part), sidecar_(sidecar), result_(result) {
        progress_floor_ = percent(part_.size());
    }

    // One HTTP request, resuming from the bytes of `part` when there are any.
    Outcome run(CURL* h) {
        headers_ = Headers{};
        judged_ = false;
        abort_.reset();
        range_from_ = 0;
        errbuf_[0] = '\0';

        curl_easy_reset(h);
        std::string validator = sidecar_.validator();
        if (part_.size() > 0 && validator.empty()) {
            // Without a validator a resumed object could be another one: start over.
            if (auto t = part_.truncate(); !t) return {Next::give_up, t.error()};
            ++result_.restarts_from_zero;
        }
        curl_slist* raw_list = nullptr;
        if (part_.size() > 0) {
            range_from_ = part_.size();
            raw_list = curl_slist_append(raw_list, ("Range: bytes=" + std::to_string(range_from_) + "-").c_str());
            raw_list = curl_slist_append(raw_list, ("If-Range: " + validator).c_str());
        }
        std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> list(raw_list, &curl_slist_free_all);

        curl_easy_setopt(h, CURLOPT_URL, req_.url.c_str());
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https");
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_FAILONERROR, 0L);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf_);
        curl_easy_setopt(h, CURLOPT_USERAGENT, (std::string("ota/") + build::version).c_str());
        curl_easy_setopt(h, CURLOPT_BUFFERSIZE, kCurlBuffer);
        if (list) curl_easy_setopt(h, CURLOPT_HTTPHEADER, list.get());
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, to_ms(req_.connect_timeout));
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, to_ms(req_.deadline));
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, clamp_long(req_.low_speed_limit));
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, clamp_long(static_cast<std::uint64_t>(std::max<std::int64_t>(
                                                        1, req_.low_speed_time.count()))));
        if (!req_.cafile.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, req_.cafile.c_str());
        if (!req_.certfile.empty()) curl_easy_setopt(h, CURLOPT_SSLCERT, req_.certfile.c_str());
        if (!req_.keyfile.empty()) curl_easy_setopt(h, CURLOPT_SSLKEY, req_.keyfile.c_str());
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &Transfer::on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, this);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &Transfer::on_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, this);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &Transfer::on_xferinfo);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, this);

        const auto started = Clock::now();
        const CURLcode rc = curl_easy_perform(h);
        const auto elapsed = Clock::now() - started;

        // Whatever happened, the bytes hashed so far go to disk, so hash and file agree.
        if (auto f = part_.flush(); !f && !abort_) abort_ = Outcome{Next::give_up, f.error()};
        if (abort_) return *abort_;
        if (rc == CURLE_OK) {
            if (!judged_ && !judge()) return *abort_;  // an empty body
            if (known_total_ != 0 && part_.size() < known_total_)  // a 206 that stopped short
                return {Next::retry, {ErrorCode::download_failed, req_.url + ": the response ended at byte " +
                                                                      std::to_string(part_.size()) + " of " +
                                                                      std::to_string(known_total_)}};
            if (req_.expected_size != 0 && part_.size() != req_.expected_size)
                return {Next::give_up, {ErrorCode::size_mismatch,
                                        req_.url + ": the server sent " + std::to_string(part_.size()) +
                                            " bytes in all, the declared size is " + std::to_string(req_.expected_size)}};
            return {Next::done, {}};
        }
        return curl_failure(rc, elapsed);
    }

    [[nodiscard]] std::uint64_t total() const {
        if (req_.expected_size != 0) return req_.expected_size;
        return known_total_;
    }

private:
    static long to_ms(std::chrono::milliseconds d) {
        return static_cast<long>(std::clamp<std::int64_t>(d.count(), 1, 0x7FFFFFFF));
    }
    static long clamp_long(std::uint64_t v) { return static_cast<long>(std::min<std::uint64_t>(v, 0x7FFFFFFF)); }

    int percent(std::uint64_t bytes) const {
        const auto t = total();
        if (t == 0) return 0;
        return static_cast<int>(std::min<std::uint64_t>(100, bytes * 100 / t));
    }

    static std::size_t on_header(char* data, std::size_t size, std::size_t n, void* self_ptr) {
        auto* self = static_cast<Transfer*>(self_ptr);
        const std::string_view line(data, size * n);
        auto& hd = self->headers_;
        if (line.rfind("HTTP/", 0) == 0) {  // a new response (after a redirect): forget the last one
            hd = Headers{};
            const auto sp = line.find(' ');
            if (sp != std::string_view::npos) {
                const auto code = trim(line.substr(sp + 1)).substr(0, 3);
                hd.status = static_cast<long>(parse_u64(code).value_or(0));
            }
            return size * n;
        }
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) return size * n;
        const auto name = trim(line.substr(0, colon));
        const auto value = trim(line.substr(colon + 1));
        if (iequals(name, "etag")) hd.etag = value;
        else if (iequals(name, "last-modified")) hd.last_modified = value;
        else if (iequals(name, "content-range")) hd.content_range = value;
        else if (iequals(name, "content-length")) hd.content_length = parse_u64(value);
        return size * n;
    }

    static std::size_t on_write(char* data, std::size_t size, std::size_t n, void* self_ptr) {
        auto* self = static_cast<Transfer*>(self_ptr);
        const std::size_t bytes = size * n;
        if (!self->judged_ && !self->judge()) return CURL_WRITEFUNC_ERROR;
        const auto& req = self->req_;
        if (req.expected_size != 0 && self->part_.size() + bytes > req.expected_size) {
            self->abort_ = Outcome{Next::give_up, {ErrorCode::size_mismatch,
                                                   req.url + ": the server sent more than the declared " +
                                                       std::to_string(req.expected_size) + " bytes"}};
            return CURL_WRITEFUNC_ERROR;
        }
        if (auto a = self->part_.append(data, bytes); !a) {
            self->abort_ = Outcome{Next::give_up, a.error()};
            return CURL_WRITEFUNC_ERROR;
        }
        self->result_.bytes_transferred += bytes;
        self->report_progress();
        return bytes;
    }

    static int on_xferinfo(void* self_ptr, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
        auto* self = static_cast<Transfer*>(self_ptr);
        if (self->req_.cancelled && self->req_.cancelled()) {
            self->abort_ = Outcome{Next::give_up, {ErrorCode::timeout, self->req_.url + ": download cancelled"}};
            return 1;
        }
        return 0;
    }

    void report_progress() {
        if (!req_.on_progress) return;
        const auto bytes = part_.size();
        const int p = percent(bytes);
        if (p >= 100) return;  // 100 % is reported once, after the hash was checked
        const auto now = Clock::now();
        const bool step = p >= progress_floor_ + std::max(1, req_.progress_step_percent);
        const bool timed = now - last_report_ >= req_.progress_interval && bytes != last_reported_bytes_;
        if (!step && !timed) return;
        // Report whole steps (5, 10, ...) so that the count stays bounded whatever the chunking.
        if (step) progress_floor_ = p - p % std::max(1, req_.progress_step_percent);
        last_report_ = now;
        last_reported_bytes_ = bytes;
        req_.on_progress(Progress{bytes, total(), p});
    }

    // Judge the response when its body starts (or it ended without one). False: abort_ is set.
    bool judge() {
        judged_ = true;
        const long status = headers_.status;
        const std::string where = req_.url + ": HTTP " + std::to_string(status);
        if (status == 200) {
            if (part_.size() > 0) {  // Range ignored, or If-Range says the object changed
                if (auto t = part_.truncate(); !t) return stop(Next::give_up, t.error());
                ++result_.restarts_from_zero;
                progress_floor_ = 0;
            }
            if (headers_.content_length) known_total_ = *headers_.content_length;
            if (req_.expected_size != 0 && headers_.content_length && *headers_.content_length > req_.expected_size)
                return stop(Next::give_up, {ErrorCode::size_mismatch,
                                            req_.url + ": the server's object is " + std::to_string(*headers_.content_length) +
                                                " bytes, more than the declared " + std::to_string(req_.expected_size)});
            return remember_validators();
        }
        if (status == 206) {
            const auto cr = parse_content_range(headers_.content_range);
            if (range_from_ == 0 || !cr)
                return stop(Next::retry, {ErrorCode::download_failed,
                                          where + " with Content-Range '" + headers_.content_range + "' to a request for bytes " +
                                              std::to_string(range_from_) + "-"});
            if (cr->total && req_.expected_size != 0 && *cr->total != req_.expected_size)
                return stop(Next::give_up, {ErrorCode::size_mismatch,
                                            req_.url + ": the server's object is " + std::to_string(*cr->total) +
                                                " bytes (Content-Range), the declared size is " +
                                                std::to_string(req_.expected_size)});
            const bool other_object = !headers_.etag.empty() && !sidecar_.etag.empty() && headers_.etag != sidecar_.etag;
            if (cr->first != range_from_ || other_object) {
                // Not the continuation of our bytes: start over rather than join two objects.
                if (auto t = part_.truncate(); !t) return stop(Next::give_up, t.error());
                ++result_.restarts_from_zero;
                return stop(Next::retry_now, {ErrorCode::download_failed,
                                              where + " for '" + headers_.content_range + "' does not continue at byte " +
                                                  std::to_string(range_from_)});
            }
            if (cr->total) known_total_ = *cr->total;
            return remember_validators();
        }
        if (status == 416) {  // the partial file is longer than the object: start over
            if (auto t = part_.truncate(); !t) return stop(Next::give_up, t.error());
            ++result_.restarts_from_zero;
            return stop(Next::retry_now, {ErrorCode::download_failed,
                                          where + " (range from byte " + std::to_string(range_from_) + " not satisfiable)"});
        }
        if (status >= 500 && status <= 599) return stop(Next::retry, {ErrorCode::download_failed, where});
        return stop(Next::give_up, {ErrorCode::download_failed, where + (status == 0 ? " (no status line)" : "")});
    }

    bool stop(Next next, Error error) {
        abort_ = Outcome{next, std::move(error)};
        return false;
    }

    // Record the response's validators in the sidecar before its first byte is written.
    bool remember_validators() {
        if (headers_.etag == sidecar_.etag && headers_.last_modified == sidecar_.last_modified) return true;
        sidecar_.etag = headers_.etag;
        sidecar_.last_modified = headers_.last_modified;
        if (auto w = write_file_atomic(sidecar_path(req_.dest), to_json(sidecar_)); !w)
            return stop(Next::give_up, sidecar_error(w.error()));
        return true;
    }

    Outcome curl_failure(CURLcode rc, Clock::duration elapsed) const {
        // curl's error buffer names the host, port or certificate problem; its code text does not.
        const std::string cause = errbuf_[0] != '\0' ? std::string(trim(errbuf_)) : curl_easy_strerror(rc);
        const std::string where = req_.url + ": ";
        switch (rc) {
            case CURLE_OPERATION_TIMEDOUT:
                if (headers_.status == 0 && !judged_)  // no response at all: connect or TLS handshake
                    return {Next::retry, {ErrorCode::download_failed, where + cause}};
                if (elapsed + 100ms >= req_.deadline)
                    return {Next::retry, {ErrorCode::download_stalled,
                                          where + "not complete within the deadline of " +
                                              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(req_.deadline).count()) +
                                              " s"}};
                return {Next::retry, {ErrorCode::download_stalled,
                                      where + "stalled: below " + std::to_string(req_.low_speed_limit) + " bytes/s for " +
                                          std::to_string(req_.low_speed_time.count()) + " s"}};
            // TLS and configuration problems: retrying cannot help.
            case CURLE_PEER_FAILED_VERIFICATION:
            case CURLE_SSL_CACERT_BADFILE:
            case CURLE_SSL_CERTPROBLEM:
            case CURLE_SSL_CIPHER:
            case CURLE_SSL_ISSUER_ERROR:
            case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
            case CURLE_SSL_CRL_BADFILE:
            case CURLE_SSL_ENGINE_NOTFOUND:
            case CURLE_SSL_ENGINE_SETFAILED:
            case CURLE_UNSUPPORTED_PROTOCOL:
            case CURLE_URL_MALFORMAT:
            case CURLE_TOO_MANY_REDIRECTS:
            case CURLE_NOT_BUILT_IN:
                return {Next::give_up, {ErrorCode::download_failed, where + "TLS or setup error (not retried): " + cause}};
            default:  // connection refused/reset, DNS, TLS handshake cut, body cut short: transient
                return {Next::retry, {ErrorCode::download_failed, where + cause}};
        }
    }

    const Request& req_;
    PartFile& part_;
    Sidecar& sidecar_;
    Result& result_;
    Headers headers_;
    bool judged_{false};
    std::optional<Outcome> abort_;
    std::uint64_t range_from_{0};
    std::uint64_t known_total_{0};
    int progress_floor_{0};
    Clock::time_point last_report_{Clock::now()};
    std::uint64_t last_reported_bytes_{0};
    char errbuf_[CURL_ERROR_SIZE]{};
};

// Full jitter: uniform in [0, min(max, min * 2^(attempt-1))], never below a small floor.
std::chrono::milliseconds backoff(const Request& r, int attempt) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    auto cap = std::max<std::chrono::milliseconds>(r.backoff_min, 1ms);
    for (int i = 1; i < attempt && cap < r.backoff_max; ++i) cap *= 2;
    cap = std::min(cap, std::max(r.backoff_max, 1ms));
    std::uniform_int_distribution<std::int64_t> dist(0, cap.count());
    const auto floor = std::min<std::chrono::milliseconds>(r.backoff_min, 50ms);
    return std::max(floor, std::chrono::milliseconds(dist(rng)));
}

// Sleep, waking every 20 ms to poll `cancelled`; false when cancelled.
bool sleep_unless_cancelled(const Request& r, std::chrono::milliseconds d) {
    const auto until = Clock::now() + d;
    while (true) {
        if (r.cancelled && r.cancelled()) return false;
        const auto now = Clock::now();
        if (now >= until) return true;
        std::this_thread::sleep_for(std::min<Clock::duration>(until - now, 20ms));
    }
}

void remove_quietly(const fs::path& p) {
    std::error_code ec;
    fs::remove(p, ec);
}

bool valid_sha256(std::string_view s) {
    return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

void discard_partial(const fs::path& dest) {
    remove_quietly(part_path(dest));
    remove_quietly(sidecar_path(dest));
}

Expected<Result> fetch(const Request& req) {
    if (req.url.empty()) return fail(ErrorCode::download_failed, "download to " + req.dest.string() + ": no URL");
    if (req.dest.empty() || !req.dest.has_filename())
        return fail(ErrorCode::io_error, "download of " + req.url + ": no destination file");
    if (!req.expected_sha256.empty() && !valid_sha256(req.expected_sha256))
        return fail(ErrorCode::hash_mismatch, "download of " + req.url + ": expected sha256 '" + req.expected_sha256 +
                                                  "' is not 64 lowercase hex digits");
    if (auto g = global_init(); !g) return std::unexpected(g.error());

    const auto part_file = part_path(req.dest);
    const auto side_file = sidecar_path(req.dest);
    const auto dir = req.dest.parent_path().empty() ? fs::path(".") : req.dest.parent_path();
    {
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec)
            return fail(ErrorCode::io_error,
                        "download of " + req.url + ": cannot create directory " + dir.string() + ": " + ec.message());
    }

    Result result;
    PartFile part(part_file);
    if (auto o = part.open(); !o) return std::unexpected(o.error());

    // Resume only what the sidecar says is this request's object; anything else starts over.
    Sidecar sidecar{req.url, req.expected_sha256, req.expected_size, {}, {}};
    const auto old = read_sidecar(side_file);
    const bool resumable = part.size() > 0 && old && old->describes(req) && !old->validator().empty() &&
                           (req.expected_size == 0 || part.size() <= req.expected_size);
    if (resumable) {
        sidecar = *old;
        if (auto h = part.hash_existing(req.cancelled); !h) return std::unexpected(h.error());
        result.resumed_from = part.size();
    } else {
        if (auto t = part.truncate(); !t) return std::unexpected(t.error());
        if (auto w = write_file_atomic(side_file, to_json(sidecar)); !w) return std::unexpected(sidecar_error(w.error()));
    }

    // A partial file that is already complete (the process died before the rename): check it
    // without the network; if it is wrong, start over.
    bool complete = resumable && req.expected_size != 0 && part.size() == req.expected_size;

    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> handle(curl_easy_init(), &curl_easy_cleanup);
    if (!handle) return fail(ErrorCode::download_failed, "download of " + req.url + ": curl_easy_init failed");

    const int max_attempts = std::max(1, req.max_attempts);
    int immediate_restarts = 0;
    int attempt = 0;
    // Each round either ends the loop, backs off after a failed attempt (at most max_attempts),
    // or restarts at once (at most kMaxImmediateRestarts).
    for (int round = 0; !complete && round < max_attempts + kMaxImmediateRestarts; ++round) {
        if (req.cancelled && req.cancelled()) return fail(ErrorCode::timeout, req.url + ": download cancelled");
        ++attempt;
        ++result.attempts;
        Transfer transfer(req, part, sidecar, result);
        const auto outcome = transfer.run(handle.get());
        if (outcome.next == Next::done) {
            complete = true;
            break;
        }
        if (outcome.next == Next::retry_now && immediate_restarts < kMaxImmediateRestarts) {
            ++immediate_restarts;
            --attempt;  // not a failure of the server: it told us to start over
            continue;
        }
        const auto& e = outcome.error;
        if (outcome.next == Next::give_up) {
            // Wrong content or no space: the partial file is useless. Other failures (HTTP
            // errors, TLS, cancellation) keep it for a later resume.
            if (e.code == ErrorCode::size_mismatch || e.code == ErrorCode::disk_full) discard_partial(req.dest);
            return std::unexpected(e);
        }
        if (attempt >= max_attempts)
            return fail(e.code, e.message + " (gave up after " + std::to_string(attempt) +
                                    (attempt == 1 ? " attempt)" : " attempts)"));
        if (!sleep_unless_cancelled(req, backoff(req, attempt)))
            return fail(ErrorCode::timeout, req.url + ": download cancelled");
    }
    if (!complete) return fail(ErrorCode::internal, req.url + ": the download loop ended without a result");

    auto hex = part.finish();
    if (!hex) return std::unexpected(hex.error());
    const std::string digest = *hex;
    if (!req.expected_sha256.empty() && digest != req.expected_sha256) {
        discard_partial(req.dest);
        if (result.attempts == 0) {
            // A complete-looking leftover with the wrong bytes: download again from zero (once:
            // the partial file is gone now, so the call below cannot come back here).
            auto again = fetch(req);
            if (again) again->restarts_from_zero += 1;
            return again;
        }
        return fail(ErrorCode::hash_mismatch, req.url + ": sha256 of the " + std::to_string(part.size()) +
                                                  " bytes received is " + digest + ", expected " + req.expected_sha256 +
                                                  " (the partial file was deleted)");
    }
    if (req.expected_size != 0 && part.size() != req.expected_size) {
        discard_partial(req.dest);
        return fail(ErrorCode::size_mismatch, req.url + ": " + std::to_string(part.size()) +
                                                  " bytes received, the declared size is " + std::to_string(req.expected_size));
    }
    if (::rename(part_file.c_str(), req.dest.c_str()) != 0) {
        const int err = errno;
        return fail(err == ENOSPC || err == EDQUOT ? ErrorCode::disk_full : ErrorCode::io_error,
                    "cannot rename " + part_file.string() + " to " + req.dest.string() + ": " + errno_text(err));
    }
    remove_quietly(side_file);
    if (auto s = fsync_dir(dir); !s) return std::unexpected(s.error());

    result.sha256 = digest;
    if (req.on_progress) req.on_progress(Progress{part.size(), part.size(), 100});
    return result;
}

}  // namespace ota::download
