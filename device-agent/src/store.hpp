// The agent's durable state in one SQLite database (WAL, synchronous=FULL, numbered migrations):
//   journal   the in-flight update of each component, written before each step runs
//   outbox    status reports not yet acknowledged by the broker, in order
//   applied   releases handled (component, version, sha256) so a release is applied once
//   kv        small values: the status sequence reservation, installed versions
// SQLiteCpp appears only in store.cpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ota/error.hpp"

namespace ota::agent {

struct OutboxItem {
    std::int64_t id{0};
    std::string topic;
    std::string payload;
    bool retain{true};
};

class Store {
public:
    [[nodiscard]] static Expected<std::unique_ptr<Store>> open(const std::filesystem::path& file);
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    [[nodiscard]] Expected<std::optional<nlohmann::json>> journal(const std::string& component);
    [[nodiscard]] Expected<std::vector<std::string>> journal_components();
    [[nodiscard]] Expected<void> put_journal(const std::string& component, const nlohmann::json& entry);
    [[nodiscard]] Expected<void> clear_journal(const std::string& component);

    // The next status sequence number: strictly increasing, also across restarts. Numbers are
    // handed out from memory and reserved on disk a block at a time (kv "seq" holds the highest
    // number that may have been handed out; a start continues above it), so a report costs no
    // write of its own and a disk that cannot take the reservation still gets increasing numbers
    // (`unreserved` then says why they may repeat after a crash).
    struct Seq {
        std::uint64_t value{0};
        std::optional<Error> unreserved;
    };
    static constexpr std::uint64_t seq_block = 1000;
    [[nodiscard]] Seq next_seq();
    [[nodiscard]] Expected<std::int64_t> enqueue(const std::string& topic, const std::string& payload, bool retain);
    [[nodiscard]] Expected<std::vector<OutboxItem>> pending(int limit = 100);
    [[nodiscard]] Expected<void> remove(std::int64_t id);

    [[nodiscard]] Expected<bool> applied(const std::string& component, const std::string& version, const std::string& sha256);
    [[nodiscard]] Expected<void> mark_applied(const std::string& component, const std::string& version,
                                              const std::string& sha256, const std::string& result);

    // The end of an update, in one transaction, so that a crash leaves either the journal (and
    // the step is redone) or the final report queued and the journal gone, never both or neither:
    // queue the final status, record the release as applied with `result`, set
    // "installed/<component>" when `installed_version` is given, and clear the journal.
    [[nodiscard]] Expected<void> complete(const std::string& component, const OutboxItem& final_report,
                                          const std::string& version, const std::string& sha256,
                                          const std::string& result, const std::optional<std::string>& installed_version);
    // Forget that a component's releases were handled (operator "retry").
    [[nodiscard]] Expected<void> forget_applied(const std::string& component);

    [[nodiscard]] Expected<std::optional<std::string>> get(const std::string& key);
    [[nodiscard]] Expected<void> put(const std::string& key, const std::string& value);

private:
    struct Impl;
    explicit Store(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace ota::agent
