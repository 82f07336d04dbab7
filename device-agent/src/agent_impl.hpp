// The agent's parts (private to the agent core; agent.hpp is the interface):
//   agent.cpp     start-up (connect first, then resume), the event queue and the main loop;
//   presence.cpp  connection handling: online, inventory and the outbox at every connect, run on
//                 the MQTT client's dispatch thread so it never waits behind an update;
//   offers.cpp    message handling: assignment, wave offers, commands, behind one guard each;
//   update.cpp    running an update through its journal (journal.hpp: the transition table).
// Threads: the agent's own thread runs messages and updates; the MQTT dispatch thread runs
// on_connected(). What both use is locked: the outbox flush (flush_mu), the inventory state
// (presence_mu), Store and Inventory (their own locks).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "agent.hpp"
#include "install/installer.hpp"
#include "inventory.hpp"
#include "journal.hpp"
#include "ota/crypto.hpp"
#include "ota/keyset.hpp"
#include "ota/log.hpp"
#include "ota/manifest.hpp"
#include "ota/mqtt.hpp"
#include "ota/topics.hpp"
#include "store.hpp"

namespace ota::agent {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct Event {
    enum class Kind { message };
    Kind kind;
    mqtt::Message message;
};

struct Agent::Impl {
    AgentConfig cfg;
    Topics topics;
    log::Logger log{"agent"};
    std::unique_ptr<Store> store;
    crypto::TrustStore trusted;           // the provisioned release keys (trusted_keys)
    std::optional<KeysetStore> keysets;   // with root_key: the newest keyset accepted
    std::set<std::string> awaiting_keys;  // components whose offer was refused for its key: judged again on a new keyset
    Inventory inventory;
    std::unique_ptr<mqtt::Client> client;
    RunOptions opts;

    std::mutex mu;
    std::condition_variable cv;
    std::deque<Event> events;

    // The agent's thread only.
    std::string wave_filter;                      // current wave subscription
    std::map<std::string, std::string> offers;    // component -> last wave message payload
    std::map<std::string, std::string> statuses;  // component -> last status payload sent
    std::optional<std::string> deferred_self;     // component of a self-update offer, applied last
    bool restart_requested{false};
    bool assignment_seen{false};
    bool waiting_for_window{false};  // an offer waits for the update window: re-check each minute
    std::chrono::steady_clock::time_point last_window_check{};
    log::Limiter input_log;          // bounded logging of bad input and dropped messages
    std::uint64_t dropped{0};        // messages a handler could not handle (exceptions)
    std::optional<Error> last_connect_error;  // why the broker could not be reached (logged with its code)

    // Shared with the dispatch thread.
    std::mutex flush_mu;
    std::set<std::int64_t> sent_unremoved;  // outbox ids sent but not removable (flush_mu)
    std::mutex presence_mu;
    std::chrono::steady_clock::time_point last_inventory{};
    std::chrono::steady_clock::time_point last_inventory_check{};
    std::string published_versions;
    std::string last_stage;  // "<component> <stage> <version>[ <progress>%]" of the last report, for STATUS=
    std::uint64_t connects{0};
    // Versions installed in this run that the state database could not record (a full disk):
    // what recorded_version() says until a start records them.
    std::map<std::string, std::string> unrecorded_installed;

    explicit Impl(AgentConfig c) : cfg(std::move(c)), topics(cfg.topic_prefix), inventory(cfg) {}

    // agent.cpp
    void push(Event e);
    std::optional<Event> pop(std::chrono::milliseconds wait);
    bool events_empty();
    void handle(const Event& e);
    Expected<void> setup();
    bool connect_loop(std::chrono::steady_clock::time_point give_up);
    void resubscribe();
    void resume_interrupted();
    int run(const RunOptions& o);

    // presence.cpp
    void on_connected();
    std::string status_payload(const std::string& component, const std::string& version, const std::string& rollout,
                               Reported stage, std::optional<int> progress, const std::optional<Error>& error);
    void report(const std::string& component, const std::string& version, const std::string& rollout, Reported stage,
                std::optional<int> progress = std::nullopt, const std::optional<Error>& error = std::nullopt);
    void flush();
    // The unit's STATUS= line (connection, installed versions, the last stage reported); cheap.
    [[nodiscard]] std::string service_status();
    void note_stage(const std::string& component, const std::string& version, Reported stage, std::optional<int> progress,
                    const std::optional<Error>& error);
    void send_direct(const std::string& component, const std::string& payload);
    nlohmann::ordered_json installed_versions();
    void publish_inventory();
    void inventory_tick(std::chrono::steady_clock::time_point now);
    std::optional<std::string> recorded_version(const std::string& component);
    void remember_unrecorded(const std::string& component, const std::string& version);
    void forget_unrecorded(const std::string& component);

    // offers.cpp
    void dispatch(const mqtt::Message& message);
    void note_bad_input(std::string_view kind, const Error& error);
    void reject(const std::string& component, const std::string& version, const std::string& rollout,
                const std::string& payload, const Error& error);
    void on_wave(const std::string& component, const std::string& payload);
    void evaluate(const std::string& component, const std::string& payload, bool forced = false);
    void start_update(const std::string& component, const std::string& rollout, const std::string& envelope);
    void on_assignment(const std::string& payload);
    void on_cmd(const std::string& payload);
    void on_keyset(const std::string& payload);
    // The release keys to verify an offer with now: the keyset's once one is accepted (an expired
    // keyset is keyset_expired: no new install), else the provisioned ones.
    Expected<crypto::TrustStore> release_keys() const;
    // To resume a journalled update: every key that could have been trusted when it was accepted.
    crypto::TrustStore journal_keys() const;
    void operator_rollback(const std::string& component);

    // update.cpp
    void run_update(const std::string& component);
    void to_rollback(json& j, Reported final_stage, const Error& error);
    void advance(json& j, Stage next);
    fs::path staging_dir(const std::string& component) const;
    fs::path staged_artifact(const std::string& component, const Manifest& m) const;
    Manifest install_manifest(Manifest m) const;
    bool step_once(const std::string& component, const Manifest& m0, const std::string& rollout, Stage stage, json& j);
    bool download_step(const std::string& component, const Manifest& m, const std::string& rollout, json& j,
                       const fs::path& artifact);
    void keep_for_operator_rollback(const std::string& component, const json& j);
    void finish_rollback(const std::string& component, const Manifest& m0, const std::string& rollout, const json& j);
    fs::path guard_file() const;
    Expected<void> write_self_update_guard(const std::string& bin, bool had_previous);
    void clear_self_update_guard();
    void cleanup_staging(const std::string& component);
};

}  // namespace ota::agent
