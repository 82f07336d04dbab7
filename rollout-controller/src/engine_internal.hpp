// What the engine's parts (engine.cpp: rollouts; ingest.cpp: messages; commands.cpp: operator
// commands) share; not for use outside the engine.
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "engine.hpp"
#include "ota/crypto.hpp"
#include "ota/log.hpp"
#include "ota/time.hpp"
#include "ota/topics.hpp"

namespace ota::controller::detail {

using nlohmann::json;
using ojson = nlohmann::ordered_json;

inline const log::Logger lg("controller");


// The member state a reported stage means.
inline MemberState state_of_stage(const std::string& stage, const std::string& error_code) {
    if (stage == "succeeded") return MemberState::succeeded;
    if (stage == "failed" || stage == "rolled_back") return MemberState::failed;
    if (stage == "rejected") return error_code == "version_not_newer" ? MemberState::done : MemberState::failed;
    return MemberState::in_progress;
}

inline std::string iso(TimePoint t) { return format_utc(std::chrono::time_point_cast<std::chrono::seconds>(t)); }

inline std::string rollout_id(const std::string& fleet, const Manifest& m) {
    std::string id = fleet + "." + m.component + "." + m.version;
    if (is_valid_segment(id)) return id;
    return fleet + "." + m.component + "." + crypto::sha256_hex(m.version).substr(0, 12);
}

inline Timestamp to_ts(TimePoint t) { return std::chrono::time_point_cast<std::chrono::seconds>(t); }

}  // namespace ota::controller::detail

namespace ota::controller {

// Every change of a member goes through here: its counts leave the tally, the change is made,
// its silence is judged again, and it comes back into the tally.
template <class F>
void Engine::update_member(Rollout& r, MemberRow& m, TimePoint now, F&& change) {
    tally(r, m, false);
    std::forward<F>(change)(m);
    if (is_silent(r, m, device_timeout(r, m.wave), now)) r.silent.insert(m.device);
    else r.silent.erase(m.device);
    tally(r, m, true);
    watch_silence(r, m);
}

}  // namespace ota::controller
