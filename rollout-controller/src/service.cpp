#include "ota/systemd.hpp"
#include "service.hpp"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <condition_variable>
#include <iterator>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "engine.hpp"
#include "ota/log.hpp"
#include "ota/mqtt.hpp"

namespace ota::controller {
namespace {

const log::Logger lg("controller");
constexpr std::size_t max_queue = 1'000'000;  // messages waiting for the engine; beyond: dropped and counted

// What the MQTT client's dispatch thread hands the engine thread, in the order it happened: a
// message, or the connection coming up or going down.
struct Event {
    std::optional<bool> connection;
    mqtt::Message message;
};

class Ingest {
public:
    void push(const mqtt::Message& m) {
        {
            std::lock_guard lock(mu_);
            if (queue_.size() >= max_queue) {
                ++dropped_;
                return;
            }
            queue_.push_back(Event{std::nullopt, m});
        }
        cv_.notify_one();
    }
    void connection(bool up) {
        {
            std::lock_guard lock(mu_);
            queue_.push_back(Event{up, {}});  // never dropped: it changes how silence is judged
        }
        cv_.notify_one();
    }
    // Wait up to `timeout` for events, then take all of them.
    std::deque<Event> take(std::chrono::milliseconds timeout, std::uint64_t& dropped) {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, timeout, [&] { return !queue_.empty(); });
        std::deque<Event> out;
        out.swap(queue_);
        dropped = dropped_;
        dropped_ = 0;
        return out;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Event> queue_;
    std::uint64_t dropped_{0};
};

// Publishes on a thread of its own, in order, each waiting for its acknowledgement: the engine
// thread never waits for the broker (which, under a flood of status messages, may take seconds
// to acknowledge while it delivers what it queued for the controller).
class Publisher {
public:
    explicit Publisher(mqtt::Client& client) : client_(client) {}
    ~Publisher() { stop(std::chrono::seconds(2)); }
    void start() { thread_ = std::thread([this] { run(); }); }
    void push(std::vector<Outgoing> out) {
        if (out.empty()) return;
        {
            std::lock_guard lock(mu_);
            for (auto& o : out) queue_.push_back(std::move(o));
        }
        cv_.notify_one();
    }
    // Let the queue drain for up to `grace`, then stop.
    void stop(std::chrono::milliseconds grace) {
        if (!thread_.joinable()) return;
        {
            std::unique_lock lock(mu_);
            cv_.wait_for(lock, grace, [&] { return queue_.empty() && !busy_; });
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }

private:
    void run() {
        std::unique_lock lock(mu_);
        while (!stop_) {
            if (queue_.empty()) {
                cv_.wait(lock);
                continue;
            }
            auto o = std::move(queue_.front());
            queue_.pop_front();
            busy_ = true;
            lock.unlock();
            auto r = client_.publish(o.topic, o.payload, 1, o.retain, std::chrono::seconds(30));
            if (!r) lg.warn("publish failed", {{"topic", o.topic}, {"error", r.error().describe()}});
            lock.lock();
            busy_ = false;
            cv_.notify_all();
        }
    }
    mqtt::Client& client_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Outgoing> queue_;
    bool stop_{false}, busy_{false};
    std::thread thread_;
};

struct Metrics {
    std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
    prometheus::Family<prometheus::Gauge>& rollouts =
        prometheus::BuildGauge().Name("ota_controller_rollouts").Help("Rollouts by state").Register(*registry);
    prometheus::Family<prometheus::Gauge>& devices =
        prometheus::BuildGauge().Name("ota_controller_rollout_devices").Help("Devices of live rollouts by status").Register(*registry);
    prometheus::Gauge& known =
        prometheus::BuildGauge().Name("ota_controller_devices_known").Help("Devices in the registry").Register(*registry).Add({});
    prometheus::Gauge& members = prometheus::BuildGauge()
                                     .Name("ota_controller_members_tracked")
                                     .Help("Rollout members held in memory (live rollouts, and unfinished devices of completed ones)")
                                     .Register(*registry)
                                     .Add({});
    prometheus::Family<prometheus::Counter>& messages =
        prometheus::BuildCounter().Name("ota_controller_messages_total").Help("Incoming messages by result").Register(*registry);
    prometheus::Counter& halts =
        prometheus::BuildCounter().Name("ota_controller_halts_total").Help("Waves halted").Register(*registry).Add({});
    prometheus::Counter& batches =
        prometheus::BuildCounter().Name("ota_controller_batches_total").Help("Ingest batches committed").Register(*registry).Add({});
    std::map<std::string, double> seen;  // counter values already added
    double halts_seen{0};

    void update(const Engine& e) {
        for (const auto& [state, name] : detail::rollout_names) rollouts.Add({{"state", std::string(name)}}).Set(0);
        for (const auto& [s, n] : e.rollouts_by_state()) rollouts.Add({{"state", s}}).Set(static_cast<double>(n));
        for (const auto& [s, n] : e.members_by_state()) devices.Add({{"status", s}}).Set(static_cast<double>(n));
        known.Set(static_cast<double>(e.device_count()));
        members.Set(static_cast<double>(e.member_count()));
        for (const auto& [r, n] : e.counters().by_result) {
            auto& prev = seen[r];
            messages.Add({{"result", r}}).Increment(static_cast<double>(n) - prev);
            prev = static_cast<double>(n);
        }
        halts.Increment(static_cast<double>(e.counters().halts) - halts_seen);
        halts_seen = static_cast<double>(e.counters().halts);
    }
};

// The unit's STATUS= line: what `systemctl status ota-controller` shows.
std::string service_status(const Engine& e, bool connected) {
    std::size_t live = 0;
    for (const auto& [state, n] : e.rollouts_by_state())
        if (state == "active" || state == "paused" || state == "halted") live += n;
    return std::string(connected ? "connected" : "reconnecting to the broker") + "; " + std::to_string(live) +
           " live rollouts, " + std::to_string(e.device_count()) + " devices";
}

}  // namespace

int run_service(const ControllerConfig& cfg, std::atomic<bool>& stop) {
    crypto::TrustStore trusted;
    if (auto t = trusted.load(cfg.trusted_keys); !t) {
        lg.error("cannot load trusted keys", {{"path", cfg.trusted_keys.string()}, {"error", t.error().describe()}});
        return 1;
    }
    auto store = Store::open(cfg.database);
    if (!store) {
        lg.error("cannot open the state database", {{"error", store.error().describe()}});
        return 1;
    }
    Engine engine(cfg, **store, std::move(trusted));
    Metrics metrics;
    std::unique_ptr<prometheus::Exposer> exposer;
    if (!cfg.metrics_listen.empty()) {
        try {
            exposer = std::make_unique<prometheus::Exposer>(cfg.metrics_listen);
            exposer->RegisterCollectable(metrics.registry);
            lg.info("metrics at /metrics", {{"listen", cfg.metrics_listen}});
        } catch (const std::exception& e) {
            lg.error("cannot listen for /metrics", {{"listen", cfg.metrics_listen}, {"error", e.what()}});
            return 1;
        }
    }

    Ingest ingest;
    mqtt::Options options;
    options.broker = cfg.broker;
    options.client_id = cfg.client_id;
    options.cafile = cfg.cafile;
    options.certfile = cfg.certfile;
    options.keyfile = cfg.keyfile;
    options.keepalive = cfg.keepalive;
    mqtt::Client client(options);
    client.on_message([&](const mqtt::Message& m) { ingest.push(m); });
    client.on_connection([&](bool up) {
        lg.info(up ? "connected to the broker" : "connection to the broker lost");
        ingest.connection(up);
    });

    Publisher publisher(client);
    auto step = [&](auto&& body) -> bool {
        try {
            Store::Batch batch(**store);
            body();
            if (auto c = batch.commit(); !c) {
                lg.error("cannot write the state database", {{"error", c.error().describe()}});
                return false;
            }
        } catch (const std::exception& e) {
            // SQLite failing to read or write (disk full, I/O error, a damaged file): stop rather
            // than run on state that is not what the database holds.
            lg.error("state database error; stopping", {{"error", e.what()}});
            return false;
        }
        publisher.push(engine.take_outgoing());
        return true;
    };

    if (!step([&] {
            engine.on_connection(false, Clock::now());  // no silence is judged before the first connect
            engine.load(Clock::now());
        }))
        return 1;
    // Connect with retries: the controller starts before or after the broker.
    for (int attempt = 1;; ++attempt) {
        auto c = client.connect();
        if (c) break;
        lg.warn("broker not reachable; retrying", {{"error", c.error().describe()}, {"attempt", std::to_string(attempt)}});
        systemd::status("waiting for the broker " + cfg.broker + ": " + c.error().describe());
        for (int i = 0; i < 20 && !stop; ++i) {
            systemd::alive();
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        if (stop) return 0;
    }
    publisher.start();
    const Topics topics(cfg.topic_prefix);
    // Order matters on a fresh start: devices (online, inventory) before status, then releases.
    for (const auto& filter : {topics.prefix() + "/devices/+/online", topics.prefix() + "/devices/+/inventory",
                               topics.status_filter(), topics.releases_filter(), topics.control_request_filter(),
                               topics.control_query_filter()}) {
        if (auto s = client.subscribe(filter, 1); !s) {
            lg.error("subscribe failed", {{"filter", filter}, {"error", s.error().describe()}});
            return 1;
        }
    }
    lg.info("controller running", {{"fleets", std::to_string(cfg.fleets.size())}, {"database", cfg.database.string()}});
    // Connected and subscribed: READY (Type=notify), then a one-line STATUS each second and
    // watchdog pings from this loop, so a loop that stops turning (a stuck database, a deadlock)
    // gets the process killed and restarted by systemd (WatchdogSec=).
    systemd::ready(service_status(engine, client.connected()));
    auto next_status = Clock::now() + std::chrono::seconds(1);

    auto next_tick = Clock::now();
    auto next_metrics = Clock::now();
    while (!stop) {
        systemd::alive();
        std::uint64_t dropped = 0;
        auto batch = ingest.take(cfg.tick, dropped);
        if (dropped) lg.error("ingest queue full; messages dropped", {{"dropped", std::to_string(dropped)}});
        const auto now = Clock::now();
        const bool tick = now >= next_tick;
        if (batch.empty() && !tick) continue;
        const auto apply = [&](const std::deque<Event>& events, bool with_tick) {
            return step([&] {
                for (const auto& e : events) {
                    if (e.connection) engine.on_connection(*e.connection, now);
                    else engine.on_message(e.message, now);
                }
                engine.flush(now);
                if (with_tick) engine.tick(now);
            });
        };
        // Failure reports first, in a step of their own: a halt they cause is written and handed
        // to the publisher before the rest of the batch (progress reports, mostly) is applied.
        std::deque<Event> urgent;
        if (batch.size() > 1) {
            const auto first_other = std::stable_partition(batch.begin(), batch.end(), [](const Event& e) {
                return !e.connection && is_failure_report(e.message.topic, e.message.payload);
            });
            if (first_other != batch.begin() && first_other != batch.end()) {
                urgent.assign(std::make_move_iterator(batch.begin()), std::make_move_iterator(first_other));
                batch.erase(batch.begin(), first_other);
            }
        }
        if (!urgent.empty()) {
            if (!apply(urgent, false)) return 1;
            metrics.batches.Increment();
        }
        if (!apply(batch, tick)) return 1;
        metrics.batches.Increment();
        if (tick) next_tick = now + cfg.tick;
        if (now >= next_metrics) {
            metrics.update(engine);
            next_metrics = now + std::chrono::milliseconds(100);
        }
        if (now >= next_status) {
            systemd::status(service_status(engine, client.connected()));
            next_status = now + std::chrono::seconds(1);
        }
    }
    lg.info("controller stopping");
    systemd::stopping();
    publisher.stop(std::chrono::seconds(5));
    (void)client.disconnect();
    return 0;
}

}  // namespace ota::controller
