// What a simulated device does, free of sockets and clocks: the agent's protocol (docs/agent.md)
// reduced to its messages. The event loop (fleet.hpp) feeds it connections, messages, timers and
// download results; it answers through the Io interface (publish, subscribe, schedule a timer,
// start a download, record an event), so unit tests can drive it with a recording Io.
//
// An offered release (an `open` wave message, or cmd `install`) is checked like the agent does:
// signature and manifest (ota::open_envelope against --trusted-keys), the component is one this
// device has, platform, min_agent_version, already handled, then the version against the
// installed one (same: nothing; older: `rejected`/version_not_newer unless a signed rollback).
// An accepted offer runs as a job: downloading (progress 0..100), verifying, installing,
// health_checking, then succeeded (and a new inventory), or failed / rolled_back with an error
// code; a silent device reports downloading and then nothing. Each status carries the device's
// next seq. A rejection is reported once per distinct offer; a release is handled once (cmd
// `retry` forgets that, as it does on the agent).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "ota/crypto.hpp"
#include "ota/manifest.hpp"
#include "ota/topics.hpp"
#include "options.hpp"

namespace ota::fleetsim {

enum class Outcome { succeed, fail, silent };

struct Step {
    std::string stage;
    std::optional<int> progress;
    std::optional<Error> error;
};

struct Job {
    std::string rollout, version, url, sha256;
    std::uint64_t size{0};
    std::vector<Step> steps;
    std::size_t next{0};       // index of the next step to report
    std::uint32_t gen{0};      // timers of an older job are ignored
    std::chrono::milliseconds step_delay{0};
    bool download{false};      // a sample device: steps wait for the real download
    bool finished{false};
};

struct ComponentState {
    std::optional<std::string> installed;  // nullopt: unknown (null in the inventory)
    std::string offer;                     // the last wave message for it (re-checked on retry)
    std::set<std::string> handled;         // "<version> <sha256>" of releases taken on once
    std::string rejected;                  // digest of the last offer rejected (reported once)
    std::optional<Job> job;                // in progress
    std::string last_stage, last_rollout;  // the last status reported
};

struct Device {
    std::string id;
    std::uint32_t index{0};
    std::map<std::string, std::string> labels;
    std::map<std::string, ComponentState> components;
    std::int64_t seq{0};
    std::string fleet, wave, wave_filter;
    std::uint32_t gen{0};
    bool silent{false};
    bool halted_seen{false};
    bool final_seen{false};  // reached a final stage at least once
};

class Io {
public:
    virtual ~Io() = default;
    virtual void publish(Device& d, const std::string& topic, const std::string& payload, bool retain) = 0;
    virtual void subscribe(Device& d, const std::string& filter) = 0;
    virtual void unsubscribe(Device& d, const std::string& filter) = 0;
    // Call Logic::on_timer(d, component, gen) after `delay`.
    virtual void schedule(Device& d, std::chrono::milliseconds delay, const std::string& component, std::uint32_t gen) = 0;
    // Download the job's artifact and call Logic::on_download_done later.
    virtual void start_download(Device& d, const std::string& component, const Job& job) = 0;
    virtual void event(const Device& d, std::string_view name, const nlohmann::json& fields) = 0;
};

struct LogicCounters {
    std::uint64_t wave_messages{0}, wave_open{0}, wave_halted{0}, cmds{0};
    std::uint64_t verifications{0}, jobs_started{0}, rejected{0}, succeeded{0}, failed{0}, rolled_back{0};
    std::uint64_t downloads_started{0}, downloads_ok{0}, downloads_failed{0};
    std::uint64_t devices_final{0}, devices_halted{0};
};

class Logic {
public:
    Logic(const SimOptions& options, crypto::TrustStore trusted, Io& io);

    [[nodiscard]] Device make_device(int index) const;
    void on_connected(Device& d);
    void on_message(Device& d, const std::string& topic, const std::string& payload);
    void on_timer(Device& d, const std::string& component, std::uint32_t gen);
    void on_download_done(Device& d, const std::string& component, std::uint32_t gen, const Expected<void>& result);

    // Flood mode: the payload of status message `i` (0-based) of `n` (a valid status with the
    // device's next seq, stage downloading, progress i*100/n, for --flood-rollout).
    [[nodiscard]] std::string flood_status(Device& d, std::uint64_t i, std::uint64_t n);

    // The stable choices (the same for the same --seed, device and rollout).
    [[nodiscard]] Outcome outcome(const Device& d, const std::string& rollout, const std::string& version) const;
    [[nodiscard]] std::vector<Step> plan(Outcome outcome) const;

    [[nodiscard]] const LogicCounters& counters() const { return counters_; }
    [[nodiscard]] const Topics& topics() const { return topics_; }
    [[nodiscard]] std::string online_payload() const;
    [[nodiscard]] std::string inventory_payload(const Device& d) const;

private:
    void on_assignment(Device& d, const std::string& payload);
    void on_wave(Device& d, const std::string& fleet, const std::string& wave, const std::string& component,
                 const std::string& payload);
    void on_cmd(Device& d, const std::string& payload);
    // Decide about an offer; `payload` identifies it for the once-only rejection report.
    void evaluate(Device& d, const std::string& component, const std::string& rollout, const nlohmann::json& release,
                  const std::string& payload);
    void reject(Device& d, const std::string& component, const std::string& version, const std::string& rollout,
                const std::string& payload, const Error& error);
    void start(Device& d, const std::string& component, const std::string& rollout, const Manifest& m);
    void step(Device& d, const std::string& component);
    void finish(Device& d, const std::string& component, const Step& final_step);
    void report(Device& d, const std::string& component, const std::string& version, const std::string& rollout,
                const Step& step);
    [[nodiscard]] Expected<VerifiedRelease> verify(const std::string& envelope);
    [[nodiscard]] double unit(const std::string& a, const std::string& b, std::string_view salt) const;

    const SimOptions& o_;
    crypto::TrustStore trusted_;
    Io& io_;
    Topics topics_;
    std::unordered_map<std::string, Expected<VerifiedRelease>> verified_;  // envelope text -> result
    int downloads_left_{0};
    std::int64_t seq_base_{0};
    LogicCounters counters_;
};

// The ts field: now, as RFC 3339 UTC (cached per second).
[[nodiscard]] const std::string& now_ts();
// Is this code reported as `failed` (before the switch) rather than `rolled_back`?
[[nodiscard]] bool fails_before_switch(std::string_view code);
[[nodiscard]] bool is_final_stage(std::string_view stage);

}  // namespace ota::fleetsim
