// Resumable HTTPS downloads (libcurl behind this header).
//
// The artifact is written to `<dest>.part`, with a sidecar `<dest>.part.json` recording the URL,
// the expected SHA-256 and size, and the server's ETag / Last-Modified. A later call (after a
// dropped connection, or after the agent was killed and restarted) continues the partial file
// with a Range request guarded by If-Range, so bytes of two different objects are never joined:
// - 206 with the right Content-Range: continue;
// - 200 (server ignores Range, or If-Range says the object changed): start over from zero;
// - 416 (the partial file is longer than the object, or the object shrank): start over.
// SHA-256 is computed while writing (the bytes already on disk are hashed once at resume).
// Never more than `expected_size` bytes are written. An attempt ends when it stalls (no byte at
// all for `stall_timeout`, or below `low_speed_limit` bytes/s averaged over `low_speed_time`), at
// its `deadline`, or when TCP keepalive finds the connection dead; the next attempt resumes after
// a capped, jittered backoff. `max_attempts` bounds the *consecutive* attempts without progress;
// `total_deadline` bounds the whole call. On success `<dest>.part` is fsynced and renamed to
// `dest`, and the sidecar is removed.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "ota/error.hpp"

namespace ota::download {

struct Progress {
    std::uint64_t bytes{0};  // bytes of the artifact received so far (on disk or being written)
    std::uint64_t total{0};  // expected size
    int percent{0};
};

struct Request {
    std::string url;
    std::filesystem::path dest;
    std::uint64_t expected_size{0};  // 0: unknown (not checked; a 416 can then occur at resume)
    std::string expected_sha256;     // lowercase hex; empty: not checked (Result::sha256 has it)
    std::string cafile;           // empty: the system's CA store
    std::string certfile;         // optional client certificate (mutual TLS)
    std::string keyfile;
    std::uint64_t low_speed_limit{1024};           // bytes per second, averaged...
    std::chrono::seconds low_speed_time{30};       // ...over this long: below it = stalled
    // No byte at all for this long (also while waiting for the response) = stalled: a dead
    // connection (a NAT gateway that lost its mapping) is left within seconds, however slow the
    // link. 0: off.
    std::chrono::seconds stall_timeout{10};
    // TCP keepalive on the transfer's connection: probes after keepalive_idle without traffic,
    // every keepalive_interval; keepalive_probes unanswered ones close it. idle 0: off.
    std::chrono::seconds keepalive_idle{5};
    std::chrono::seconds keepalive_interval{2};
    int keepalive_probes{3};
    std::chrono::seconds connect_timeout{15};
    std::chrono::seconds deadline{3600};           // per attempt
    // Consecutive attempts without progress before giving up. An attempt is progress when it adds
    // at least min_progress() bytes (low_speed_limit * low_speed_time) beyond the most ever on
    // disk in this call: a link that drops every few MiB still completes with resume, while one
    // that never advances (or a server that ignores Range and is cut each time) gives up. When
    // the server says the object changed (other validators, 416) progress counts from zero again.
    // At most 100,000 attempts in all.
    int max_attempts{5};
    // ...and only once at least this long has passed without progress (since the call started or
    // the last attempt that made progress): a link that is down for a while (attempts then fail at
    // once, "no route to host") is waited out with backoff instead of using the budget up in
    // seconds. 0: max_attempts alone decides.
    std::chrono::seconds retry_window{600};
    // The whole call, all attempts and backoffs: past it, download_stalled.
    std::chrono::seconds total_deadline{6 * 3600};
    std::chrono::milliseconds backoff_min{500};
    std::chrono::milliseconds backoff_max{30000};
    // Called once at the start with the bytes already on disk (a resumed download; 0 when fresh),
    // then at most every `progress_step_percent` percent or `progress_interval`, and at 100 %.
    std::function<void(const Progress&)> on_progress;
    int progress_step_percent{5};
    std::chrono::milliseconds progress_interval{std::chrono::seconds(5)};
    // Polled during the transfer and the backoff; true aborts with ErrorCode::timeout ("cancelled").
    std::function<bool()> cancelled;
};

struct Result {
    std::uint64_t bytes_transferred{0};  // over the network in this call, all attempts
    std::uint64_t resumed_from{0};       // bytes already on disk when the call started (0: fresh)
    int attempts{0};                     // HTTP requests made, all attempts
    int restarts_from_zero{0};           // 200 to a Range request, If-Range mismatch, 416
    std::string sha256;
};

// Errors: download_failed (HTTP status, TLS, connection: message names the URL and the cause),
// download_stalled, size_mismatch (the server sent more than expected_size, or less at the end),
// hash_mismatch (the partial file is deleted), disk_full, io_error, timeout (cancelled).
// Retried with backoff: connection failures, 5xx, stalls and per-attempt deadlines. Not retried: other HTTP
// statuses, TLS verification and setup errors, size/hash mismatches, disk_full, io_error.
// Kept for a later call: the partial file after HTTP/TLS/connection failures, stalls and
// cancellation. Deleted: after size_mismatch, hash_mismatch and disk_full.
// A partial file is resumed only when its sidecar matches url, expected_sha256 and expected_size
// and records a validator (ETag or Last-Modified) for If-Range; otherwise it starts from zero.
// A partial file of exactly expected_size (the process died before the rename) is verified
// without a request. Received bytes are handed to a writer thread in 64 KiB buffers (one
// pwrite each), at most 512 KiB of them held in memory, and reach `<dest>.part` within a second
// also when the link goes quiet: a kill -9 loses at most that much.
// Concurrent calls for the same `dest` are refused (io_error): `<dest>.part` is locked (flock).
[[nodiscard]] Expected<Result> fetch(const Request& request);

// The bytes an attempt must add to count as progress: low_speed_limit * low_speed_time (>= 1).
[[nodiscard]] std::uint64_t min_progress(const Request& request);

// Remove `<dest>.part` and its sidecar (e.g. when a release is superseded).
void discard_partial(const std::filesystem::path& dest);

}  // namespace ota::download
