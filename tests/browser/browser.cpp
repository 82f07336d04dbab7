// The browser tests' kit (browser.hpp).
#include "browser.hpp"

#include "kit_internal.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace ota::testkit {

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error("browser kit: " + what); }

std::string tail_of(const std::string& text, std::size_t max = 3000) {
    return text.size() <= max ? text : text.substr(text.size() - max);
}

}  // namespace

std::string tid(std::string_view id) { return "[data-testid=\"" + std::string(id) + "\"]"; }

// --- websockify ----------------------------------------------------------------------------------

Websockify::Websockify(int target_port) : dir_("ota-websockify"), target_port_(target_port) {
    port_ = free_port();
    start();
}

Websockify::~Websockify() { stop(); }

void Websockify::start() {
    if (proc_) return;
    proc_ = std::make_unique<Process>(
        std::vector<std::string>{"websockify", "127.0.0.1:" + std::to_string(port_), "127.0.0.1:" + std::to_string(target_port_)},
        dir_ / "websockify.log");
    if (!wait_until([&] { return proc_->running() && detail::port_accepts(port_); }, 10s, 50ms))
        fail("websockify did not listen on 127.0.0.1:" + std::to_string(port_) + " within 10 s:\n" + tail_of(log()));
}

void Websockify::stop() {
    if (!proc_) return;
    proc_->stop(3s);
    proc_.reset();
}

std::string Websockify::log() const {
    try {
        return read_file(dir_ / "websockify.log");
    } catch (const std::exception&) {
        return {};
    }
}

// --- nginx serving the console -------------------------------------------------------------------

namespace {
// The console's server block comes from scripts/render-nginx-config --console-proxy, as the demo's.
ArtifactServer::Options console_nginx(int websockify_port) {
    ArtifactServer::Options o;
    o.console_proxy = websockify_port;
    return o;
}
}  // namespace

ConsoleServer::ConsoleServer(const Pki& pki, int websockify_port) : nginx_(pki, console_nginx(websockify_port)) {
    const fs::path dist = OTA_CONSOLE_DIST;
    if (!fs::exists(dist / "index.html"))
        fail(dist.string() + "/index.html is missing: build the console (scripts/test does: npm ci, npm run build)");
    fs::copy(dist, nginx_.root(), fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    auto r = run({"sh", "-c",
                  "openssl x509 -in '" + pki.cert("artifacts").string() +
                      "' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64"},
                 10s);
    if (r.exit_code != 0) fail("cannot hash the console server's public key: " + r.err);
    spki_ = r.out.substr(0, r.out.find_last_not_of("\r\n") + 1);
}

// --- the browser ---------------------------------------------------------------------------------

Browser::Browser(const std::string& trusted_spki) : dir_("ota-browser") {
    const auto in = dir_ / "in";
    const auto out = dir_ / "out";
    if (::mkfifo(in.c_str(), 0600) != 0 || ::mkfifo(out.c_str(), 0600) != 0)
        fail(std::string("mkfifo: ") + std::strerror(errno));
    // O_RDWR on a FIFO (Linux) opens without waiting for the other end.
    in_fd_ = ::open(in.c_str(), O_RDWR | O_CLOEXEC);
    out_fd_ = ::open(out.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (in_fd_ < 0 || out_fd_ < 0) fail(std::string("open fifo: ") + std::strerror(errno));
    proc_ = std::make_unique<Process>(std::vector<std::string>{"node", OTA_BROWSER_DRIVER}, dir_ / "driver.log",
                                      std::map<std::string, std::string>{{"OTA_CONSOLE_DIR", OTA_CONSOLE_DIR},
                                                                         {"OTA_CHROMIUM", "/usr/bin/chromium"},
                                                                         {"OTA_BROWSER_SPKI", trusted_spki},
                                                                         {"OTA_DRIVER_IN", in.string()},
                                                                         {"OTA_DRIVER_OUT", out.string()}});
}

Browser::~Browser() {
    if (in_fd_ >= 0) ::close(in_fd_);  // end of commands: the driver closes Chromium and exits
    if (proc_) {
        wait_until([&] { return !proc_->running(); }, 5s, 50ms);
        proc_->stop(2s);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
}

std::string Browser::log() const {
    try {
        return read_file(dir_ / "driver.log");
    } catch (const std::exception&) {
        return {};
    }
}

Browser::Reply Browser::call(nlohmann::json command, std::chrono::milliseconds timeout) {
    const int id = next_id_++;
    command["id"] = id;
    const std::string line = command.dump() + "\n";
    if (::write(in_fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        return {false, {}, std::string("cannot write to the driver: ") + std::strerror(errno)};
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        for (auto nl = buffer_.find('\n'); nl != std::string::npos; nl = buffer_.find('\n')) {
            const std::string answer = buffer_.substr(0, nl);
            buffer_.erase(0, nl + 1);
            auto j = nlohmann::json::parse(answer, nullptr, false);
            if (j.is_discarded() || !j.is_object()) continue;
            if (j.value("id", -1) != id) continue;  // the answer to an earlier command that timed out
            Reply r;
            r.ok = j.value("ok", false);
            if (j.contains("value")) r.value = j["value"];
            r.error = j.value("error", "");
            return r;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || !proc_->running())
            return {false, {}, (proc_->running() ? "no answer from the driver in time to " : "the driver exited; ") +
                                   command.value("op", std::string()) + "\n" + tail_of(log())};
        pollfd p{out_fd_, POLLIN, 0};
        ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 200)));
        char buf[65536];
        const auto n = ::read(out_fd_, buf, sizeof buf);
        if (n > 0) buffer_.append(buf, static_cast<std::size_t>(n));
    }
}

Browser::Reply Browser::open(const std::string& page, const std::string& url) {
    return call({{"op", "open"}, {"page", page}, {"url", url}});
}
Browser::Reply Browser::click(const std::string& page, const std::string& selector) {
    return call({{"op", "click"}, {"page", page}, {"selector", selector}});
}
Browser::Reply Browser::fill(const std::string& page, const std::string& selector, const std::string& value) {
    return call({{"op", "fill"}, {"page", page}, {"selector", selector}, {"value", value}});
}
Browser::Reply Browser::check(const std::string& page, const std::string& selector) {
    return call({{"op", "check"}, {"page", page}, {"selector", selector}});
}
Browser::Reply Browser::wait(const std::string& page, const std::string& selector, const std::string& text_regex,
                             std::chrono::milliseconds timeout) {
    return call({{"op", "wait"}, {"page", page}, {"selector", selector}, {"text", text_regex}, {"timeout_ms", timeout.count()}},
                timeout + 10s);
}
Browser::Reply Browser::text(const std::string& page, const std::string& selector) {
    return call({{"op", "text"}, {"page", page}, {"selector", selector}});
}
int Browser::count(const std::string& page, const std::string& selector) {
    auto r = call({{"op", "count"}, {"page", page}, {"selector", selector}});
    return r.ok && r.value.is_number_integer() ? r.value.get<int>() : -1;
}
Browser::Reply Browser::eval(const std::string& page, const std::string& js) {
    return call({{"op", "eval"}, {"page", page}, {"js", js}});
}
Browser::Reply Browser::screenshot(const std::string& page, const fs::path& path) {
    return call({{"op", "screenshot"}, {"page", page}, {"path", path.string()}});
}
Browser::Reply Browser::reload(const std::string& page) { return call({{"op", "reload"}, {"page", page}}); }
Browser::Reply Browser::close(const std::string& page) { return call({{"op", "close"}, {"page", page}}); }
std::string Browser::events(const std::string& page) {
    auto r = call({{"op", "dialogs"}, {"page", page}});
    return r.ok ? r.value.dump() : r.error;
}

}  // namespace ota::testkit
