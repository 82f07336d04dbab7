// Which download progress becomes a status report (docs/agent.md, "Status reports"). Every report
// is a retained QoS 1 message that the broker stores and the controller handles, for each device
// of a fleet: progress is worth a few of them, not a stream.
//   - the first call always (where the download starts: 0 %, or where a resume picks up);
//   - then at most one per `interval`, and only when the progress moved by `step_percent` since
//     the last report, or when nothing was reported for `quiet` (a slow download still shows
//     that it moves);
//   - never 100 % (the next stage, verifying, says the download is done).
// A download of a few seconds is then one report; a long one at most 100 / step_percent + 1.
#pragma once

#include <chrono>

namespace ota::agent {

class ProgressThrottle {
public:
    using Clock = std::chrono::steady_clock;
    ProgressThrottle(std::chrono::milliseconds interval, int step_percent)
        : interval_(interval), quiet_(interval * 12), step_(step_percent < 1 ? 1 : step_percent) {}

    [[nodiscard]] bool admit(int percent, Clock::time_point now) {
        if (percent >= 100) return false;
        if (reported_) {
            const auto since = now - last_at_;
            if (since < interval_) return false;
            if (percent < last_percent_ + step_ && !(since >= quiet_ && percent > last_percent_)) return false;
        }
        reported_ = true;
        last_percent_ = percent;
        last_at_ = now;
        return true;
    }

private:
    std::chrono::milliseconds interval_;
    std::chrono::milliseconds quiet_;
    int step_;
    bool reported_{false};  // (not a std::optional: g++ 12 warns maybe-uninitialized through it)
    int last_percent_{0};
    Clock::time_point last_at_{};
};

}  // namespace ota::agent
