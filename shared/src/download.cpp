// Resumable HTTPS downloads (see download.hpp for the contract): fetch() and its attempt loop.
// The parts are in shared/src/download/ (internal.hpp): the sidecar and the resume decision, the
// partial file and its writer, one HTTP attempt; the header parsing is download_headers.hpp.
//
// One call of fetch():
//   1. Lock and open `<dest>.part`. If it exists and its sidecar `<dest>.part.json` describes this
//      request (same URL, SHA-256, size) and a validator (ETag or Last-Modified) is known, hash
//      the bytes already on disk and resume; otherwise truncate and start from zero. The first
//      progress report carries the bytes already on disk.
//   2. Attempts: GET with "Range: bytes=N-" + "If-Range: <validator>" when N > 0 (transfer.cpp).
//      An attempt that adds at least low_speed_limit * low_speed_time bytes beyond the most ever
//      on disk in this call is progress and resets the budget; max_attempts counts consecutive
//      attempts without progress. The count starts afresh when the server says the object
//      changed (the old bytes are discarded), not when it merely ignores Range (same validators:
//      each attempt would start over and never get further). The whole call ends at
//      total_deadline in any case.
//   3. fsync, compare the hash, rename to `dest`, remove the sidecar, fsync the directory.
//
// nginx's ETag is "<mtime hex>-<size hex>": an object replaced by one of the same size within the
// same second keeps its ETag, and If-Range then joins bytes of two objects. The final hash check
// catches it (hash_mismatch, the partial file is deleted, the next call starts over).
#include "ota/download.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <random>

#include "download/internal.hpp"
#include "ota/files.hpp"

namespace ota::download {
namespace {

namespace fs = std::filesystem;
using detail::Clock;
using detail::Next;
using namespace std::chrono_literals;

constexpr int kMaxImmediateRestarts = 3;           // 416 / bad Content-Range, per call
constexpr int kMaxProgressingAttempts = 100000;    // a bound for the loop; the deadline comes first

// curl_global_init is not thread-safe in every build: once per process, before any handle.
Expected<void> global_init() {
    static std::once_flag once;
    static CURLcode rc = CURLE_OK;
    std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
    if (rc != CURLE_OK)
        return fail(ErrorCode::download_failed, std::string("curl_global_init failed: ") + curl_easy_strerror(rc));
    return {};
}

// Full jitter: uniform in [0, min(max, min * 2^(failures-1))], never below a small floor.
std::chrono::milliseconds backoff(const Request& r, int failures) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    auto cap = std::max<std::chrono::milliseconds>(r.backoff_min, 1ms);
    for (int i = 1; i < failures && cap < r.backoff_max; ++i) cap *= 2;
    cap = std::min(cap, std::max(r.backoff_max, 1ms));
    std::uniform_int_distribution<std::int64_t> dist(0, cap.count());
    const auto floor = std::min<std::chrono::milliseconds>(r.backoff_min, 50ms);
    return std::max(floor, std::chrono::milliseconds(dist(rng)));
}

// Sleep until `until`, waking every 20 ms to poll `cancelled`; false when cancelled.
bool sleep_unless_cancelled(const Request& r, Clock::time_point until) {
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

std::string secs(Clock::duration d) { return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()); }

}  // namespace

std::uint64_t min_progress(const Request& r) {
    const auto window = static_cast<std::uint64_t>(std::max<std::int64_t>(1, r.low_speed_time.count()));
    return std::max<std::uint64_t>(1, r.low_speed_limit * window);
}

void discard_partial(const fs::path& dest) {
    remove_quietly(detail::part_path(dest));
    remove_quietly(detail::sidecar_path(dest));
}

Expected<Result> fetch(const Request& req) {
    if (req.url.empty()) return fail(ErrorCode::download_failed, "download to " + req.dest.string() + ": no URL");
    if (req.dest.empty() || !req.dest.has_filename())
        return fail(ErrorCode::io_error, "download of " + req.url + ": no destination file");
    if (!req.expected_sha256.empty() && !valid_sha256(req.expected_sha256))
        return fail(ErrorCode::hash_mismatch, "download of " + req.url + ": expected sha256 '" + req.expected_sha256 +
                                                  "' is not 64 lowercase hex digits");
    if (auto g = global_init(); !g) return std::unexpected(g.error());
    const auto started = Clock::now();
    const auto total_deadline = std::max<Clock::duration>(req.total_deadline, 1s);
    const auto give_up_at = started + total_deadline;

    const auto part_file = detail::part_path(req.dest);
    const auto side_file = detail::sidecar_path(req.dest);
    const auto dir = req.dest.parent_path().empty() ? fs::path(".") : req.dest.parent_path();
    {
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec)
            return fail(ErrorCode::io_error,
                        "download of " + req.url + ": cannot create directory " + dir.string() + ": " + ec.message());
    }

    Result result;
    detail::PartFile part(part_file);
    if (auto o = part.open(); !o) return std::unexpected(o.error());

    // Resume only what the sidecar says is this request's object; anything else starts over.
    detail::Sidecar sidecar{req.url, req.expected_sha256, req.expected_size, {}, {}};
    const auto old = detail::read_sidecar(side_file);
    const bool resumable = detail::resumable(req, part.size(), old);
    if (resumable) {
        sidecar = *old;
        if (auto h = part.hash_existing(req.cancelled); !h) return std::unexpected(h.error());
        result.resumed_from = part.size();
    } else {
        if (auto t = part.truncate(); !t) return std::unexpected(t.error());
        if (auto w = detail::write_sidecar(req.dest, sidecar); !w) return std::unexpected(w.error());
    }
    detail::ProgressReporter progress(req, part.size());
    progress.initial(part.size());

    // A partial file that is already complete (the process died before the rename): check it
    // without the network; if it is wrong, start over.
    bool complete = resumable && req.expected_size != 0 && part.size() == req.expected_size;

    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> handle(curl_easy_init(), &curl_easy_cleanup);
    if (!handle) return fail(ErrorCode::download_failed, "download of " + req.url + ": curl_easy_init failed");

    const int max_attempts = std::max(1, req.max_attempts);
    const std::uint64_t needed = min_progress(req);
    std::uint64_t most = part.size();  // the most bytes ever on disk in this call
    int immediate_restarts = 0;
    int without_progress = 0;  // consecutive failed attempts that did not add `needed` bytes
    int progressing = 0;
    auto last_progress = Clock::now();  // retry_window counts from here
    while (!complete) {
        if (req.cancelled && req.cancelled()) return fail(ErrorCode::timeout, req.url + ": download cancelled");
        const auto now = Clock::now();
        if (now >= give_up_at)
            return fail(ErrorCode::download_stalled, req.url + ": not complete within the total deadline of " +
                                                         secs(total_deadline) + " s (" + std::to_string(result.attempts) +
                                                         " attempts, " + std::to_string(part.size()) + " bytes on disk)");
        ++result.attempts;
        const auto attempt_deadline = std::min<Clock::duration>(req.deadline, give_up_at - now);
        detail::Transfer transfer(req, part, sidecar, result, progress);
        const auto outcome = transfer.run(handle.get(), std::chrono::duration_cast<std::chrono::milliseconds>(attempt_deadline));
        if (outcome.next == Next::done) {
            complete = true;
            break;
        }
        if (transfer.object_changed()) most = 0;  // the old object's bytes are gone: count afresh
        const bool progressed = part.size() >= most + needed;
        most = std::max(most, part.size());
        if (outcome.next == Next::retry_now && immediate_restarts < kMaxImmediateRestarts) {
            ++immediate_restarts;  // not a failure of the server: it told us to start over
            continue;
        }
        const auto& e = outcome.error;
        if (outcome.next == Next::give_up) {
            // Wrong content or no space: the partial file is useless. Other failures (HTTP
            // errors, TLS, cancellation) keep it for a later resume.
            if (e.code == ErrorCode::size_mismatch || e.code == ErrorCode::disk_full) discard_partial(req.dest);
            return std::unexpected(e);
        }
        if (progressed) {
            without_progress = 0;
            last_progress = Clock::now();
            if (++progressing >= kMaxProgressingAttempts)
                return fail(e.code, e.message + " (gave up after " + std::to_string(result.attempts) + " attempts)");
        } else if (++without_progress >= max_attempts && Clock::now() - last_progress >= req.retry_window) {
            return fail(e.code, e.message + " (gave up after " + std::to_string(without_progress) +
                                    (without_progress == 1 ? " attempt" : " attempts") + " without progress)");
        }
        // After progress the next attempt follows soon; consecutive failures back off further.
        const auto wake = std::min(Clock::now() + backoff(req, std::max(1, without_progress)), give_up_at);
        if (!sleep_unless_cancelled(req, wake)) return fail(ErrorCode::timeout, req.url + ": download cancelled");
    }

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
                    "cannot rename " + part_file.string() + " to " + req.dest.string() + ": " + detail::errno_text(err));
    }
    remove_quietly(side_file);
    if (auto s = fsync_dir(dir); !s) return std::unexpected(s.error());

    result.sha256 = digest;
    if (req.on_progress) req.on_progress(Progress{part.size(), part.size(), 100});
    return result;
}

}  // namespace ota::download
