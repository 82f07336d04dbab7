#include "journal.hpp"

#include <array>

namespace ota::agent {
namespace {

using R = Reported;
using S = Stage;

// Before the switch (activate) a failure leaves the old version untouched: failed. After it the
// old version is put back: rolled_back. A failing activate is failed (its switch is atomic).
constexpr std::array<Transition, 8> kTable{{
    {S::downloading, R::downloading, S::verifying, std::nullopt, R::failed, R::failed, false},
    {S::verifying, R::verifying, S::preparing, std::nullopt, R::failed, R::failed, false},
    {S::preparing, R::installing, S::activating, std::nullopt, R::failed, R::failed, false},
    {S::activating, std::nullopt, S::health_checking, S::self_restarting, R::failed, R::rolled_back, false},
    {S::self_restarting, std::nullopt, S::health_checking, std::nullopt, R::rolled_back, R::rolled_back, true},
    {S::health_checking, R::health_checking, S::committing, std::nullopt, R::rolled_back, R::rolled_back, true},
    {S::committing, std::nullopt, std::nullopt, std::nullopt, R::rolled_back, R::rolled_back, true},
    {S::rolling_back, std::nullopt, std::nullopt, std::nullopt, R::failed, R::failed, true},
}};

constexpr std::array<std::string_view, 8> kStageNames{"downloading",     "verifying",       "preparing",  "activating",
                                                      "self_restarting", "health_checking", "committing", "rolling_back"};
constexpr std::array<std::string_view, 8> kReportedNames{"downloading", "verifying", "installing",  "health_checking",
                                                         "succeeded",   "failed",    "rolled_back", "rejected"};

}  // namespace

std::string_view to_string(Stage stage) { return kStageNames[static_cast<std::size_t>(stage)]; }
std::string_view to_string(Reported stage) { return kReportedNames[static_cast<std::size_t>(stage)]; }

std::optional<Stage> parse_stage(std::string_view name) {
    for (std::size_t i = 0; i < kStageNames.size(); ++i)
        if (kStageNames[i] == name) return static_cast<Stage>(i);
    return std::nullopt;
}
std::optional<Reported> parse_reported(std::string_view name) {
    for (std::size_t i = 0; i < kReportedNames.size(); ++i)
        if (kReportedNames[i] == name) return static_cast<Reported>(i);
    return std::nullopt;
}

const Transition& transition(Stage stage) { return kTable[static_cast<std::size_t>(stage)]; }

}  // namespace ota::agent
