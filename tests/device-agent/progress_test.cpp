// Which download progress becomes a status report (device-agent/src/progress.hpp), on a clock the
// test moves: the start always, then at most one per interval and per step, a long quiet stretch
// still shows movement, never 100 %.
#include <gtest/gtest.h>

#include "progress.hpp"

using ota::agent::ProgressThrottle;
using namespace std::chrono_literals;

namespace {
// The percentages admitted when `calls` (seconds since the start, percent) arrive in order.
std::vector<int> admitted(std::vector<std::pair<int, int>> calls, std::chrono::milliseconds interval = 5s, int step = 25) {
    ProgressThrottle t(interval, step);
    const auto t0 = ProgressThrottle::Clock::time_point{} + 1000s;
    std::vector<int> out;
    for (const auto& [s, p] : calls)
        if (t.admit(p, t0 + std::chrono::seconds(s))) out.push_back(p);
    return out;
}
}  // namespace

TEST(ProgressThrottle, AQuickDownloadIsOneReport) {
    // The download library calls every 5 % (and every 5 s); all of it within two seconds.
    std::vector<std::pair<int, int>> calls;
    for (int p = 0; p < 100; p += 5) calls.emplace_back(p / 50, p);
    EXPECT_EQ(admitted(calls), std::vector<int>{0});
}

TEST(ProgressThrottle, ALongDownloadReportsEachStepAtMostOncePerInterval) {
    // 100 s for the whole file: a call every 5 %, i.e. every 5 s.
    std::vector<std::pair<int, int>> calls;
    for (int p = 0; p < 100; p += 5) calls.emplace_back(p, p);
    calls.emplace_back(100, 100);
    EXPECT_EQ(admitted(calls), (std::vector<int>{0, 25, 50, 75})) << "never 100 %";
    // Steps faster than the interval wait for it: 0 at 0 s, then 30 % at 1 s and 60 % at 2 s are
    // held; 60 % at 5 s goes.
    EXPECT_EQ(admitted({{0, 0}, {1, 30}, {2, 60}, {5, 60}, {6, 90}}), (std::vector<int>{0, 60}));
}

TEST(ProgressThrottle, ASlowDownloadStillShowsItMovesAfterTwelveIntervals) {
    // 1 % a minute: below the step, but 60 s without a report while it moves gives one.
    std::vector<std::pair<int, int>> calls;
    for (int m = 0; m <= 5; ++m) calls.emplace_back(m * 60, m);
    EXPECT_EQ(admitted(calls), (std::vector<int>{0, 1, 2, 3, 4, 5}));
    // Stalled (no movement): nothing more.
    EXPECT_EQ(admitted({{0, 10}, {60, 10}, {120, 10}, {180, 10}}), std::vector<int>{10});
}

TEST(ProgressThrottle, AResumedDownloadStartsWhereItIs) {
    EXPECT_EQ(admitted({{0, 40}, {3, 45}, {10, 70}}), (std::vector<int>{40, 70}));
    EXPECT_EQ(admitted({{0, 100}}), std::vector<int>{}) << "a complete file is not progress";
}
