// One HTTP attempt of fetch() with the libcurl easy API, judged when its body starts or ends.
//
// Behaviour of curl 7.88 / nginx 1.22 relied on (tests/shared/download/ checks it):
// - nginx evaluates If-Range before the range: a changed object gets 200, never 416; 416 comes
//   only when the validator still matches and the partial file is longer than the object.
// - With `max_ranges 0` nginx answers a Range request with 200 and the whole object.
// - curl returns CURLE_OPERATION_TIMEDOUT for the low-speed limit, the overall timeout and the
//   connect timeout alike; they are told apart here by whether a response arrived and the time.
// - curl calls the progress callback about once a second also while no byte arrives: the stall
//   window (no byte at all for `stall_timeout`) and the flush of a quiet transfer run there.
// - curl 7.88 has no CURLOPT_TCP_KEEPCNT (8.9): the probe count is set in the socket callback.
// - The Range header is sent by hand (not CURLOPT_RANGE/RESUME_FROM) so curl applies no range
//   logic of its own; every status is judged here (CURLOPT_FAILONERROR is off).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>

#include "internal.hpp"
#include "ota/build_info.hpp"
#include "ota/json.hpp"

namespace ota::download::detail {
namespace {

using namespace std::chrono_literals;

constexpr long kCurlBuffer = 512L * 1024L;  // curl's receive buffer

long to_ms(std::chrono::milliseconds d) { return static_cast<long>(std::clamp<std::int64_t>(d.count(), 1, 0x7FFFFFFF)); }
long clamp_long(std::uint64_t v) { return static_cast<long>(std::min<std::uint64_t>(v, 0x7FFFFFFF)); }
long seconds_at_least_1(std::chrono::seconds s) { return clamp_long(static_cast<std::uint64_t>(std::max<std::int64_t>(1, s.count()))); }

}  // namespace

// ---- progress ---------------------------------------------------------------------------------

ProgressReporter::ProgressReporter(const Request& req, std::uint64_t on_disk) : req_(req) {
    floor_ = percent(on_disk);
    last_bytes_ = on_disk;
}

int ProgressReporter::percent(std::uint64_t bytes) const {
    const auto t = total();
    if (t == 0) return 0;
    return static_cast<int>(std::min<std::uint64_t>(100, bytes * 100 / t));
}

void ProgressReporter::initial(std::uint64_t bytes) {
    if (!req_.on_progress) return;
    const int p = percent(bytes);
    if (p >= 100) return;  // 100 % is reported once, after the hash was checked
    last_report_ = Clock::now();
    last_bytes_ = bytes;
    req_.on_progress(Progress{bytes, total(), p});
}

void ProgressReporter::update(std::uint64_t bytes) {
    if (!req_.on_progress) return;
    const int p = percent(bytes);
    if (p >= 100) return;
    const auto now = Clock::now();
    const int step_size = std::max(1, req_.progress_step_percent);
    const bool step = p >= floor_ + step_size;
    const bool timed = now - last_report_ >= req_.progress_interval && bytes != last_bytes_;
    if (!step && !timed) return;
    // Report whole steps (5, 10, ...) so that the count stays bounded whatever the chunking.
    if (step) floor_ = p - p % step_size;
    last_report_ = now;
    last_bytes_ = bytes;
    req_.on_progress(Progress{bytes, total(), p});
}

// ---- one attempt ------------------------------------------------------------------------------

Outcome Transfer::run(CURL* h, std::chrono::milliseconds deadline) {
    headers_ = ResponseHeaders{};
    judged_ = false;
    object_changed_ = false;
    abort_.reset();
    range_from_ = 0;
    errbuf_[0] = '\0';
    last_byte_ = Clock::now();

    curl_easy_reset(h);
    handle_ = h;
    std::string validator = sidecar_.validator();
    if (part_.size() > 0 && validator.empty()) {
        // Without a validator a resumed object could be another one: start over.
        if (auto t = part_.truncate(); !t) return {Next::give_up, t.error()};
        ++result_.restarts_from_zero;
        progress_.restarted();
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
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, to_ms(deadline));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, clamp_long(req_.low_speed_limit));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, seconds_at_least_1(req_.low_speed_time));
    // A connection a NAT gateway forgot dies silently: keepalive probes find out within
    // keepalive_idle + keepalive_probes * keepalive_interval.
    if (req_.keepalive_idle.count() > 0) {
        curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, seconds_at_least_1(req_.keepalive_idle));
        curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, seconds_at_least_1(req_.keepalive_interval));
        curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, &Transfer::on_sockopt);
        curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, this);
    }
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
    return curl_failure(rc, elapsed, deadline);
}

// libcurl calls these from C: nothing may propagate out of them.
std::size_t Transfer::on_header(char* data, std::size_t size, std::size_t n, void* self_ptr) {
    auto* self = static_cast<Transfer*>(self_ptr);
    const std::string_view line(data, size * n);
    parse_header_line(line, self->headers_);
    constexpr std::string_view location = "location:";
    const auto status = self->headers_.status;
    if (status >= 300 && status <= 399 && line.size() > location.size() &&
        std::equal(location.begin(), location.end(), line.begin(),
                   [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); })) {
        try {
            if (!self->redirect_allowed(trim(line.substr(location.size())))) return 0;  // ends the transfer
        } catch (const std::exception& e) {
            self->abort_ = Outcome{Next::give_up, {ErrorCode::internal, self->req_.url + ": " + e.what()}};
            return 0;
        }
    }
    return size * n;
}

namespace {
// "https://host:port" of `target` resolved against `base` (lowercase), or empty when either is
// not a URL.
std::string origin(const std::string& base, std::string_view target) {
    CURLU* u = curl_url();
    if (!u) return {};
    std::string out;
    char *scheme = nullptr, *host = nullptr, *port = nullptr;
    if (curl_url_set(u, CURLUPART_URL, base.c_str(), 0) == CURLUE_OK &&
        (target.empty() || curl_url_set(u, CURLUPART_URL, std::string(target).c_str(), 0) == CURLUE_OK) &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        out = std::string(scheme) + "://" + host + ":" + port;
        for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return out;
}
}  // namespace

// Redirects are followed only within the artifact server the release names (same scheme, host
// and port): the device's client certificate and its Range/If-Range headers go nowhere else, and
// a redirect cannot move a download to plain http:// or to a host nobody vouched for.
bool Transfer::redirect_allowed(std::string_view location) {
    char* effective = nullptr;
    if (handle_) curl_easy_getinfo(handle_, CURLINFO_EFFECTIVE_URL, &effective);
    const auto from = origin(req_.url, {});
    const auto to = origin(effective ? std::string(effective) : req_.url, location);
    if (!from.empty() && to == from) return true;
    abort_ = Outcome{Next::give_up,
                     {ErrorCode::download_failed, req_.url + ": redirect to " + printable(location, 200) +
                                                      " refused (not retried): artifacts are fetched only from " +
                                                      (from.empty() ? req_.url : from)}};
    return false;
}

std::size_t Transfer::on_write(char* data, std::size_t size, std::size_t n, void* self_ptr) {
    auto* self = static_cast<Transfer*>(self_ptr);
    try {
        return self->write(data, size * n);
    } catch (const std::exception& e) {
        self->abort_ = Outcome{Next::give_up, {ErrorCode::internal, self->req_.url + ": " + e.what()}};
        return CURL_WRITEFUNC_ERROR;
    }
}

int Transfer::on_xferinfo(void* self_ptr, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* self = static_cast<Transfer*>(self_ptr);
    try {
        return self->tick();
    } catch (const std::exception& e) {
        self->abort_ = Outcome{Next::give_up, {ErrorCode::internal, self->req_.url + ": " + e.what()}};
        return 1;
    }
}

int Transfer::on_sockopt(void* self_ptr, curl_socket_t fd, curlsocktype purpose) {
    const auto* self = static_cast<Transfer*>(self_ptr);
    if (purpose == CURLSOCKTYPE_IPCXN) {
        const int probes = std::clamp(self->req_.keepalive_probes, 1, 127);
        (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
    }
    return CURL_SOCKOPT_OK;
}

std::size_t Transfer::write(const char* data, std::size_t bytes) {
    if (!judged_ && !judge()) return CURL_WRITEFUNC_ERROR;
    if (bytes > 0) last_byte_ = Clock::now();
    if (req_.expected_size != 0 && part_.size() + bytes > req_.expected_size) {
        abort_ = Outcome{Next::give_up, {ErrorCode::size_mismatch, req_.url + ": the server sent more than the declared " +
                                                                     std::to_string(req_.expected_size) + " bytes"}};
        return CURL_WRITEFUNC_ERROR;
    }
    if (auto a = part_.append(data, bytes); !a) {
        abort_ = Outcome{Next::give_up, a.error()};
        return CURL_WRITEFUNC_ERROR;
    }
    result_.bytes_transferred += bytes;
    progress_.update(part_.size());
    return bytes;
}

// About once a second, also while nothing arrives: cancellation, the stall window, the flush.
int Transfer::tick() {
    if (req_.cancelled && req_.cancelled()) {
        abort_ = Outcome{Next::give_up, {ErrorCode::timeout, req_.url + ": download cancelled"}};
        return 1;
    }
    part_.tick();
    if (req_.stall_timeout.count() > 0 && Clock::now() - last_byte_ >= req_.stall_timeout) {
        const auto s = std::to_string(req_.stall_timeout.count());
        abort_ = Outcome{Next::retry, {ErrorCode::download_stalled,
                                       req_.url + (headers_.status == 0 ? ": no response for " : ": stalled: no byte for ") +
                                           s + " s (at byte " + std::to_string(part_.size()) + ")"}};
        return 1;
    }
    return 0;
}

// Judge the response when its body starts (or it ended without one). False: abort_ is set.
bool Transfer::judge() {
    judged_ = true;
    const long status = headers_.status;
    const std::string where = req_.url + ": HTTP " + std::to_string(status);
    if (status == 200) {
        if (part_.size() > 0) {  // Range ignored, or If-Range says the object changed
            // Other validators: another object. The same ones: a server that ignores Range.
            object_changed_ = headers_.etag != sidecar_.etag || headers_.last_modified != sidecar_.last_modified;
            if (auto t = part_.truncate(); !t) return stop(Next::give_up, t.error());
            ++result_.restarts_from_zero;
            progress_.restarted();
        }
        if (headers_.content_length) known_total_ = *headers_.content_length;
        if (req_.expected_size != 0 && headers_.content_length && *headers_.content_length > req_.expected_size)
            return stop(Next::give_up, {ErrorCode::size_mismatch,
                                        req_.url + ": the server's object is " + std::to_string(*headers_.content_length) +
                                            " bytes, more than the declared " + std::to_string(req_.expected_size)});
        progress_.set_total(known_total_);
        return remember_validators();
    }
    if (status == 206) {
        const auto cr = parse_content_range(headers_.content_range);
        if (range_from_ == 0 || !cr)
            return stop(Next::retry, {ErrorCode::download_failed, where + " with Content-Range '" + headers_.content_range +
                                                                      "' to a request for bytes " + std::to_string(range_from_) + "-"});
        if (cr->total && req_.expected_size != 0 && *cr->total != req_.expected_size)
            return stop(Next::give_up, {ErrorCode::size_mismatch,
                                        req_.url + ": the server's object is " + std::to_string(*cr->total) +
                                            " bytes (Content-Range), the declared size is " + std::to_string(req_.expected_size)});
        const bool other_object = !headers_.etag.empty() && !sidecar_.etag.empty() && headers_.etag != sidecar_.etag;
        if (cr->first != range_from_ || other_object) {
            // Not the continuation of our bytes: start over rather than join two objects.
            object_changed_ = other_object;
            if (auto t = part_.truncate(); !t) return stop(Next::give_up, t.error());
            ++result_.restarts_from_zero;
            progress_.restarted();
            return stop(Next::retry_now, {ErrorCode::download_failed, where + " for '" + headers_.content_range +
                                                                          "' does not continue at byte " + std::to_string(range_from_)});
        }
        if (cr->total) known_total_ = *cr->total;
        progress_.set_total(known_total_);
        return remember_validators();
    }
    if (status == 416) {  // the partial file is longer than the object: start over
        object_changed_ = true;
        if (auto t = part_.truncate(); !t) return stop(Next::give_up, t.error());
        ++result_.restarts_from_zero;
        progress_.restarted();
        return stop(Next::retry_now, {ErrorCode::download_failed,
                                      where + " (range from byte " + std::to_string(range_from_) + " not satisfiable)"});
    }
    if (status >= 500 && status <= 599) return stop(Next::retry, {ErrorCode::download_failed, where});
    return stop(Next::give_up, {ErrorCode::download_failed, where + (status == 0 ? " (no status line)" : "")});
}

bool Transfer::stop(Next next, Error error) {
    abort_ = Outcome{next, std::move(error)};
    return false;
}

// Record the response's validators in the sidecar before its first byte is written.
bool Transfer::remember_validators() {
    if (headers_.etag == sidecar_.etag && headers_.last_modified == sidecar_.last_modified) return true;
    sidecar_.etag = headers_.etag;
    sidecar_.last_modified = headers_.last_modified;
    if (auto w = write_sidecar(req_.dest, sidecar_); !w) return stop(Next::give_up, w.error());
    return true;
}

Outcome Transfer::curl_failure(CURLcode rc, Clock::duration elapsed, std::chrono::milliseconds deadline) const {
    // curl's error buffer names the host, port or certificate problem; its code text does not.
    const std::string cause = errbuf_[0] != '\0' ? std::string(trim(errbuf_)) : curl_easy_strerror(rc);
    const std::string where = req_.url + ": ";
    switch (rc) {
        case CURLE_OPERATION_TIMEDOUT:
            if (headers_.status == 0 && !judged_)  // no response at all: connect or TLS handshake
                return {Next::retry, {ErrorCode::download_failed, where + cause}};
            if (elapsed + 100ms >= deadline)
                return {Next::retry, {ErrorCode::download_stalled,
                                      where + "not complete within the deadline of " +
                                          std::to_string(std::chrono::duration_cast<std::chrono::seconds>(deadline).count()) + " s"}};
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

}  // namespace ota::download::detail
