// The controller's logic, free of threads and sockets: messages and clock ticks in, SQLite
// writes and MQTT publishes out. The service (service.hpp) feeds it from the broker in batches
// and publishes what it returns; tests can drive it with any clock.
//
// Lifecycle of a rollout (docs/controller.md has the full state tables):
//   release verified -> rollout `active` (a newer one supersedes the active rollout of the same
//   fleet and component) -> waves in order: pending -> [waiting_approval] -> [waiting_window]
//   -> open (release published retained on the wave topic) -> soaking (success threshold met)
//   -> done -> next wave ... -> rollout `completed`.
//   Failure threshold crossed in an open or soaking wave: wave and rollout `halted`, the wave
//   message republished with state `halted`, an alert retained on alerts/<rollout>.
//   Operators: approve, pause, resume, retry, abort (control/request/<user>: the actor is <user>).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ota/crypto.hpp"
#include "ota/log.hpp"
#include "ota/manifest.hpp"
#include "ota/mqtt.hpp"
#include "ota/topics.hpp"
#include "fleet_policy.hpp"
#include "policy.hpp"
#include "store.hpp"
#include "summary.hpp"

namespace ota::controller {

struct Outgoing {
    std::string topic;
    std::string payload;
    bool retain{false};
};

// Per-wave counters. `succeeded` includes devices already at the target version (`already`);
// `silent` devices have not finished and sent nothing for the wave's device timeout: they count
// as failed for the thresholds.
struct Counts {
    std::uint64_t devices{0}, succeeded{0}, already{0}, failed{0}, silent{0}, in_progress{0}, pending{0};
    [[nodiscard]] std::uint64_t finished() const { return succeeded + failed + silent; }
    [[nodiscard]] nlohmann::ordered_json to_json() const;
};

// What happened to incoming messages, by result (for logs, /metrics and the ingest tests).
struct IngestCounters {
    std::map<std::string, std::uint64_t> by_result;  // applied duplicate out_of_order malformed oversize unknown_device other_rollout ...
    std::uint64_t halts{0};
};

// A device's status report that can halt a wave: stage failed, rolled_back or rejected (read
// without parsing the JSON; a payload it misjudges is only handled in arrival order). The service
// applies these before the rest of an ingest batch, so a failure does not wait behind thousands of
// progress reports (docs/controller.md, "Ingest").
[[nodiscard]] bool is_failure_report(std::string_view topic, std::string_view payload);

class Engine {
public:
    Engine(const ControllerConfig& config, Store& store, crypto::TrustStore trusted);

    // Rebuild from the store; queues the retained wave and rollout messages again (same content,
    // so nothing re-opens).
    void load(TimePoint now);

    // One incoming message (any topic under the prefix). Writes go to the store (the caller
    // holds a Store::Batch around a batch of calls).
    void on_message(const mqtt::Message& message, TimePoint now);

    // The broker connection came up (after subscribing: retained messages follow) or went down.
    // Silence is judged only while connected, and every unfinished device gets a fresh timeout
    // at each connect: what it sent while the controller could not read it arrives first.
    void on_connection(bool up, TimePoint now);

    // After a batch of on_message calls: evaluate the rollouts whose counts changed (once each,
    // not once per message).
    void flush(TimePoint now);

    // Time-based transitions (soak ends, silent devices, approval and windows) and the coalesced
    // rollouts/<id> updates.
    void tick(TimePoint now);

    // Publishes produced since the last call, in order.
    [[nodiscard]] std::vector<Outgoing> take_outgoing();

    [[nodiscard]] const IngestCounters& counters() const { return counters_; }
    [[nodiscard]] std::map<std::string, std::uint64_t> rollouts_by_state() const;
    [[nodiscard]] std::map<std::string, std::uint64_t> members_by_state() const;
    [[nodiscard]] std::size_t device_count() const { return devices_.size(); }
    // Rollout members held in memory: of live rollouts, and the unfinished ones of completed rollouts.
    [[nodiscard]] std::size_t member_count() const;

    // The rollout's retained state document (also the `status` reply).
    [[nodiscard]] std::optional<nlohmann::ordered_json> rollout_state(const std::string& id) const;
    // The fleet summary as it would be published now (retained on <prefix>/summary at most every
    // summary_interval while it changes).
    [[nodiscard]] nlohmann::ordered_json summary(TimePoint now) const;
    // The fleet's effective policy document (also retained on fleets/<fleet>/policy).
    [[nodiscard]] std::optional<nlohmann::ordered_json> fleet_policy(const std::string& fleet) const;

private:
    struct Rollout {
        RolloutRow row;
        Manifest manifest;
        std::map<std::string, MemberRow> members;  // change only through add_member / update_member
        std::vector<Counts> tally;                  // per wave, kept in step with members: O(1) counts
        std::set<std::string> silent;               // members counted as silent (refreshed by scan_silent)
        TimePoint next_silence{};                   // no member can go silent before this: scan_silent waits
        std::vector<WavePolicy> policies;           // per wave; empty when the fleet's config no longer fits
        bool all_at_once{false};                    // created under the all_at_once strategy: one wave `all`
        bool publish_now{false};    // state changed: publish at once
        bool counts_dirty{false};   // counts changed: publish within state_interval
        TimePoint last_publish{};
    };

    // message kinds
    void dispatch(const Topics::Parsed& parsed, const mqtt::Message& message, TimePoint now);
    void on_release(const std::string& topic, const std::string& payload, TimePoint now);
    void on_inventory(const std::string& device, const std::string& payload, bool retained, TimePoint now);
    void on_online(const std::string& device, const std::string& payload, TimePoint now);
    void on_status(const std::string& device, const std::string& component, const std::string& payload, TimePoint now);
    [[nodiscard]] std::size_t components_seen(const std::string& device) const;
    // Where a request came from: control/request/<user> may act, control/query/<user> only reads
    // (the ACL lets viewers write their query topic, never their request topic).
    enum class Access { act, read };
    // `actor`: the topic's last segment, the broker-authenticated identity.
    void on_control(const std::string& actor, const std::string& payload, TimePoint now, Access access);

    // registry
    DeviceRow& touch_device(const std::string& id, TimePoint now);
    void place_device(DeviceRow& d, TimePoint now);  // fleet, wave, assignment, rollout membership
    void join_rollouts(const DeviceRow& d, TimePoint now);
    [[nodiscard]] bool at_or_past_target(const DeviceRow& d, const Rollout& r) const;

    // rollouts
    void create_rollout(const Fleet& fleet, VerifiedRelease release, TimePoint now);
    void evaluate(Rollout& r, TimePoint now);
    [[nodiscard]] Counts counts(const Rollout& r, std::size_t wave) const;
    void set_policies(Rollout& r) const;
    [[nodiscard]] const WavePolicy* policy(const Rollout& r, std::size_t wave) const;
    void add_member(Rollout& r, MemberRow m, TimePoint now);
    template <class F> void update_member(Rollout& r, MemberRow& m, TimePoint now, F&& change);
    void tally(Rollout& r, const MemberRow& m, bool add);
    void scan_silent(Rollout& r, TimePoint now);  // devices go silent with time alone
    void watch_silence(Rollout& r, const MemberRow& m);  // m may go silent: scan by then
    void retire(Rollout& r);                      // finished: keep its counts, free its members
    [[nodiscard]] std::chrono::seconds device_timeout(const Rollout& r, std::size_t wave) const;
    [[nodiscard]] std::optional<TimePoint> quiet_since(const Rollout& r, const MemberRow& m) const;
    [[nodiscard]] bool is_silent(const Rollout& r, const MemberRow& m, std::chrono::seconds timeout, TimePoint now) const;
    [[nodiscard]] std::optional<std::string> failure_crossed(const Rollout& r, std::size_t wave, const Counts& c) const;
    void halt(Rollout& r, const std::string& reason, const Counts& c, TimePoint now);
    void end_waves(Rollout& r, WaveState wave_state);
    void publish_wave(const Rollout& r, std::size_t wave, WaveState state);
    [[nodiscard]] WaveState wave_message_state(const Rollout& r, std::size_t wave) const;
    void publish_state(Rollout& r, TimePoint now);
    void publish_summary(TimePoint now);  // when it changed and summary_interval has passed
    void save(Rollout& r, TimePoint now);
    void audit(TimePoint now, const std::string& actor, const std::string& action, const Rollout* r,
               const std::string& detail);
    [[nodiscard]] Rollout* active_rollout(const std::string& fleet, const std::string& component);
    [[nodiscard]] const Rollout* latest_rollout(const std::string& fleet, const std::string& component) const;
    [[nodiscard]] Expected<Rollout*> find_rollout(const nlohmann::json& request);

    // operator commands; each returns the reply's result or an error
    Expected<nlohmann::ordered_json> command(const std::string& cmd, const nlohmann::json& request,
                                             const std::string& actor, TimePoint now);
    Expected<nlohmann::ordered_json> devices_report(bool outdated_only) const;
    // policy_commands.cpp: policy window_set window_delete strategy_set policy_reset (nullopt: not one of them)
    std::optional<Expected<nlohmann::ordered_json>> policy_command(const std::string& cmd, const nlohmann::json& request,
                                                                   const std::string& actor, TimePoint now);
    Expected<nlohmann::ordered_json> change_policy(const std::string& fleet, std::optional<OverrideRow> put,
                                                   const std::string& erase_key, const std::string& actor,
                                                   const std::string& action, const std::string& detail, TimePoint now);
    [[nodiscard]] Fleet layout(const Fleet& file, Strategy shape) const;  // the file fleet with this fleet's overrides
    [[nodiscard]] Strategy strategy_of(const std::string& fleet) const;
    void publish_policy(const Fleet& file);
    void resume(Rollout& r, const std::string& actor, TimePoint now);

    void count(const std::string& result, std::uint64_t n = 1);
    // Bad input is logged in a bounded way: a few lines per kind and minute, then a count.
    [[nodiscard]] bool should_log(std::string_view key, TimePoint now);

    const ControllerConfig& cfg_;
    Store& store_;
    crypto::TrustStore trusted_;
    Topics topics_;
    std::map<std::string, DeviceRow> devices_;
    std::map<std::string, std::unique_ptr<Rollout>> rollouts_;
    std::map<std::pair<std::string, std::string>, std::string> active_;  // (fleet, component) -> rollout id
    std::map<std::pair<std::string, std::string>, std::int64_t> seqs_;   // (device, component) -> last seq
    std::vector<Outgoing> out_;
    std::map<std::string, FleetOverrides> overrides_;  // fleet -> operators' overrides (SQLite)
    std::set<std::string> touched_;  // rollouts with new status since the last flush
    IngestCounters counters_;
    Summary summary_;  // the fleet counts (summary.hpp)
    TimePoint last_summary_{};
    log::Limiter limiter_;
    bool connected_{true};        // the service says otherwise until it has subscribed
    TimePoint silence_from_{};    // latest (re)connect: nobody is silent for less since then
};

}  // namespace ota::controller
