// The controller's durable state in SQLite (WAL, synchronous=NORMAL, numbered migrations).
// The engine keeps a full copy in memory and writes through to here; the service wraps each
// batch of messages in one transaction (Store::Batch), so ingest costs one commit per batch and
// never a blocking write per message.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ota/error.hpp"
#include "states.hpp"

namespace SQLite {
class Database;
class Statement;
class Transaction;
}  // namespace SQLite

namespace ota::controller {

using Clock = std::chrono::system_clock;
using TimePoint = Clock::time_point;

// Milliseconds since the epoch, as stored.
[[nodiscard]] std::int64_t to_ms(TimePoint t);
[[nodiscard]] TimePoint from_ms(std::int64_t ms);

struct DeviceRow {
    std::string id;
    std::string fleet;  // empty: matches no fleet
    std::string wave;
    std::string platform;
    std::string agent_version;
    nlohmann::json labels = nlohmann::json::object();
    nlohmann::json components = nlohmann::json::object();  // component -> version or null
    bool online{false};
    bool has_inventory{false};
    std::string assigned;  // the assignment payload last published
    TimePoint first_seen{}, last_seen{};
};

struct WaveRow {
    std::string name;
    WaveState state{WaveState::pending};
    bool approved{false};
    std::optional<TimePoint> opened_at, soak_until, done_at;
    std::uint64_t base_failed{0}, base_finished{0};  // failures accepted by a resume
};

struct RolloutRow {
    std::string id, fleet, component, version, scheme, channel;
    std::string envelope;  // the signed release, forwarded unchanged
    RolloutState state{RolloutState::active};
    std::size_t wave{0};   // index of the current wave
    std::string reason;    // why it halted / ended
    TimePoint created{}, updated{};
    std::vector<WaveRow> waves;
};

struct MemberRow {
    std::string rollout, device;
    std::size_t wave{0};
    MemberState state{MemberState::pending};
    std::string stage;  // the last reported stage
    int progress{0};
    std::string error;  // error code of a failure
    TimePoint updated{};
};

struct AuditRow {
    std::int64_t id{0};
    TimePoint ts{};
    std::string actor, action, rollout, detail;
};

// An operator's change to a fleet's policy, kept over the config file (fleet_policy.hpp).
// key: "strategy" ({"strategy": ..., "approval": [...]}) or "window/<wave>" (a window, or null: none).
struct OverrideRow {
    std::string fleet, key;
    nlohmann::json value;
    std::string actor;
    TimePoint ts{};
};

class Store {
public:
    // Open (creating) the database and apply pending migrations.
    [[nodiscard]] static Expected<std::unique_ptr<Store>> open(const std::filesystem::path& path);
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    [[nodiscard]] int schema_version() const;

    // One transaction around many writes; commit() or roll back when destroyed.
    class Batch {
    public:
        explicit Batch(Store& store);
        ~Batch();
        Batch(const Batch&) = delete;
        Batch& operator=(const Batch&) = delete;
        [[nodiscard]] Expected<void> commit();

    private:
        std::unique_ptr<SQLite::Transaction> tx_;
    };

    // Writes (inside a Batch for speed; each is also valid alone).
    void put_device(const DeviceRow& d);
    void put_rollout(const RolloutRow& r);  // with its waves
    void put_member(const MemberRow& m);
    void put_seq(const std::string& device, const std::string& component, std::int64_t seq);
    void audit(TimePoint ts, const std::string& actor, const std::string& action, const std::string& rollout,
               const std::string& detail);
    void count(const std::string& name, std::int64_t delta);  // durable counters (ingest results)
    void put_override(const OverrideRow& o);
    void delete_override(const std::string& fleet, const std::string& key);  // "" key: every override of the fleet

    // Reads (at start-up and for operator queries).
    [[nodiscard]] std::vector<DeviceRow> devices();
    [[nodiscard]] std::vector<RolloutRow> rollouts();
    [[nodiscard]] std::vector<MemberRow> members(const std::optional<std::string>& rollout = std::nullopt);
    [[nodiscard]] std::optional<MemberRow> member(const std::string& rollout, const std::string& device);
    [[nodiscard]] std::map<std::pair<std::string, std::string>, std::int64_t> seqs();
    [[nodiscard]] std::vector<AuditRow> audit_log(const std::string& rollout, std::size_t limit);
    [[nodiscard]] std::map<std::string, std::int64_t> counters();
    [[nodiscard]] std::vector<OverrideRow> overrides();

private:
    Store() = default;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace ota::controller
