// The browser tests' kit: the console's serving stack (websockify, nginx over HTTPS) and a real
// Chromium driven through playwright-core (tests/browser/driver.mjs). Used with the test kit's
// Broker (console listener), controller and simulated fleet.
#pragma once

#include "kit.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace ota::testkit {

// Debian's websockify bridging WebSockets on 127.0.0.1:port() to a TCP listener (the broker's
// console listener). restart() stops it and starts it again on the same port.
class Websockify {
public:
    explicit Websockify(int target_port);
    ~Websockify();
    Websockify(const Websockify&) = delete;
    Websockify& operator=(const Websockify&) = delete;
    [[nodiscard]] int port() const { return port_; }
    void stop();
    void start();
    void restart() { stop(); start(); }
    [[nodiscard]] std::string log() const;

private:
    TempDir dir_;
    int target_port_;
    int port_{0};
    std::unique_ptr<Process> proc_;
};

// nginx serving the built console (OTA_CONSOLE_DIST) over HTTPS with the PKI's `artifacts`
// certificate, and proxying WebSockets at /mqtt to websockify: the layout of docs/console.md.
class ConsoleServer {
public:
    ConsoleServer(const Pki& pki, int websockify_port);
    [[nodiscard]] std::string url(std::string_view path = "") const { return nginx_.url(path); }
    // base64(SHA-256(SubjectPublicKeyInfo)) of the server's certificate: the one Chromium trusts.
    [[nodiscard]] const std::string& spki() const { return spki_; }
    [[nodiscard]] std::string log() const { return nginx_.log(); }

private:
    ArtifactServer nginx_;
    std::string spki_;
};

// Chromium, headless, through tests/browser/driver.mjs. Pages are named; every call waits for
// the driver's answer (bounded). A failed step returns an error text instead of throwing, so a
// test can assert on it with a message.
class Browser {
public:
    struct Reply {
        bool ok{false};
        nlohmann::json value;
        std::string error;
    };
    explicit Browser(const std::string& trusted_spki);
    ~Browser();
    Browser(const Browser&) = delete;
    Browser& operator=(const Browser&) = delete;

    Reply call(nlohmann::json command, std::chrono::milliseconds timeout = std::chrono::seconds(30));
    Reply open(const std::string& page, const std::string& url);
    Reply click(const std::string& page, const std::string& selector);
    Reply fill(const std::string& page, const std::string& selector, const std::string& value);
    Reply check(const std::string& page, const std::string& selector);
    // Visible, and (when text_regex is not empty) its text matches: the text, or the error.
    Reply wait(const std::string& page, const std::string& selector, const std::string& text_regex = "",
               std::chrono::milliseconds timeout = std::chrono::seconds(10));
    Reply text(const std::string& page, const std::string& selector);
    [[nodiscard]] int count(const std::string& page, const std::string& selector);
    // js: a function expression, e.g. "() => document.title"; awaited when it returns a promise.
    Reply eval(const std::string& page, const std::string& js);
    Reply screenshot(const std::string& page, const fs::path& path);
    Reply reload(const std::string& page);
    Reply close(const std::string& page);
    // Page errors, console errors and dialogs seen on the page so far.
    [[nodiscard]] std::string events(const std::string& page);
    [[nodiscard]] std::string log() const;

private:
    TempDir dir_;
    int in_fd_{-1};   // commands to the driver
    int out_fd_{-1};  // its answers
    std::string buffer_;
    int next_id_{1};
    std::unique_ptr<Process> proc_;
};

// `[data-testid=<id>]`
[[nodiscard]] std::string tid(std::string_view id);

}  // namespace ota::testkit
