// ota::mqtt::Client over paho-mqtt-cpp (async_client, MQTT 5). paho appears only in this file and
// in mqtt/diagnose.* (failures explained in one line).
//
// Threads (besides paho's own two):
// - dispatch: pops events (message, connection up/down) from a queue and calls the
//   application's handlers, in order. paho's callbacks only push into that queue.
// - reconnect: after a lost connection, waits a capped exponential backoff with full jitter,
//   reconnects, renews the remembered subscriptions, then queues "connected". It never waits
//   on the dispatch thread, so handlers may publish/subscribe (and block on the ack) freely.
//
// Behaviour observed with paho C 1.3.12 / paho C++ 1.2.0 / Mosquitto 2.0.11 (and relied on):
// - Every failure to establish the connection (refused TCP connection, wrong CA, client
//   certificate rejected by the broker, unreadable key file, plain MQTT to a TLS port) is
//   reported by paho as rc -1 with "TCP/TLS connect failure" or "TCP connect completion
//   failure"; a handshake that gets no answer as "TCP connect timeout". The OpenSSL reason is
//   only available through ssl_options' error handler, which is unusable in paho C++ 1.2.0
//   (see the constructor). So connect() checks the key files itself, and after a failure opens
//   a plain TCP connection to the broker: refused / unreachable / unresolvable are reported as
//   such; if TCP works, the failure was in the TLS (or MQTT) handshake.
// - A CONNACK refusal carries an MQTT 5 reason code (e.g. 0x87 Not authorized), reported by name.
// - An ACL-denied QoS 1 publish over MQTT 5: Mosquitto 2.0.11 answers with PUBACK reason code
//   0x87 (Not authorized), logging "Denied PUBLISH"; paho completes the token with that code
//   (mosquitto_pub -V 5 -d shows "received PUBACK (Mid: 1, RC:135)"). publish() reports it as
//   mqtt_publish_failed. Over MQTT 3.1.1 the same publish is acknowledged as a success.
// - A SUBSCRIBE to a filter the ACL does not let the client read is granted by Mosquitto
//   2.0.11 (SUBACK with the requested QoS); messages are filtered at delivery instead. So a
//   successful subscribe() does not prove read access.
// - When the broker sends a v5 DISCONNECT (e.g. session taken over), paho calls the
//   "disconnected" handler and not "connection lost"; both are treated as a lost connection.
#include "ota/mqtt.hpp"

#include "mqtt/diagnose.hpp"

#include <mqtt/async_client.h>
#include <openssl/crypto.h>


#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <variant>

namespace ota::mqtt {

namespace paho = ::mqtt;
using namespace detail;

// paho C's network threads are detached: nothing joins them, and they may still be running
// (and about to free their OpenSSL thread state) when main() returns. OpenSSL registers
// OPENSSL_cleanup() with atexit() on its first use, and that cleanup frees the locks and keys
// those threads' destructors use: ota-ctl crashed so once under ASan (SEGV in libcrypto, from
// __nptl_deallocate_tsd on a paho thread). OpenSSL documents the race
// (openssl/openssl#6214) and OPENSSL_INIT_NO_ATEXIT as the way out; it only works if it is
// the process's first OpenSSL call, so it runs before main(), in every program that links
// this file. The memory is the kernel's to take back at exit.
namespace {
[[gnu::constructor(101)]] void keep_openssl_until_the_process_is_gone() {
    OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, nullptr);
}
}  // namespace
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// How often a waiting reconnect attempt checks whether disconnect()/the destructor wants it
// to stop; bounds how long they wait for an attempt in progress.
constexpr auto poll_slice = 50ms;

struct ConnEvent {
    bool up;
};
using Event = std::variant<Message, ConnEvent>;

}  // namespace

struct Client::Impl {
    explicit Impl(Options o);
    ~Impl();

    // paho callbacks (paho's threads): record and return, nothing else.
    void on_paho_message(const paho::const_message_ptr& msg);
    void on_paho_lost();

    Expected<void> connect();
    Expected<void> disconnect(std::chrono::milliseconds timeout);
    Expected<void> subscribe(const std::string& filter, int qos, std::chrono::milliseconds timeout);
    Expected<void> unsubscribe(const std::string& filter, std::chrono::milliseconds timeout);
    Expected<void> publish(const std::string& topic, const std::string& payload, int qos, bool retain,
                           std::chrono::milliseconds timeout);
    Expected<void> publish_async(const std::string& topic, const std::string& payload, int qos,
                                 bool retain);

    // One connect attempt; waits in slices and gives up early when `abandon` turns true.
    // On success returns whether the broker had a session for us.
    Expected<bool> connect_once(const std::function<bool()>& abandon);
    Error connect_error(const paho::exception& e);
    void resubscribe(bool session_present);
    void push(Event ev);  // requires mu held
    std::chrono::milliseconds backoff(unsigned attempt);
    void dispatch_loop();
    // Wait for a token up to `timeout`, in slices, giving up early once the client is closing
    // (so a handler blocked in publish() cannot hold up the destructor). Throws like paho.
    bool wait_token(const paho::token_ptr& token, std::chrono::milliseconds timeout);
    void reconnect_loop();

    Options opts;
    std::string where;  // "mqtts://127.0.0.1:8883 as device-001"
    std::optional<Error> init_error;
    paho::connect_options conn_opts;
    std::unique_ptr<paho::async_client> cli;

    std::mutex op_mu;  // serialises connect()/disconnect() calls

    std::mutex mu;  // everything below
    std::condition_variable dispatch_cv;
    std::condition_variable reconnect_cv;
    std::deque<Event> events;
    std::shared_ptr<const MessageHandler> message_handler;
    std::shared_ptr<const ConnectionHandler> connection_handler;
    std::vector<std::pair<std::string, int>> subscriptions;  // remembered filters, in order
    bool stopping{false};
    bool auto_reconnect{false};  // between a successful connect() and disconnect()
    bool reconnect_pending{false};
    bool attempt_running{false};
    bool announced{false};   // the last state queued for the connection handler was "up"
    std::uint64_t lost_seq{0};
    std::atomic<bool> closing{false};  // the destructor has started: stop waiting for acks
    bool leave_to_exit{false};          // leave_network_threads_to_exit(): do not destroy the paho client
    Clock::time_point up_since{};
    unsigned attempts{0};
    std::mt19937_64 rng{std::random_device{}()};

    std::thread dispatcher;
    std::thread reconnector;
};

Client::Impl::Impl(Options o) : opts(std::move(o)) {
    where = opts.broker + " as " + (opts.client_id.empty() ? std::string("(no client id)") : opts.client_id);
    if (opts.reconnect_min <= 0ms) opts.reconnect_min = 1ms;
    if (opts.reconnect_max < opts.reconnect_min) opts.reconnect_max = opts.reconnect_min;
    if (opts.max_buffered < 1) opts.max_buffered = 1;

    const bool tls = is_tls_uri(opts.broker);
    if (!tls && !opts.broker.starts_with("tcp://") && !opts.broker.starts_with("mqtt://")) {
        init_error = Error{ErrorCode::mqtt_connect_failed,
                           "cannot connect to " + where +
                               ": unsupported broker URL (use mqtts://host:port, or tcp://host:port without TLS)"};
    } else {
        try {
            paho::create_options create(MQTTVERSION_5);
            create.set_max_buffered_messages(opts.max_buffered);
            create.set_send_while_disconnected(true, false);  // buffer while reconnecting only
            // No persistence argument: paho C keeps in-flight messages in memory
            // (MQTTCLIENT_PERSISTENCE_NONE) and writes no files.
            cli = std::make_unique<paho::async_client>(opts.broker, opts.client_id, create);
            cli->set_message_callback([this](paho::const_message_ptr m) { on_paho_message(m); });
            cli->set_connection_lost_handler([this](const std::string&) { on_paho_lost(); });
            cli->set_disconnected_handler([this](const paho::properties&, paho::ReasonCode) { on_paho_lost(); });
        } catch (const paho::exception& e) {
            init_error = Error{ErrorCode::mqtt_connect_failed, "cannot connect to " + where + ": " + paho_text(e)};
        } catch (const std::exception& e) {
            init_error = Error{ErrorCode::mqtt_connect_failed, "cannot connect to " + where + ": " + e.what()};
        }

        conn_opts.set_mqtt_version(MQTTVERSION_5);  // before clean_start: paho ignores it otherwise
        conn_opts.set_clean_start(opts.session_expiry.count() == 0);
        conn_opts.set_keep_alive_interval(opts.keepalive);
        conn_opts.set_connect_timeout(std::max<std::chrono::seconds>(opts.connect_timeout, 1s));
        conn_opts.set_automatic_reconnect(false);  // we reconnect ourselves (backoff + jitter)
        if (opts.session_expiry.count() > 0) {
            paho::properties props;
            props.add(paho::property(paho::property::SESSION_EXPIRY_INTERVAL,
                                     static_cast<std::int32_t>(std::min<std::int64_t>(
                                         opts.session_expiry.count(), 0x7FFFFFFF))));
            conn_opts.set_properties(props);
        }
        // A user name + password login (the broker's plain-TCP console and simulation listeners).
        if (!opts.username.empty()) conn_opts.set_user_name(opts.username);
        if (!opts.password.empty()) conn_opts.set_password(opts.password);
        if (opts.will) {
            conn_opts.set_will(paho::will_options(opts.will->topic, opts.will->payload, opts.will->qos,
                                                  opts.will->retain));
        }
        if (tls) {
            // No ssl_options::set_error_handler(): paho C++ 1.2.0 hands paho C a pointer to the
            // copy of the options that async_client::connect() takes by value, so the handler
            // runs on a destroyed object (AddressSanitizer: stack-use-after-scope; heap
            // corruption in practice). Without it paho reports every TLS failure as
            // "TCP/TLS connect failure", and connect_error() says what it honestly can.
            paho::ssl_options ssl;
            if (!opts.cafile.empty()) ssl.set_trust_store(opts.cafile);
            if (!opts.certfile.empty()) ssl.set_key_store(opts.certfile);
            if (!opts.keyfile.empty()) ssl.set_private_key(opts.keyfile);
            ssl.set_enable_server_cert_auth(true);
            ssl.set_verify(true);  // also check the broker's host name / IP against its certificate
            conn_opts.set_ssl(ssl);
        }
    }

    dispatcher = std::thread([this] { dispatch_loop(); });
    reconnector = std::thread([this] { reconnect_loop(); });
}

Client::Impl::~Impl() {
    // No handler runs once the destructor has begun (beyond one already running, which we wait
    // for): the objects the handlers use are typically being destroyed too. Queued events are
    // dropped.
    closing = true;
    {
        std::lock_guard lock(mu);
        stopping = true;
        auto_reconnect = false;
    }
    dispatch_cv.notify_all();
    reconnect_cv.notify_all();
    if (dispatcher.joinable()) dispatcher.join();
    if (reconnector.joinable()) reconnector.join();
    try {
        (void)disconnect(2s);  // a clean DISCONNECT: the broker discards the will
    } catch (...) {  // nothing may escape a destructor
    }
    try {
        if (cli) cli->disable_callbacks();
        if (leave_to_exit) {
            // Never destroyed: the process ends. Kept reachable (not a leak to LeakSanitizer).
            static auto* parked = new std::vector<std::unique_ptr<paho::async_client>>();
            parked->push_back(std::move(cli));
        } else {
            cli.reset();
        }
    } catch (...) {
    }
}

void Client::Impl::push(Event ev) {
    events.push_back(std::move(ev));
    dispatch_cv.notify_one();
}

void Client::Impl::on_paho_message(const paho::const_message_ptr& m) {
    if (!m) return;
    Message msg{m->get_topic(), m->get_payload_str(), m->get_qos(), m->is_retained()};
    std::lock_guard lock(mu);
    push(std::move(msg));
}

void Client::Impl::on_paho_lost() {
    std::lock_guard lock(mu);
    ++lost_seq;
    if (announced) {
        announced = false;
        push(ConnEvent{false});
        // A connection that held for reconnect_max is "stable": start the backoff afresh.
        // One that dropped sooner (e.g. the broker kicks us right away) keeps backing off.
        if (Clock::now() - up_since >= opts.reconnect_max) attempts = 0;
    }
    if (auto_reconnect) {
        reconnect_pending = true;
        reconnect_cv.notify_all();
    }
}

std::chrono::milliseconds Client::Impl::backoff(unsigned attempt) {
    // Full jitter: uniform in [0, min(max, min * 2^attempt)], with a small floor so that a
    // dead broker is not hammered.
    auto cap = opts.reconnect_min;
    for (unsigned i = 0; i < attempt && cap < opts.reconnect_max; ++i) cap *= 2;
    cap = std::min(cap, opts.reconnect_max);
    std::uniform_int_distribution<std::int64_t> dist(0, cap.count());
    auto floor = std::min<std::chrono::milliseconds>(opts.reconnect_min, 50ms);
    return std::max(floor, std::chrono::milliseconds(dist(rng)));
}

Error Client::Impl::connect_error(const paho::exception& e) {
    std::string prefix = "cannot connect to " + where + ": ";
    int reason = static_cast<int>(e.get_reason_code());
    // A CONNACK refusal of a user name + password login comes as paho's return code (135 for 0x87).
    if (reason < 0x80 && e.get_return_code() >= 0x80 && e.get_return_code() <= 0xFF) reason = e.get_return_code();
    if (reason >= 0x80) {
        std::string hint;
        switch (reason) {
            case 0x85: hint = " (client id not accepted)"; break;
            case 0x86: hint = " (bad user name or password)"; break;
            case 0x87:
                hint = opts.username.empty() || is_tls_uri(opts.broker)
                           ? " (check the client certificate's identity and the broker's ACL)"
                           : " (check the user name and password)";
                break;
            case 0x8A: hint = " (this client is banned)"; break;
            case 0x84: hint = " (the broker does not speak MQTT 5)"; break;
            default: break;
        }
        return Error{ErrorCode::mqtt_connect_failed, prefix + "the broker refused the connection: " +
                                                         reason_text(reason) + hint};
    }
    if (e.get_return_code() == MQTTASYNC_FAILURE) {
        std::string tcp = probe_tcp(opts.broker);
        if (!tcp.empty()) return Error{ErrorCode::mqtt_connect_failed, prefix + tcp};
        if (e.get_message().find("timeout") != std::string::npos) {
            return Error{ErrorCode::mqtt_connect_failed,
                         prefix + "the broker accepted the TCP connection but did not complete the " +
                             (is_tls_uri(opts.broker) ? "TLS/MQTT" : "MQTT") + " handshake within " +
                             std::to_string(opts.connect_timeout.count()) + "s (connect_timeout) [" +
                             paho_text(e) + "]"};
        }
        if (is_tls_uri(opts.broker)) {
            // Either side may have refused the handshake: we did not trust the broker's
            // certificate (cafile, or a host name/IP not in it), or the broker did not trust ours.
            return Error{ErrorCode::mqtt_connect_failed,
                         prefix + "TLS handshake failed (check the CA file and client certificate: cafile must "
                                  "hold the CA that signed the broker's certificate for this host, and the broker "
                                  "must trust the client certificate) [" + paho_text(e) + "]"};
        }
        return Error{ErrorCode::mqtt_connect_failed,
                     prefix + "the broker accepted the TCP connection and then closed it "
                              "(if the port is a TLS listener, use mqtts://) [" + paho_text(e) + "]"};
    }
    if (e.get_return_code() == MQTTASYNC_BAD_MQTT_OPTION || e.get_return_code() == MQTTASYNC_BAD_STRUCTURE) {
        return Error{ErrorCode::mqtt_connect_failed, prefix + "invalid connection options [" + paho_text(e) + "]"};
    }
    return Error{ErrorCode::mqtt_connect_failed, prefix + paho_text(e)};
}

Expected<bool> Client::Impl::connect_once(const std::function<bool()>& abandon) {
    try {
        auto token = cli->connect(conn_opts);
        // paho gives up after connect_timeout; allow it a moment to say so itself.
        const auto deadline = Clock::now() + opts.connect_timeout + 2s;
        while (!token->wait_for(poll_slice)) {
            if (abandon()) {
                return fail(ErrorCode::mqtt_connect_failed, "cannot connect to " + where + ": abandoned");
            }
            if (Clock::now() >= deadline) {
                return fail(ErrorCode::mqtt_connect_failed, "cannot connect to " + where + ": no answer within " +
                                                    std::to_string(opts.connect_timeout.count()) +
                                                    "s (connect_timeout)");
            }
        }
        return token->get_connect_response().is_session_present();
    } catch (const paho::exception& e) {
        return std::unexpected(connect_error(e));
    } catch (const std::exception& e) {
        return fail(ErrorCode::mqtt_connect_failed, "cannot connect to " + where + ": " + e.what());
    }
}

void Client::Impl::resubscribe(bool session_present) {
    std::vector<std::pair<std::string, int>> subs;
    {
        std::lock_guard lock(mu);
        subs = subscriptions;
    }
    if (subs.empty()) return;
    // With the session present the broker still has our subscriptions: renewing them is
    // idempotent, and "send retained only for a new subscription" avoids getting every retained
    // message again. Without a session, retained messages are how we catch up.
    const paho::subscribe_options sub_opts(false, false,
                                           session_present ? paho::subscribe_options::SEND_RETAINED_ON_NEW
                                                           : paho::subscribe_options::SEND_RETAINED_ON_SUBSCRIBE);
    std::vector<paho::token_ptr> tokens;
    for (const auto& [filter, qos] : subs) {
        try {
            tokens.push_back(cli->subscribe(filter, qos, sub_opts));
        } catch (const std::exception&) {
            // Lost again already: the lost-connection path schedules the next attempt.
            return;
        }
    }
    const auto deadline = Clock::now() + std::chrono::seconds(std::max<std::int64_t>(opts.connect_timeout.count(), 1));
    for (auto& t : tokens) {
        try {
            (void)wait_token(t, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
        } catch (const std::exception&) {
            // A refused filter stays refused; a lost connection leads to another attempt.
        }
    }
}

void Client::Impl::reconnect_loop() {
    std::unique_lock lock(mu);
    for (;;) {
        reconnect_cv.wait(lock, [this] { return stopping || (auto_reconnect && reconnect_pending); });
        if (stopping) return;
        auto delay = backoff(attempts);
        if (attempts < 64) ++attempts;
        if (reconnect_cv.wait_for(lock, delay, [this] { return stopping || !auto_reconnect; })) continue;
        reconnect_pending = false;
        attempt_running = true;
        const std::uint64_t seq = lost_seq;
        lock.unlock();

        bool ok = false;
        if (cli->is_connected()) {
            ok = true;  // a late duplicate "lost" signal; nothing to do but renew and announce
            resubscribe(true);
        } else {
            auto r = connect_once([this] {
                std::lock_guard l(mu);
                return stopping || !auto_reconnect;
            });
            if (r) {
                resubscribe(*r);
                ok = true;
            }
        }

        lock.lock();
        attempt_running = false;
        reconnect_cv.notify_all();
        if (ok) {
            if (lost_seq == seq && auto_reconnect && !announced) {
                announced = true;
                up_since = Clock::now();
                push(ConnEvent{true});
            }
        } else if (auto_reconnect) {
            reconnect_pending = true;
        }
    }
}

bool Client::Impl::wait_token(const paho::token_ptr& token, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (token->wait_for(std::clamp<std::chrono::milliseconds>(left, 0ms, poll_slice))) return true;
        if (closing || Clock::now() >= deadline) return false;
    }
}

void Client::Impl::dispatch_loop() {
    std::unique_lock lock(mu);
    for (;;) {
        dispatch_cv.wait(lock, [this] { return stopping || !events.empty(); });
        if (stopping) return;
        Event ev = std::move(events.front());
        events.pop_front();
        auto on_msg = message_handler;
        auto on_conn = connection_handler;
        lock.unlock();
        run_handler(where, [&] {
            if (auto* m = std::get_if<Message>(&ev)) {
                if (on_msg && *on_msg) (*on_msg)(*m);
            } else if (on_conn && *on_conn) {
                (*on_conn)(std::get<ConnEvent>(ev).up);
            }
        });
        lock.lock();
    }
}

Expected<void> Client::Impl::connect() {
    if (init_error) return std::unexpected(*init_error);
    std::lock_guard op(op_mu);
    {
        std::lock_guard lock(mu);
        if (auto_reconnect) {
            if (cli->is_connected()) return {};
            return fail(ErrorCode::mqtt_connect_failed,
                        "cannot connect to " + where + ": the connection was lost and is being re-established");
        }
    }
    // Name an unreadable key file directly rather than as a failed handshake.
    if (is_tls_uri(opts.broker)) {
        if (const auto problem = tls_files_problem(opts.cafile, opts.certfile, opts.keyfile); !problem.empty())
            return fail(ErrorCode::mqtt_connect_failed, "cannot connect to " + where + ": " + problem);
    }
    std::uint64_t seq = 0;
    {
        std::lock_guard lock(mu);
        seq = lost_seq;
    }
    auto r = connect_once([this] {
        std::lock_guard l(mu);
        return stopping;
    });
    if (!r) return std::unexpected(r.error());
    resubscribe(*r);
    std::lock_guard lock(mu);
    auto_reconnect = true;
    attempts = 0;
    if (lost_seq != seq) {
        reconnect_pending = true;  // lost again before we got here
        reconnect_cv.notify_all();
    } else if (!announced) {
        announced = true;
        up_since = Clock::now();
        push(ConnEvent{true});
    }
    return {};
}

Expected<void> Client::Impl::disconnect(std::chrono::milliseconds timeout) {
    if (!cli) return {};
    std::lock_guard op(op_mu);
    {
        std::unique_lock lock(mu);
        auto_reconnect = false;
        reconnect_pending = false;
        reconnect_cv.notify_all();
        // An attempt in progress notices within poll_slice (its connect token wait is sliced).
        reconnect_cv.wait_for(lock, std::max<std::chrono::milliseconds>(timeout, 1s),
                              [this] { return !attempt_running; });
    }
    Expected<void> result;
    const bool was_connected = cli->is_connected();
    try {
        // Also when not connected: cancels a connect that an abandoned attempt left in progress.
        auto token = cli->disconnect(timeout);
        if (!token->wait_for(was_connected ? timeout + 1s : std::chrono::milliseconds(500)) && was_connected) {
            result = fail(ErrorCode::timeout,
                          "disconnecting from " + where + ": no completion within " + ms_text(timeout));
        }
    } catch (const paho::exception& e) {
        if (was_connected && e.get_return_code() != MQTTASYNC_DISCONNECTED) {
            result = fail(ErrorCode::mqtt_connect_failed, "disconnecting from " + where + ": " + operation_cause(e));
        }
    } catch (const std::exception& e) {
        if (was_connected) {
            result = fail(ErrorCode::mqtt_connect_failed, "disconnecting from " + where + ": " + e.what());
        }
    }
    std::lock_guard lock(mu);
    if (announced) {
        announced = false;
        push(ConnEvent{false});
    }
    return result;
}

Expected<void> Client::Impl::subscribe(const std::string& filter, int qos, std::chrono::milliseconds timeout) {
    const std::string what = "subscribing to '" + filter + "' on " + where;
    if (init_error) return fail(ErrorCode::mqtt_subscribe_failed, what + ": " + init_error->message);
    if (qos < 0 || qos > 2) return fail(ErrorCode::mqtt_subscribe_failed, what + ": QoS must be 0, 1 or 2");
    {
        std::lock_guard lock(mu);
        auto it = std::find_if(subscriptions.begin(), subscriptions.end(),
                               [&](const auto& s) { return s.first == filter; });
        if (it != subscriptions.end()) {
            it->second = qos;
        } else {
            subscriptions.emplace_back(filter, qos);
        }
    }
    auto forget = [&] {
        std::lock_guard lock(mu);
        std::erase_if(subscriptions, [&](const auto& s) { return s.first == filter; });
    };
    try {
        if (!cli->is_connected()) {
            return fail(ErrorCode::mqtt_subscribe_failed,
                        what + ": not connected (the filter is remembered and subscribed when the connection "
                               "is established)");
        }
        auto token = cli->subscribe(filter, qos);
        if (!wait_token(token, timeout)) {
            return fail(ErrorCode::timeout, what + ": no SUBACK within " + ms_text(timeout) +
                                                " (the filter is remembered and renewed on reconnect)");
        }
        const paho::subscribe_response response = token->get_subscribe_response();
        for (auto rc : response.get_reason_codes()) {
            if (static_cast<int>(rc) >= 0x80) {
                forget();
                return fail(ErrorCode::mqtt_subscribe_failed, what + ": the broker answered " +
                                                                  reason_text(static_cast<int>(rc)));
            }
        }
        return {};
    } catch (const paho::exception& e) {
        if (static_cast<int>(e.get_reason_code()) >= 0x80) forget();
        return fail(ErrorCode::mqtt_subscribe_failed, what + ": " + operation_cause(e));
    } catch (const std::exception& e) {
        forget();
        return fail(ErrorCode::mqtt_subscribe_failed, what + ": " + e.what());
    }
}

Expected<void> Client::Impl::unsubscribe(const std::string& filter, std::chrono::milliseconds timeout) {
    const std::string what = "unsubscribing from '" + filter + "' on " + where;
    {
        std::lock_guard lock(mu);
        std::erase_if(subscriptions, [&](const auto& s) { return s.first == filter; });
    }
    if (init_error) return fail(ErrorCode::mqtt_subscribe_failed, what + ": " + init_error->message);
    try {
        // Offline, forgetting the filter is enough: a clean reconnect will not renew it, and a
        // resumed session is cleaned up by the next unsubscribe call.
        if (!cli->is_connected()) return {};
        auto token = cli->unsubscribe(filter);
        if (!wait_token(token, timeout))
            return fail(ErrorCode::timeout, what + ": no UNSUBACK within " + ms_text(timeout));
        return {};
    } catch (const paho::exception& e) {
        return fail(ErrorCode::mqtt_subscribe_failed, what + ": " + operation_cause(e));
    } catch (const std::exception& e) {
        return fail(ErrorCode::mqtt_subscribe_failed, what + ": " + e.what());
    }
}

Expected<void> Client::Impl::publish(const std::string& topic, const std::string& payload, int qos, bool retain,
                                     std::chrono::milliseconds timeout) {
    const std::string what = "publishing to '" + topic + "' on " + where;
    if (init_error) return fail(ErrorCode::mqtt_publish_failed, what + ": " + init_error->message);
    if (qos < 0 || qos > 2) return fail(ErrorCode::mqtt_publish_failed, what + ": QoS must be 0, 1 or 2");
    try {
        auto token = cli->publish(paho::make_message(topic, payload, qos, retain));
        if (!wait_token(token, timeout)) {
            return fail(ErrorCode::timeout,
                        what + ": no acknowledgement within " + ms_text(timeout) +
                            (cli->is_connected() ? "" : " (not connected; the message stays buffered and may still be sent)"));
        }
        if (int rc = static_cast<int>(token->get_reason_code()); rc >= 0x80) {
            return fail(ErrorCode::mqtt_publish_failed, what + ": the broker answered " + reason_text(rc));
        }
        return {};
    } catch (const paho::exception& e) {
        return fail(ErrorCode::mqtt_publish_failed, what + ": " + operation_cause(e));
    } catch (const std::exception& e) {
        return fail(ErrorCode::mqtt_publish_failed, what + ": " + e.what());
    }
}

Expected<void> Client::Impl::publish_async(const std::string& topic, const std::string& payload, int qos,
                                           bool retain) {
    const std::string what = "publishing to '" + topic + "' on " + where;
    if (init_error) return fail(ErrorCode::mqtt_publish_failed, what + ": " + init_error->message);
    if (qos < 0 || qos > 2) return fail(ErrorCode::mqtt_publish_failed, what + ": QoS must be 0, 1 or 2");
    try {
        (void)cli->publish(paho::make_message(topic, payload, qos, retain));
        return {};
    } catch (const paho::exception& e) {
        return fail(ErrorCode::mqtt_publish_failed, what + ": " + operation_cause(e));
    } catch (const std::exception& e) {
        return fail(ErrorCode::mqtt_publish_failed, what + ": " + e.what());
    }
}

// ---- Client ----------------------------------------------------------------------------------

Client::Client(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Client::~Client() = default;

void Client::on_message(MessageHandler handler) {
    std::lock_guard lock(impl_->mu);
    impl_->message_handler = std::make_shared<const MessageHandler>(std::move(handler));
}

void Client::on_connection(ConnectionHandler handler) {
    std::lock_guard lock(impl_->mu);
    impl_->connection_handler = std::make_shared<const ConnectionHandler>(std::move(handler));
}

Expected<void> Client::connect() { return impl_->connect(); }

Expected<void> Client::disconnect(std::chrono::milliseconds timeout) { return impl_->disconnect(timeout); }

void Client::leave_network_threads_to_exit() { impl_->leave_to_exit = true; }

bool Client::connected() const {
    try {
        return impl_->cli && impl_->cli->is_connected();
    } catch (...) {
        return false;
    }
}

Expected<void> Client::subscribe(const std::string& filter, int qos, std::chrono::milliseconds timeout) {
    return impl_->subscribe(filter, qos, timeout);
}

Expected<void> Client::unsubscribe(const std::string& filter, std::chrono::milliseconds timeout) {
    return impl_->unsubscribe(filter, timeout);
}

Expected<void> Client::publish(const std::string& topic, const std::string& payload, int qos, bool retain,
                               std::chrono::milliseconds timeout) {
    return impl_->publish(topic, payload, qos, retain, timeout);
}

Expected<void> Client::publish_async(const std::string& topic, const std::string& payload, int qos, bool retain) {
    return impl_->publish_async(topic, payload, qos, retain);
}

}  // namespace ota::mqtt
