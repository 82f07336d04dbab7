// Sample downloads (--download-sample): real HTTPS downloads with ota::download::fetch (libcurl,
// blocking) on one worker thread, so the event loop never waits. Results come back through an
// eventfd the event loop polls.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ota/error.hpp"

namespace ota::fleetsim {

struct DownloadJob {
    std::uint32_t device{0};
    std::string component;
    std::uint32_t gen{0};
    std::string url, sha256;
    std::uint64_t size{0};
};

struct DownloadResult {
    DownloadJob job;
    Expected<void> result;
};

class Downloader {
public:
    Downloader(std::filesystem::path dir, std::string cafile);
    ~Downloader();
    Downloader(const Downloader&) = delete;
    Downloader& operator=(const Downloader&) = delete;

    void submit(DownloadJob job);
    // Readable when results are waiting.
    [[nodiscard]] int fd() const { return event_fd_; }
    [[nodiscard]] std::vector<DownloadResult> take();
    [[nodiscard]] bool idle();

private:
    void run();
    std::filesystem::path dir_;
    std::string cafile_;
    int event_fd_{-1};
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<DownloadJob> queue_;
    std::vector<DownloadResult> done_;
    int busy_{0};
    bool stop_{false};
    std::thread thread_;
};

}  // namespace ota::fleetsim
