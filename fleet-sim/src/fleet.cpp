#include "fleet.hpp"

#include <mosquitto.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "passwords.hpp"

namespace ota::fleetsim {
namespace {

using ojson = nlohmann::ordered_json;
constexpr std::uint64_t downloads_tag = ~std::uint64_t{0};
constexpr std::int64_t ms = 1000;  // in microseconds

Fleet::Conn& conn_of(void* obj) { return *static_cast<Fleet::Conn*>(obj); }

void cb_connect(mosquitto*, void* obj, int rc, int, const mosquitto_property*) { conn_of(obj).fleet->on_connack(conn_of(obj), rc); }
void cb_disconnect(mosquitto*, void* obj, int rc, const mosquitto_property*) {
    conn_of(obj).fleet->on_disconnect(conn_of(obj), rc);
}
void cb_message(mosquitto*, void* obj, const mosquitto_message* m, const mosquitto_property*) {
    conn_of(obj).fleet->on_message(conn_of(obj), m->topic, m->payload, m->payloadlen);
}
void cb_publish(mosquitto*, void* obj, int, int reason_code, const mosquitto_property*) {
    conn_of(obj).fleet->on_publish(conn_of(obj), reason_code);
}

// Refusals that a retry cannot fix: bad user name or password, not authorised, banned.
bool permanent_refusal(int rc) { return rc == 4 || rc == 5 || rc == 134 || rc == 135 || rc == 138; }

// Every client takes a descriptor (its socket; see new_client() for the socketpair). Raise the soft limit to the hard one, and the hard one
// too when allowed (root), to what `needed` asks.
std::uint64_t raise_nofile(std::uint64_t needed) {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return 0;
    if (r.rlim_max < needed) {
        const rlimit want{needed, needed};
        if (::setrlimit(RLIMIT_NOFILE, &want) == 0) return needed;
    }
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &r);
        ::getrlimit(RLIMIT_NOFILE, &r);
    }
    return r.rlim_cur;
}

bool is_unix_socket(int fd) {
    int domain = 0;
    socklen_t len = sizeof domain;
    return ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX;
}

long max_rss_kb() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

bool is_free(int fd) { return ::fcntl(fd, F_GETFD) < 0 && errno == EBADF; }

}  // namespace

// libmosquitto's mosquitto_new() makes a socketpair per client, to wake up the select() of its own
// loop (mosquitto_loop/_start, which we do not use), and writes a byte to it at every packet it
// queues. That is three descriptors per device (30,000 for 10,000 devices, above the usual hard
// limit of 20,000) and unread bytes piling up in the kernel. So every client is made with the
// same two reserved descriptors as its pair: they are closed just before mosquitto_new() (they
// are then the two lowest free descriptors, which socketpair() must return) and pointed back at
// /dev/null right after, which also frees the pair. All clients are made in init(), before any
// other thread exists, and none is destroyed before shutdown (a timed-out connection is retried
// with mosquitto_reconnect_async), so nothing else can take those two numbers in between.
mosquitto* Fleet::new_client(const char* id, void* userdata) {
    if (reserved_[0] < 0) return mosquitto_new(id, true, userdata);
    ::close(reserved_[0]);
    ::close(reserved_[1]);
    auto* m = mosquitto_new(id, true, userdata);
    const bool took = is_unix_socket(reserved_[0]) && is_unix_socket(reserved_[1]);
    for (int r : reserved_)
        if (took || is_free(r)) ::dup2(devnull_, r);
    if (!took) ++pair_fallbacks_;  // the client has a pair of its own: harmless, just 2 more descriptors
    return m;
}

void Fleet::restore_reserved() {
    for (int r : reserved_)
        if (r >= 0 && is_free(r)) ::dup2(devnull_, r);
}

Fleet::Fleet(const SimOptions& options) : o_(options) {}

Fleet::~Fleet() {
    downloader_.reset();  // no other thread from here on
    for (auto& c : conns_)
        if (c.m) {
            mosquitto_destroy(c.m);  // also closes the reserved pair descriptors: put them back
            restore_reserved();
        }
    if (!temp_download_dir_.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(temp_download_dir_, ec);
    }
    if (epfd_ >= 0) ::close(epfd_);
    for (int r : reserved_)
        if (r >= 0) ::close(r);
    if (devnull_ >= 0) ::close(devnull_);
    mosquitto_lib_cleanup();
}

Expected<void> Fleet::init() {
    mosquitto_lib_init();
    // First of all: /dev/null and the two reserved descriptors (see new_client()).
    devnull_ = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull_ < 0) return fail(ErrorCode::io_error, std::string("/dev/null: ") + std::strerror(errno));
    reserved_[0] = ::dup(devnull_);
    reserved_[1] = ::dup(devnull_);
    crypto::TrustStore trusted;
    if (!o_.trusted_keys.empty())
        if (auto t = trusted.load(o_.trusted_keys); !t) return std::unexpected(t.error().with_context("--trusted-keys"));
    logic_ = std::make_unique<Logic>(o_, std::move(trusted), *this);
    if (!o_.events_file.empty())
        if (auto e = events_.open(o_.events_file); !e) return e;
    const auto needed = static_cast<std::uint64_t>(o_.devices) + 256;
    nofile_limit_ = raise_nofile(needed);
    if (nofile_limit_ < needed)
        std::fprintf(stderr, "ota-fleet-sim: warning: the open-file limit is %llu; %d devices need about %llu "
                             "(one per device; raise the hard limit: ulimit -Hn, LimitNOFILE=)\n",
                     static_cast<unsigned long long>(nofile_limit_), o_.devices, static_cast<unsigned long long>(needed));
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) return fail(ErrorCode::internal, std::string("epoll_create1: ") + std::strerror(errno));
    devices_.reserve(static_cast<std::size_t>(o_.devices));
    conns_.resize(static_cast<std::size_t>(o_.devices));  // never resized again: mosquitto holds pointers
    for (int i = 0; i < o_.devices; ++i) {
        devices_.push_back(logic_->make_device(i));
        auto& c = conns_[static_cast<std::size_t>(i)];
        c.fleet = this;
        c.index = static_cast<std::uint32_t>(i);
        if (auto made = make_client(c); !made) return made;
    }
    if (o_.download_sample > 0) {
        auto dir = o_.download_dir;
        if (dir.empty()) {
            const char* tmp = std::getenv("TMPDIR");
            std::string tmpl = (std::filesystem::path(tmp && *tmp ? tmp : "/tmp") / "ota-fleet-sim-XXXXXX").string();
            if (!::mkdtemp(tmpl.data())) return fail(ErrorCode::io_error, "mkdtemp: " + std::string(std::strerror(errno)));
            dir = temp_download_dir_ = tmpl;
        }
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        downloader_ = std::make_unique<Downloader>(dir, o_.download_cafile);  // the only other thread
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = downloads_tag;
        ::epoll_ctl(epfd_, EPOLL_CTL_ADD, downloader_->fd(), &ev);
    }
    return {};
}

Expected<void> Fleet::make_client(Conn& c) {
    const auto& d = devices_[c.index];
    c.m = new_client(d.id.c_str(), &c);
    if (!c.m) return fail(ErrorCode::internal, "mosquitto_new failed for " + d.id + ": " + std::strerror(errno));
    mosquitto_int_option(c.m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(c.m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_v5_callback_set(c.m, cb_connect);
    mosquitto_disconnect_v5_callback_set(c.m, cb_disconnect);
    mosquitto_message_v5_callback_set(c.m, cb_message);
    mosquitto_publish_v5_callback_set(c.m, cb_publish);
    const auto will_topic = logic_->topics().online(d.id);
    const std::string will = R"({"online":false})";
    mosquitto_will_set(c.m, will_topic.c_str(), static_cast<int>(will.size()), will.data(), 1, true);
    if (o_.tls()) {
        const auto cert = (o_.cert_dir / (d.id + ".pem")).string(), key = (o_.cert_dir / (d.id + ".key")).string();
        if (mosquitto_tls_set(c.m, o_.cafile.c_str(), nullptr, cert.c_str(), key.c_str(), nullptr) != MOSQ_ERR_SUCCESS)
            return fail(ErrorCode::config_invalid, "TLS files for " + d.id + ": " + cert + ", " + key + ", " + o_.cafile);
    } else {
        const auto password = o_.secret.empty() ? o_.password : derive_password(o_.secret, d.id);
        mosquitto_username_pw_set(c.m, d.id.c_str(), password.c_str());
    }
    return {};
}

std::uint16_t Fleet::component_index(const std::string& name) const {
    for (std::size_t i = 0; i < o_.components.size(); ++i)
        if (o_.components[i].first == name) return static_cast<std::uint16_t>(i);
    return reconnect_timer;
}

// ---- connections ----------------------------------------------------------------------------

void Fleet::start_connect(Conn& c) {
    const auto& d = devices_[c.index];
    ++connect_attempts_;
    c.started_us = mono_us();
    if (first_connect_us_ == 0) first_connect_us_ = c.started_us;
    // reconnect_async closes the previous socket (epoll forgets it with the close).
    const int rc = c.attempted ? mosquitto_reconnect_async(c.m)
                               : mosquitto_connect_async(c.m, o_.host.c_str(), o_.port, o_.keepalive_s);
    c.attempted = true;
    if (rc != MOSQ_ERR_SUCCESS) {
        ++connect_failures_;
        event(d, "connect_failed", {{"error", mosquitto_strerror(rc)}});
        c.state = State::backoff;
        return retry_later(c, 1000 * ms);
    }
    c.state = State::connecting;
    ++connecting_;
    mark(c);
}

void Fleet::retry_later(Conn& c, std::int64_t in_us) {
    const auto jitter = static_cast<std::int64_t>((c.index * 7919u) % 1000u) * ms;
    timers_.push({mono_us() + in_us + jitter, c.index, 0, reconnect_timer});
}

void Fleet::on_connack(Conn& c, int rc) {
    auto& d = devices_[c.index];
    if (rc != 0) {
        ++connect_failures_;
        event(d, "connect_refused", {{"reason", rc}, {"error", mosquitto_reason_string(rc)}});
        if (permanent_refusal(rc)) {
            ++refused_;
            if (c.state == State::connecting) --connecting_;
            c.state = State::refused;  // the socket is closed by libmosquitto; nothing more
            return;
        }
        return;  // the disconnect callback follows and schedules the retry
    }
    --connecting_;
    ++connected_;
    c.state = State::connected;
    if (!c.ever_connected) {
        c.ever_connected = true;
        if (++ever_connected_ == static_cast<std::uint64_t>(o_.devices)) {
            all_connected_us_ = mono_us();
            events_.write("", "all_connected", {{"devices", o_.devices}, {"connect_ms", (all_connected_us_ - first_connect_us_) / ms}});
        }
    }
    event(d, "connected", nlohmann::json::object());
    logic_->on_connected(d);
    if (flood_started_) flood_top_up(c);
    mark(c);
}

void Fleet::on_disconnect(Conn& c, int rc) {
    if (c.state == State::refused) return;
    ++disconnects_;
    event(devices_[c.index], "disconnected", {{"reason", rc}});
    if (c.state == State::connecting) ++connect_failures_;
    if (c.state == State::connected) --connected_;
    if (c.state == State::connecting) --connecting_;
    c.state = State::backoff;
    c.unacked = 0;
    c.fd = -1;
    c.interest = 0;
    if (!exit_reason_.empty()) return;  // shutting down: no reconnect
    retry_later(c, 1000 * ms);
}

void Fleet::on_message(Conn& c, const char* topic, const void* payload, int len) {
    logic_->on_message(devices_[c.index], topic,
                       std::string(static_cast<const char*>(payload), static_cast<std::size_t>(std::max(len, 0))));
    mark(c);
}

void Fleet::on_publish(Conn& c, int reason_code) {
    if (c.unacked > 0) --c.unacked;
    ++acked_;
    if (reason_code >= 128) ++denied_;
    if (flood_started_ && c.flood_sent > c.flood_acked) {
        ++c.flood_acked;
        if (++flood_acked_ == o_.flood * static_cast<std::uint64_t>(o_.devices)) {
            flood_done_us_ = mono_us();
            events_.write("", "flood_done", {{"messages", flood_acked_}, {"ms", (flood_done_us_ - flood_start_us_) / ms}});
        }
        flood_top_up(c);
    }
}

void Fleet::mark(Conn& c) {
    if (c.dirty) return;
    c.dirty = true;
    dirty_.push_back(c.index);
}

// Register the connection's socket with epoll, and ask for writability only while libmosquitto
// has something to write.
void Fleet::sync(Conn& c) {
    c.dirty = false;
    if (!c.m) return;
    const int fd = mosquitto_socket(c.m);
    if (fd < 0) {
        c.fd = -1;
        c.interest = 0;
        return;
    }
    const std::uint32_t want = EPOLLIN | (mosquitto_want_write(c.m) ? EPOLLOUT : 0u);
    if (fd == c.fd && want == c.interest) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = c.index;
    if (fd != c.fd) {
        if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST) ::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
    } else if (::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT) {
        ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);  // the same number, a new socket
    }
    c.fd = fd;
    c.interest = want;
}

void Fleet::sync_dirty() {
    for (std::size_t i = 0; i < dirty_.size(); ++i) sync(conns_[dirty_[i]]);
    dirty_.clear();
}

// ---- Io -------------------------------------------------------------------------------------

void Fleet::publish(Device& d, const std::string& topic, const std::string& payload, bool retain) {
    auto& c = conns_[d.index];
    if (!c.m || c.state != State::connected) {
        ++dropped_;
        return;
    }
    const int rc = mosquitto_publish_v5(c.m, nullptr, topic.c_str(), static_cast<int>(payload.size()), payload.data(), 1,
                                        retain, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
        ++dropped_;
        return;
    }
    ++published_;
    ++c.unacked;
    mark(c);
}

void Fleet::subscribe(Device& d, const std::string& filter) {
    auto& c = conns_[d.index];
    if (c.m) mosquitto_subscribe_v5(c.m, nullptr, filter.c_str(), 1, 0, nullptr);
    mark(c);
}

void Fleet::unsubscribe(Device& d, const std::string& filter) {
    auto& c = conns_[d.index];
    if (c.m) mosquitto_unsubscribe_v5(c.m, nullptr, filter.c_str(), nullptr);
    mark(c);
}

void Fleet::schedule(Device& d, std::chrono::milliseconds delay, const std::string& component, std::uint32_t gen) {
    timers_.push({mono_us() + delay.count() * ms, d.index, gen, component_index(component)});
}

void Fleet::start_download(Device& d, const std::string& component, const Job& job) {
    downloader_->submit({d.index, component, job.gen, job.url, job.sha256, job.size});
}

void Fleet::event(const Device& d, std::string_view name, const nlohmann::json& fields) { events_.write(d.id, name, fields); }

// ---- the loop -------------------------------------------------------------------------------

void Fleet::run_timers(std::int64_t now) {
    // Bounded per call so that sockets are served between large batches of timers.
    for (int n = 0; n < 20000 && !timers_.empty() && timers_.top().at_us <= now; ++n) {
        const auto t = timers_.top();
        timers_.pop();
        auto& c = conns_[t.device];
        if (t.component == reconnect_timer) {
            if (c.state == State::backoff && exit_reason_.empty()) start_connect(c);
            continue;
        }
        logic_->on_timer(devices_[t.device], o_.components[t.component].first, t.gen);
    }
}

void Fleet::sweep(std::int64_t now) {
    for (auto& c : conns_) {
        if (!c.m) continue;
        if (c.state == State::connecting && now - c.started_us > o_.connect_timeout_ms * ms) {
            ++connect_failures_;
            event(devices_[c.index], "connect_timeout", nlohmann::json::object());
            --connecting_;
            start_connect(c);  // a new socket at once
            continue;
        }
        if (c.state == State::connected) {
            mosquitto_loop_misc(c.m);  // keepalive PINGREQ, and the keepalive timeout
            mark(c);
        }
    }
}

void Fleet::flood_top_up(Conn& c) {
    auto& d = devices_[c.index];
    const auto topic = logic_->topics().status(d.id, o_.flood_component);
    while (c.state == State::connected && c.flood_sent < o_.flood && c.flood_sent - c.flood_acked < static_cast<std::uint64_t>(o_.flood_window)) {
        publish(d, topic, logic_->flood_status(d, c.flood_sent, o_.flood), true);
        ++c.flood_sent;
    }
}

void Fleet::handle_downloads() {
    for (auto& r : downloader_->take()) {
        logic_->on_download_done(devices_[r.job.device], r.job.component, r.job.gen, r.result);
        mark(conns_[r.job.device]);
    }
}

std::string Fleet::exit_reason(const std::atomic<bool>& stop, std::int64_t now) const {
    if (stop) return "signal";
    if (o_.duration_s > 0 && now - start_us_ >= static_cast<std::int64_t>(o_.duration_s * 1e6)) return "duration";
    const auto& w = o_.exit_when;
    const auto& k = logic_->counters();
    if (w.connected && all_connected_us_) return "connected";
    if (w.halted && k.devices_halted > 0) return "halted";
    if (w.flood_done && flood_done_us_) return "flood-done";
    if (w.final_count && k.devices_final >= *w.final_count) return "final=" + std::to_string(*w.final_count);
    if (w.version) {
        for (const auto& d : devices_) {
            bool has = false;
            for (const auto& [name, c] : d.components) has = has || (c.installed && *c.installed == *w.version);
            if (!has) return "";
        }
        return "version=" + *w.version;
    }
    return "";
}

void Fleet::progress_line(std::int64_t now) const {
    if (o_.quiet) return;
    const auto& k = logic_->counters();
    std::fprintf(stderr, "ota-fleet-sim: %.1fs connected %llu/%d, published %llu, waves %llu, jobs %llu (ok %llu, failed %llu)\n",
                 static_cast<double>(now - start_us_) / 1e6, static_cast<unsigned long long>(connected_), o_.devices,
                 static_cast<unsigned long long>(published_), static_cast<unsigned long long>(k.wave_messages),
                 static_cast<unsigned long long>(k.jobs_started), static_cast<unsigned long long>(k.succeeded),
                 static_cast<unsigned long long>(k.failed + k.rolled_back));
}

// Read and write what epoll says is ready; libmosquitto runs the callbacks from in here.
void Fleet::serve(const std::vector<epoll_event>& ready, int n) {
    for (int i = 0; i < n; ++i) {
        const auto& ev = ready[static_cast<std::size_t>(i)];
        if (ev.data.u64 == downloads_tag) {
            handle_downloads();
            continue;
        }
        auto& c = conns_[static_cast<std::size_t>(ev.data.u64)];
        if (ev.events & (EPOLLIN | EPOLLERR | EPOLLHUP)) mosquitto_loop_read(c.m, 8);
        if ((ev.events & EPOLLOUT) && mosquitto_socket(c.m) >= 0) mosquitto_loop_write(c.m, 8);
        mark(c);
    }
}

void Fleet::run(const std::atomic<bool>& stop) {
    start_us_ = mono_us();
    std::vector<epoll_event> ready(1024);
    std::int64_t next_sweep = start_us_ + 1000 * ms, next_check = start_us_, next_flush = start_us_ + 1000 * ms,
                 next_progress = start_us_ + 2000 * ms;
    for (;;) {
        auto now = mono_us();
        while (connecting_ < o_.connect_window && next_connect_ < o_.devices)
            start_connect(conns_[static_cast<std::size_t>(next_connect_++)]);
        if (o_.flood > 0 && !flood_started_ && all_connected_us_) {
            flood_started_ = true;
            flood_start_us_ = mono_us();
            events_.write("", "flood_start", {{"devices", o_.devices}, {"per_device", o_.flood}});
            for (auto& c : conns_) flood_top_up(c);
        }
        sync_dirty();
        std::int64_t wait_us = 100 * ms;
        if (!timers_.empty()) wait_us = std::clamp<std::int64_t>(timers_.top().at_us - now, 0, wait_us);
        const int n = ::epoll_wait(epfd_, ready.data(), static_cast<int>(ready.size()), static_cast<int>((wait_us + 999) / 1000));
        serve(ready, n);
        now = mono_us();
        run_timers(now);
        if (now >= next_sweep) {
            sweep(now);
            next_sweep = now + 1000 * ms;
        }
        if (now >= next_flush) {
            events_.flush();
            next_flush = now + 1000 * ms;
        }
        if (now >= next_progress) {
            progress_line(now);
            next_progress = now + 2000 * ms;
        }
        if (now >= next_check) {
            next_check = now + 50 * ms;
            exit_reason_ = exit_reason(stop, now);
            if (!exit_reason_.empty()) break;
        }
    }
    shutdown();
}

// Let outstanding publishes be acknowledged (bounded), then disconnect everyone cleanly.
void Fleet::shutdown() {
    end_us_ = mono_us();
    std::vector<epoll_event> ready(1024);
    auto pump = [&](std::int64_t budget_us, auto&& done) {
        const auto until = mono_us() + budget_us;
        while (!done() && mono_us() < until) {
            sync_dirty();
            serve(ready, ::epoll_wait(epfd_, ready.data(), static_cast<int>(ready.size()), 20));
        }
    };
    pump(3000 * ms, [&] {
        for (const auto& c : conns_)
            if (c.state == State::connected && c.unacked > 0) return false;
        return true;
    });
    for (auto& c : conns_) {
        if (c.m && c.state == State::connected) {
            mosquitto_disconnect_v5(c.m, 0, nullptr);
            mark(c);
        }
    }
    pump(2000 * ms, [&] { return connected_ == 0; });
    events_.write("", "exit", {{"reason", exit_reason_}});
    events_.flush();
}

nlohmann::ordered_json Fleet::summary() const {
    const auto& k = logic_->counters();
    ojson stages = ojson::object();
    for (const auto& d : devices_)
        for (const auto& [name, c] : d.components) {
            const auto key = c.job ? "in_progress" : c.last_stage.empty() ? "none" : c.last_stage;
            stages[key] = stages.value(key, 0) + 1;
        }
    ojson s{{"devices", o_.devices},
            {"ever_connected", ever_connected_},
            {"connect_ms", all_connected_us_ ? ojson((all_connected_us_ - first_connect_us_) / ms) : ojson(nullptr)},
            {"connect_rate_per_s", all_connected_us_ && all_connected_us_ > first_connect_us_
                                       ? ojson(static_cast<double>(o_.devices) * 1e6 / static_cast<double>(all_connected_us_ - first_connect_us_))
                                       : ojson(nullptr)},
            {"connect_attempts", connect_attempts_},
            {"connect_failures", connect_failures_},
            {"refused", refused_},
            {"disconnects", disconnects_},
            {"wave_messages", {{"total", k.wave_messages}, {"open", k.wave_open}, {"halted", k.wave_halted}}},
            {"devices_halted", k.devices_halted},
            {"cmds", k.cmds},
            {"stages", stages},
            {"jobs", {{"started", k.jobs_started}, {"succeeded", k.succeeded}, {"failed", k.failed}, {"rolled_back", k.rolled_back},
                      {"rejected", k.rejected}}},
            {"devices_final", k.devices_final},
            {"verifications", k.verifications},
            {"published", published_},
            {"acked", acked_},
            {"denied", denied_},
            {"dropped", dropped_}};
    if (o_.download_sample > 0)
        s["downloads"] = {{"sample", o_.download_sample}, {"started", k.downloads_started}, {"ok", k.downloads_ok}, {"failed", k.downloads_failed}};
    if (o_.flood > 0) {
        const auto end = flood_done_us_ ? flood_done_us_ : end_us_;
        const double secs = flood_started_ ? static_cast<double>(end - flood_start_us_) / 1e6 : 0;
        s["flood"] = {{"per_device", o_.flood},
                      {"messages", flood_acked_},
                      {"complete", flood_done_us_ != 0},
                      {"seconds", secs},
                      {"rate_per_s", secs > 0 ? static_cast<double>(flood_acked_) / secs : 0.0}};
    }
    s["events"] = events_.lines();
    s["run_s"] = static_cast<double>(end_us_ - start_us_) / 1e6;
    s["exit"] = exit_reason_;
    s["nofile_limit"] = nofile_limit_;
    s["max_rss_kb"] = max_rss_kb();
    s["pair_fallbacks"] = pair_fallbacks_;
    return s;
}

}  // namespace ota::fleetsim
