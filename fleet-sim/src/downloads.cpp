#include "downloads.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "ota/download.hpp"

namespace ota::fleetsim {

Downloader::Downloader(std::filesystem::path dir, std::string cafile)
    : dir_(std::move(dir)), cafile_(std::move(cafile)), event_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (event_fd_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
    thread_ = std::thread([this] { run(); });
}

Downloader::~Downloader() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
        queue_.clear();
    }
    cv_.notify_all();
    thread_.join();
    ::close(event_fd_);
}

void Downloader::submit(DownloadJob job) {
    {
        std::lock_guard lock(mu_);
        queue_.push_back(std::move(job));
    }
    cv_.notify_one();
}

std::vector<DownloadResult> Downloader::take() {
    std::uint64_t n = 0;
    [[maybe_unused]] const auto r = ::read(event_fd_, &n, sizeof n);
    std::lock_guard lock(mu_);
    std::vector<DownloadResult> out;
    out.swap(done_);
    return out;
}

bool Downloader::idle() {
    std::lock_guard lock(mu_);
    return queue_.empty() && busy_ == 0;
}

void Downloader::run() {
    std::unique_lock lock(mu_);
    for (;;) {
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        auto job = std::move(queue_.front());
        queue_.pop_front();
        ++busy_;
        lock.unlock();
        download::Request r;
        r.url = job.url;
        r.dest = dir_ / (std::to_string(job.device) + "-" + job.component);
        r.expected_size = job.size;
        r.expected_sha256 = job.sha256;
        r.cafile = cafile_;
        r.max_attempts = 3;
        r.backoff_min = std::chrono::milliseconds(200);
        r.backoff_max = std::chrono::milliseconds(2000);
        r.deadline = std::chrono::seconds(300);
        r.cancelled = [this] {
            std::lock_guard l(mu_);
            return stop_;
        };
        auto fetched = download::fetch(r);
        std::error_code ec;
        std::filesystem::remove(r.dest, ec);  // only the check matters: size and SHA-256
        download::discard_partial(r.dest);
        lock.lock();
        --busy_;
        done_.push_back({std::move(job), fetched ? Expected<void>{} : Expected<void>{std::unexpected(fetched.error())}});
        const std::uint64_t one = 1;
        [[maybe_unused]] const auto w = ::write(event_fd_, &one, sizeof one);
    }
}

}  // namespace ota::fleetsim
