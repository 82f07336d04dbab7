// The agent's start-up and main loop (the parts: agent_impl.hpp). Start-up connects first, so
// the device is online with its inventory before an interrupted update resumes, and reports that
// update's progress as it goes; then the agent's thread takes messages from the queue the MQTT
// client's handler fills.
#include "agent.hpp"

#include <random>
#include <thread>

#include "agent_impl.hpp"
#include "messages.hpp"
#include "ota/build_info.hpp"
#include "ota/systemd.hpp"

namespace ota::agent {

std::atomic<bool> g_stop{false};

namespace {
using namespace std::chrono_literals;
// How long start-up waits for the broker before resuming an interrupted update offline: the
// update must not wait on the network for ever (the agent keeps trying to connect afterwards).
constexpr auto kResumeConnectWait = 15s;
}  // namespace

void Agent::Impl::push(Event e) {
    {
        std::lock_guard lock(mu);
        events.push_back(std::move(e));
    }
    cv.notify_one();
}

std::optional<Event> Agent::Impl::pop(std::chrono::milliseconds wait) {
    std::unique_lock lock(mu);
    cv.wait_for(lock, wait, [&] { return !events.empty(); });
    if (events.empty()) return std::nullopt;
    auto e = std::move(events.front());
    events.pop_front();
    return e;
}

bool Agent::Impl::events_empty() {
    std::lock_guard lock(mu);
    return events.empty();
}

void Agent::Impl::handle(const Event& e) {
    if (e.kind == Event::Kind::message) dispatch(e.message);
}

Expected<void> Agent::Impl::setup() {
    std::error_code ec;
    fs::create_directories(cfg.state_dir, ec);
    if (ec) return fail(ErrorCode::io_error, "state_dir " + cfg.state_dir.string() + ": " + ec.message());
    auto s = Store::open(cfg.state_dir / "agent.db");
    if (!s) return std::unexpected(s.error());
    store = std::move(*s);
    if (auto t = trusted.load(cfg.trusted_keys); !t) return std::unexpected(t.error().with_context("trusted_keys"));
    if (!cfg.root_key.empty()) {
        auto root = crypto::PublicKey::load(cfg.root_key);
        if (!root) return std::unexpected(root.error().with_context("root_key"));
        const auto file = cfg.state_dir / "keyset.json";
        auto ks = KeysetStore::open(*root, file);
        if (!ks) {
            // Kept for a look, never silently trusted; the device falls back to its provisioned
            // root and keys and takes the retained keyset again.
            log.error("the stored keyset is unreadable; set aside, waiting for the published one",
                      {{"file", file.string()}, {"error", ks.error().describe()}});
            std::error_code rename_ec;
            fs::rename(file, cfg.state_dir / "keyset.json.damaged", rename_ec);
            ks = KeysetStore::open(*root, file);
            if (!ks) return std::unexpected(ks.error());
        }
        keysets = std::move(*ks);
        if (const auto& cur = keysets->current())
            log.info("keyset", {{"version", std::to_string(cur->keyset.version)}, {"root", keysets->root().key_id()},
                                {"keys", std::to_string(cur->keyset.keys.size())}, {"expires", format_utc(cur->keyset.expires)}});
    }
    mqtt::Options o;
    o.broker = cfg.broker;
    o.client_id = cfg.device_id;
    o.cafile = cfg.cafile;
    o.certfile = cfg.certfile;
    o.keyfile = cfg.keyfile;
    o.keepalive = cfg.keepalive;
    o.session_expiry = cfg.session_expiry;
    o.will = mqtt::Will{topics.online(cfg.device_id), R"({"online":false})", 1, true};
    client = std::make_unique<mqtt::Client>(o);
    client->on_message([this](const mqtt::Message& m) { push({Event::Kind::message, m}); });
    // At every connect, on the client's dispatch thread: online, inventory and the outbox at once,
    // whatever the agent's thread is busy with (an update can take hours).
    client->on_connection([this](bool up) {
        try {
            if (up) on_connected();
            else log.warn("connection lost; reconnecting", {{"broker", cfg.broker}});
        } catch (const std::exception& e) {
            log.error("connection handler failed", {{"error", printable(e.what())}});
        }
    });
    // Subscriptions are remembered before the first connect and made on every connect.
    (void)client->subscribe(topics.assignment(cfg.device_id), 1);
    (void)client->subscribe(topics.cmd(cfg.device_id), 1);
    if (keysets) (void)client->subscribe(topics.keyset(), 1);
    // Follow the last known wave from the start; the retained assignment may change it.
    if (auto a = store->get("assignment"); a && *a) on_assignment(**a);
    return {};
}

// Connect with capped, jittered backoff until connected, stopping, or `give_up`.
bool Agent::Impl::connect_loop(std::chrono::steady_clock::time_point give_up) {
    std::mt19937 rng{std::random_device{}()};
    auto delay = 500ms;
    for (int attempt = 0; !g_stop && std::chrono::steady_clock::now() < give_up; ++attempt) {
        auto c = client->connect();
        if (c) return true;
        last_connect_error = c.error();
        log.warn("cannot connect; retrying", {{"error", c.error().describe()}});
        systemd::status("waiting for the broker " + cfg.broker + ": " + c.error().describe());
        std::uniform_int_distribution<long> jitter(100, std::max<long>(100, delay.count()));
        const auto wait = std::chrono::milliseconds(jitter(rng));
        for (auto until = std::chrono::steady_clock::now() + wait;
             std::chrono::steady_clock::now() < until && std::chrono::steady_clock::now() < give_up && !g_stop;) {
            systemd::alive();
            std::this_thread::sleep_for(50ms);
        }
        delay = std::min<std::chrono::milliseconds>(delay * 2, 30s);
    }
    return false;
}

// A resumed session does not resend retained messages of existing subscriptions; subscribing
// again once per start asks for the current assignment and offers.
void Agent::Impl::resubscribe() {
    (void)client->subscribe(topics.assignment(cfg.device_id), 1);
    if (!wave_filter.empty()) (void)client->subscribe(wave_filter, 1);
}

// Finish or roll back what a crash interrupted; downloads resume from their partial file.
void Agent::Impl::resume_interrupted() {
    auto pending = store->journal_components();
    if (!pending) return;
    for (const auto& c : *pending) {
        if (!cfg.components.contains(c)) continue;
        log.info("resuming interrupted update", {{"component", c}});
        try {
            run_update(c);
        } catch (const std::exception& e) {
            log.error("resuming the update failed; it is tried again at the next start",
                      {{"component", c}, {"error", printable(e.what())}});
        }
        if (restart_requested) return;
    }
}

int Agent::Impl::run(const RunOptions& o) {
    opts = o;
    if (auto s = setup(); !s) {
        log.error("cannot start", {{"error", s.error().describe()}});
        return 1;
    }
    log.info("starting", {{"device", cfg.device_id}, {"version", build::version}, {"platform", cfg.platform}});
    const auto start = std::chrono::steady_clock::now();
    const auto give_up = o.once ? start + o.once_wait : std::chrono::steady_clock::time_point::max();
    // Connect first: online, inventory and the outbox go out (on_connected) before an interrupted
    // update resumes, and its progress is reported as it goes.
    const auto pending = store->journal_components();
    const bool resuming = pending && !pending->empty();
    bool connected = connect_loop(resuming ? std::min(give_up, start + kResumeConnectWait) : give_up);
    if (g_stop) return 0;
    if (connected) resubscribe();
    else if (resuming) log.warn("broker not reachable; resuming the interrupted update offline", {{"broker", cfg.broker}});
    resume_interrupted();
    if (restart_requested) return exit_restart;
    if (!connected) {
        if (!connect_loop(give_up)) {
            if (g_stop) return 0;
            log.error("could not connect within the --once wait",
                      {{"broker", cfg.broker},
                       {"error", last_connect_error ? last_connect_error->describe() : std::string("mqtt_connect_failed")}});
            return 1;
        }
        resubscribe();
    }
    auto idle_since = std::chrono::steady_clock::now();
    // Connected and subscribed: READY (Type=notify). Watchdog pings come from this loop and from
    // the long steps it runs (a download's progress, a command's wait), so a loop that stops
    // turning gets the agent killed and restarted by systemd (WatchdogSec=).
    systemd::ready(service_status());
    auto next_status = idle_since + 1s;
    while (!g_stop) {
        systemd::alive();
        auto e = pop(200ms);
        const auto now = std::chrono::steady_clock::now();
        if (now >= next_status) {
            systemd::status(service_status());
            next_status = now + 1s;
        }
        if (e) {
            handle(*e);
            idle_since = now;
        } else if (deferred_self) {
            const auto c = *deferred_self;
            deferred_self.reset();
            if (offers.contains(c)) evaluate(c, offers[c]);
        }
        if (restart_requested) break;
        inventory_tick(now);
        if (waiting_for_window && now - last_window_check > 60s) {
            last_window_check = now;
            waiting_for_window = false;
            for (const auto& [c, p] : std::map(offers)) evaluate(c, p);
        }
        if (o.once && !e && !deferred_self &&
            ((assignment_seen && now - idle_since > 1500ms) || now - start > o.once_wait))
            break;
    }
    systemd::stopping();
    flush();
    (void)client->disconnect(3s);
    return restart_requested ? exit_restart : 0;
}

Agent::Agent(AgentConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Agent::~Agent() = default;
int Agent::run(const RunOptions& options) { return impl_->run(options); }

}  // namespace ota::agent
