#include "install/health.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <mutex>
#include <thread>

#include "install/command.hpp"
#include "ota/systemd.hpp"

namespace ota::agent {
namespace {

void curl_init_once() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::size_t discard(char*, std::size_t size, std::size_t nmemb, void*) { return size * nmemb; }

// One attempt: empty = healthy, else why not.
std::string probe_url(const HealthCheck& check) {
    curl_init_once();
    CURL* curl = curl_easy_init();
    if (curl == nullptr) return "cannot create a curl handle";
    char errbuf[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(curl, CURLOPT_URL, check.url.c_str());
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    // (0 would mean "no limit" to curl; a check always has one.)
    const long timeout_ms = std::max<long>(1, static_cast<long>(check.timeout.count()));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &discard);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "ota-agent-health");
    if (!check.cafile.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, check.cafile.c_str());
    const CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    if (rc == CURLE_OPERATION_TIMEDOUT) return "timed out after " + std::to_string(check.timeout.count()) + " ms";
    if (rc != CURLE_OK) return std::string(errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
    if (status < 200 || status > 299) return "HTTP " + std::to_string(status);
    return {};
}

std::string probe_command(const HealthCheck& check) {
    const auto r = run_command(check.command, check.env, check.timeout);
    return describe_failure(r, check.timeout);
}

}  // namespace

Expected<void> run_health_check(const HealthCheck& check) {
    if (check.command.empty() && check.url.empty()) return {};
    const bool is_command = !check.command.empty();
    const std::string what = is_command ? "health check command `" + command_line(check.command) + "`"
                                        : "health check GET " + check.url;
    if (!is_command && !check.url.starts_with("http://") && !check.url.starts_with("https://"))
        return fail(ErrorCode::health_check_failed, what + ": not an http:// or https:// URL");
    const int attempts = 1 + std::max(0, check.retries);
    std::string why;
    for (int attempt = 1; attempt <= attempts; ++attempt) {
        why = is_command ? probe_command(check) : probe_url(check);
        if (why.empty()) return {};
        if (attempt < attempts)  // the agent is waiting, not hung: the watchdog hears from it
            for (auto until = std::chrono::steady_clock::now() + check.interval; std::chrono::steady_clock::now() < until;) {
                ota::systemd::alive();
                std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
                    until - std::chrono::steady_clock::now(), std::chrono::milliseconds(100)));
            }
    }
    return fail(ErrorCode::health_check_failed,
                what + ": " + why + " (" + std::to_string(attempts) + (attempts == 1 ? " attempt)" : " attempts)"));
}

}  // namespace ota::agent
