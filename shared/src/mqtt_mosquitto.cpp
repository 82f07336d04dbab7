// ota::mqtt::Client over libmosquitto (MQTT 5): the same contract as shared/src/mqtt.cpp (paho),
// (the state in mqtt/mosquitto_impl.hpp, the callbacks and threads in mqtt/mosquitto_loop.cpp),
// for the programs whose cost per message matters (ota-controller: one connection that receives
// every device's status) or whose start-up does (ota-publish). A program links one of the two
// (ota::mqtt or ota::mqtt_mosquitto), never both.
//
// Threads:
// - network: the only thread that runs libmosquitto's loop (mosquitto_loop: select on the socket
//   and on the library's wake-up pipe, read, write, keepalive). libmosquitto's callbacks run on it
//   and only record state or queue events; it connects, and after a lost connection waits a
//   capped exponential backoff with full jitter and reconnects. Other threads' publishes and
//   subscribes are queued by the library (threaded mode) and written by this thread, woken
//   through the library's pipe: TLS is never driven from two threads.
// - dispatch: calls the application's handlers in arrival order, a batch of events at a time.
//   Handlers may publish/subscribe and wait for the acknowledgement: the network thread never
//   waits for the dispatch thread.
//
// Behaviour of libmosquitto 2.0.11 relied on (read in its source, and held by mqtt_client_test,
// which runs against both clients):
// - mosquitto_connect_bind_async() takes no MQTT 5 properties, but every (re)connect sends
//   mosq->connect_properties, which mosquitto_connect_bind_v5() stores before it validates the
//   host: calling it with port -1 stores the session expiry interval and fails with
//   MOSQ_ERR_INVAL, without a connection attempt.
// - A QoS 1 publish while disconnected is queued and sent after the reconnect (also across a
//   reconnect: message__reconnect_reset), though mosquitto_publish_v5() then returns
//   MOSQ_ERR_NO_CONN; mosquitto__reconnect closes a socket still open.
// - An incoming QoS 1 message is acknowledged after the message callback returns, which only
//   queues it: the broker's flow control follows the network thread, not the handlers.
// - mosquitto_loop uses select(): the socket and the pipe must be below FD_SETSIZE (1024); the
//   programs that use this client open few descriptors.
#include "mqtt/mosquitto_impl.hpp"

#include <algorithm>

namespace ota::mqtt {

using namespace detail;
using namespace mosquitto_detail;
using namespace std::chrono_literals;

namespace {

void init_library_once() {
    static std::once_flag once;
    // Never cleaned up: the process's exit does it, after every client's threads are joined.
    std::call_once(once, [] { mosquitto_lib_init(); });
}

}  // namespace

namespace mosquitto_detail {

std::string reason_text(int code) {
    const char* name = mosquitto_reason_string(code);
    return std::string(name != nullptr && *name != '\0' ? name : "reason code") + " (" + hex_code(code) + ")";
}

}  // namespace mosquitto_detail

Client::Impl::Impl(Options o) : opts(std::move(o)) {
    where = opts.broker + " as " + (opts.client_id.empty() ? std::string("(no client id)") : opts.client_id);
    if (opts.reconnect_min <= 0ms) opts.reconnect_min = 1ms;
    if (opts.reconnect_max < opts.reconnect_min) opts.reconnect_max = opts.reconnect_min;
    if (opts.max_buffered < 1) opts.max_buffered = 1;
    const bool tls = is_tls_uri(opts.broker);
    std::string port_text;
    if (!tls && !opts.broker.starts_with("tcp://") && !opts.broker.starts_with("mqtt://")) {
        init_error = Error{ErrorCode::mqtt_connect_failed,
                           "cannot connect to " + where +
                               ": unsupported broker URL (use mqtts://host:port, or tcp://host:port without TLS)"};
    } else if (!split_uri(opts.broker, host, port_text) || port_text.empty() ||
               port_text.find_first_not_of("0123456789") != std::string::npos || port_text.size() > 5 ||
               std::stoi(port_text) > 65535) {
        init_error = Error{ErrorCode::mqtt_connect_failed, "cannot connect to " + where + ": the broker URL has no valid host:port"};
    }
    if (init_error) return;
    port = std::stoi(port_text);
    init_library_once();
    const bool persistent = opts.session_expiry.count() > 0;
    m = mosquitto_new(opts.client_id.empty() ? nullptr : opts.client_id.c_str(), !persistent, this);
    if (m == nullptr) {
        init_error = Error{ErrorCode::mqtt_connect_failed, "cannot connect to " + where + ": cannot create the client" +
                                                               (persistent && opts.client_id.empty() ? " (a persistent session needs a client id)" : "")};
        return;
    }
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(m, MOSQ_OPT_RECEIVE_MAXIMUM, 100);
    mosquitto_threaded_set(m, true);
    mosquitto_connect_v5_callback_set(m, [](mosquitto*, void* self, int rc, int flags, const mosquitto_property*) {
        static_cast<Impl*>(self)->on_connect(rc, flags);
    });
    mosquitto_disconnect_v5_callback_set(m, [](mosquitto*, void* self, int rc, const mosquitto_property*) {
        static_cast<Impl*>(self)->on_disconnect(rc);
    });
    mosquitto_message_v5_callback_set(m, [](mosquitto*, void* self, const mosquitto_message* msg, const mosquitto_property*) {
        static_cast<Impl*>(self)->on_message(*msg);
    });
    mosquitto_publish_v5_callback_set(m, [](mosquitto*, void* self, int mid, int rc, const mosquitto_property*) {
        static_cast<Impl*>(self)->on_publish(mid, rc);
    });
    mosquitto_subscribe_v5_callback_set(m, [](mosquitto*, void* self, int mid, int count, const int* granted, const mosquitto_property*) {
        static_cast<Impl*>(self)->on_subscribe(mid, count, granted);
    });
    mosquitto_unsubscribe_v5_callback_set(m, [](mosquitto*, void* self, int mid, const mosquitto_property*) {
        static_cast<Impl*>(self)->on_unsubscribe(mid);
    });
    mosquitto_log_callback_set(m, [](mosquitto*, void* self, int level, const char* text) {
        static_cast<Impl*>(self)->on_log(level, text);
    });
    if (!opts.username.empty())
        mosquitto_username_pw_set(m, opts.username.c_str(), opts.password.empty() ? nullptr : opts.password.c_str());
    if (opts.will) {
        const auto& w = *opts.will;
        if (mosquitto_will_set_v5(m, w.topic.c_str(), static_cast<int>(w.payload.size()), w.payload.data(), w.qos, w.retain,
                                  nullptr) != MOSQ_ERR_SUCCESS)
            init_error = Error{ErrorCode::mqtt_connect_failed, "cannot connect to " + where + ": invalid last will on '" + w.topic + "'"};
    }
    // The session expiry goes with every CONNECT (see the header).
    if (persistent) {
        mosquitto_property* props = nullptr;
        const auto expiry = static_cast<std::uint32_t>(std::min<std::int64_t>(opts.session_expiry.count(), 0xFFFFFFFF));
        mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, expiry);
        (void)mosquitto_connect_bind_v5(m, host.c_str(), -1, static_cast<int>(opts.keepalive.count()), nullptr, props);
        mosquitto_property_free_all(&props);
    }
    dispatcher = std::thread([this] { dispatch_loop(); });
}

Client::Impl::~Impl() {
    {
        std::lock_guard lock(qmu);
        qstop = true;
        message_handler.reset();
        connection_handler.reset();
    }
    qcv.notify_all();
    if (dispatcher.joinable()) dispatcher.join();
    bool connected_now = false;
    {
        std::lock_guard lock(mu);
        connected_now = want && up;
    }
    if (connected_now) (void)disconnect(1s);
    {
        std::lock_guard lock(mu);
        stopping = true;
        want = false;
    }
    cv.notify_all();
    if (network.joinable()) network.join();
    if (m) mosquitto_destroy(m);
}

std::chrono::milliseconds Client::Impl::backoff(unsigned attempt) {
    const auto cap = std::min<std::int64_t>(opts.reconnect_max.count(),
                                            opts.reconnect_min.count() << std::min(attempt, 20U));
    std::uniform_int_distribution<std::int64_t> dist(opts.reconnect_min.count(), std::max(cap, opts.reconnect_min.count()));
    return std::chrono::milliseconds(dist(rng));
}

// ---- operations --------------------------------------------------------------------------------

Error Client::Impl::connect_error() {
    const std::string prefix = "cannot connect to " + where + ": ";
    std::string detail_line;
    {
        std::lock_guard l(log_mu);
        detail_line = last_error_line;
    }
    std::optional<int> reason;
    int rc = 0;
    {
        std::lock_guard lock(mu);
        reason = refused;
        rc = attempt_rc;
    }
    if (reason) {
        std::string hint;
        switch (*reason) {
            case 0x85: hint = " (client id not accepted)"; break;
            case 0x86: hint = " (bad user name or password)"; break;
            case 0x87:
                hint = opts.username.empty() || is_tls_uri(opts.broker) ? " (check the client certificate's identity and the broker's ACL)"
                                                                         : " (check the user name and password)";
                break;
            case 0x8A: hint = " (this client is banned)"; break;
            case 0x84: hint = " (the broker does not speak MQTT 5)"; break;
            default: break;
        }
        return Error{ErrorCode::mqtt_connect_failed, prefix + "the broker refused the connection: " + reason_text(*reason) + hint};
    }
    const std::string cause = rc == MOSQ_ERR_TIMEOUT ? std::string("no CONNACK") : std::string(mosquitto_strerror(rc));
    const std::string tail = " [libmosquitto: " + cause + (detail_line.empty() ? "" : "; " + detail_line) + "]";
    if (const auto tcp = probe_tcp(opts.broker); !tcp.empty()) return Error{ErrorCode::mqtt_connect_failed, prefix + tcp};
    if (rc == MOSQ_ERR_TIMEOUT)
        return Error{ErrorCode::mqtt_connect_failed,
                     prefix + "the broker accepted the TCP connection but did not complete the " +
                         (is_tls_uri(opts.broker) ? "TLS/MQTT" : "MQTT") + " handshake within " +
                         std::to_string(opts.connect_timeout.count()) + "s (connect_timeout)" + tail};
    if (is_tls_uri(opts.broker))
        // Either side may have refused the handshake: we did not trust the broker's certificate
        // (cafile, or a host name/IP not in it), or the broker did not trust ours.
        return Error{ErrorCode::mqtt_connect_failed,
                     prefix + "TLS handshake failed (check the CA file and client certificate: cafile must hold the CA that "
                              "signed the broker's certificate for this host, and the broker must trust the client "
                              "certificate)" + tail};
    return Error{ErrorCode::mqtt_connect_failed,
                 prefix + "the broker accepted the TCP connection and then closed it (if the port is a TLS listener, use mqtts://)" + tail};
}

Expected<void> Client::Impl::connect() {
    if (init_error) return std::unexpected(*init_error);
    std::lock_guard op(op_mu);
    {
        std::lock_guard lock(mu);
        if (want) {
            if (up) return {};
            return fail(ErrorCode::mqtt_connect_failed, "cannot connect to " + where + ": the connection was lost and is being re-established");
        }
    }
    // Name an unreadable key file directly rather than as a failed handshake.
    if (is_tls_uri(opts.broker)) {
        if (const auto problem = tls_files_problem(opts.cafile, opts.certfile, opts.keyfile); !problem.empty())
            return fail(ErrorCode::mqtt_connect_failed, "cannot connect to " + where + ": " + problem);
        if (const int rc = mosquitto_tls_set(m, opts.cafile.empty() ? nullptr : opts.cafile.c_str(), nullptr,
                                             opts.certfile.empty() ? nullptr : opts.certfile.c_str(),
                                             opts.keyfile.empty() ? nullptr : opts.keyfile.c_str(), nullptr);
            rc != MOSQ_ERR_SUCCESS)
            return fail(ErrorCode::mqtt_connect_failed, "cannot connect to " + where + ": TLS setup: " + mosquitto_strerror(rc));
    }
    std::unique_lock lock(mu);
    want = true;
    first_attempt = true;
    attempt_done = false;
    attempt_rc = MOSQ_ERR_SUCCESS;
    attempts = 0;
    if (!network.joinable()) network = std::thread([this] { network_loop(); });
    cv.notify_all();
    const auto deadline = Clock::now() + std::max<std::chrono::milliseconds>(opts.connect_timeout, 1s) + 2s;
    cv.wait_until(lock, deadline, [this] { return stopping || announced || attempt_done; });
    const bool ok = announced;
    const bool done = attempt_done;
    if (!ok) want = false;
    first_attempt = false;
    cv.notify_all();
    if (ok) return {};
    lock.unlock();
    if (!done)
        return fail(ErrorCode::mqtt_connect_failed, "cannot connect to " + where + ": no answer within " +
                                                        std::to_string(opts.connect_timeout.count()) + "s (connect_timeout)");
    return std::unexpected(connect_error());
}

Expected<void> Client::Impl::disconnect(std::chrono::milliseconds timeout) {
    if (!m) return {};
    std::lock_guard op(op_mu);
    std::unique_lock lock(mu);
    const bool was_up = up;
    want = false;
    cv.notify_all();
    Expected<void> result;
    if (was_up) {
        // The network thread writes the DISCONNECT and sees the socket close (on_disconnect).
        if (mosquitto_disconnect_v5(m, 0, nullptr) == MOSQ_ERR_SUCCESS &&
            !cv.wait_for(lock, timeout, [this] { return !socket_open; }))
            result = fail(ErrorCode::timeout, "disconnecting from " + where + ": no completion within " + ms_text(timeout));
    }
    announce_down();
    return result;
}

bool Client::Impl::wait_answer(std::unique_lock<std::mutex>& lock, int mid, std::chrono::milliseconds timeout) {
    const bool answered = cv.wait_for(lock, timeout, [&] { return stopping || waiting[mid].done; }) && waiting[mid].done;
    return answered;
}

Expected<void> Client::Impl::subscribe(const std::string& filter, int qos, std::chrono::milliseconds timeout) {
    const std::string what = "subscribing to '" + filter + "' on " + where;
    if (init_error) return fail(ErrorCode::mqtt_subscribe_failed, what + ": " + init_error->message);
    if (qos < 0 || qos > 2) return fail(ErrorCode::mqtt_subscribe_failed, what + ": QoS must be 0, 1 or 2");
    std::unique_lock lock(mu);
    auto it = std::find_if(subscriptions.begin(), subscriptions.end(), [&](const auto& s) { return s.first == filter; });
    if (it != subscriptions.end()) it->second = qos;
    else subscriptions.emplace_back(filter, qos);
    const auto forget = [&] { std::erase_if(subscriptions, [&](const auto& s) { return s.first == filter; }); };
    if (!up)
        return fail(ErrorCode::mqtt_subscribe_failed,
                    what + ": not connected (the filter is remembered and subscribed when the connection is established)");
    int mid = 0;
    if (const int rc = mosquitto_subscribe_v5(m, &mid, filter.c_str(), qos, MQTT_SUB_OPT_SEND_RETAIN_ALWAYS, nullptr); rc != MOSQ_ERR_SUCCESS) {
        forget();
        return fail(ErrorCode::mqtt_subscribe_failed, what + ": " + mosquitto_strerror(rc));
    }
    waiting[mid] = Answer{};
    const bool answered = wait_answer(lock, mid, timeout);
    const int rc = waiting[mid].rc;
    waiting.erase(mid);
    if (!answered)
        return fail(ErrorCode::timeout,
                    what + ": no SUBACK within " + ms_text(timeout) + " (the filter is remembered and renewed on reconnect)");
    if (rc >= 0x80) {
        forget();
        return fail(ErrorCode::mqtt_subscribe_failed, what + ": the broker answered " + reason_text(rc));
    }
    return {};
}

Expected<void> Client::Impl::unsubscribe(const std::string& filter, std::chrono::milliseconds timeout) {
    const std::string what = "unsubscribing from '" + filter + "' on " + where;
    if (init_error) return fail(ErrorCode::mqtt_subscribe_failed, what + ": " + init_error->message);
    std::unique_lock lock(mu);
    std::erase_if(subscriptions, [&](const auto& s) { return s.first == filter; });
    // Offline, forgetting the filter is enough: a clean reconnect will not renew it.
    if (!up) return {};
    int mid = 0;
    if (const int rc = mosquitto_unsubscribe_v5(m, &mid, filter.c_str(), nullptr); rc != MOSQ_ERR_SUCCESS)
        return fail(ErrorCode::mqtt_subscribe_failed, what + ": " + mosquitto_strerror(rc));
    waiting[mid] = Answer{};
    const bool answered = wait_answer(lock, mid, timeout);
    waiting.erase(mid);
    if (!answered) return fail(ErrorCode::timeout, what + ": no UNSUBACK within " + ms_text(timeout));
    return {};
}

Expected<void> Client::Impl::publish(const std::string& topic, const std::string& payload, int qos, bool retain,
                                     std::chrono::milliseconds timeout, bool wait) {
    const std::string what = "publishing to '" + topic + "' on " + where;
    if (init_error) return fail(ErrorCode::mqtt_publish_failed, what + ": " + init_error->message);
    if (qos < 0 || qos > 2) return fail(ErrorCode::mqtt_publish_failed, what + ": QoS must be 0, 1 or 2");
    std::unique_lock lock(mu);
    // Buffered while reconnecting; before the first connect (or after disconnect()) there is
    // no session to send it in.
    if (!want) return fail(ErrorCode::mqtt_publish_failed, what + ": not connected");
    if (!wait && unacknowledged.size() >= static_cast<std::size_t>(opts.max_buffered))
        return fail(ErrorCode::mqtt_publish_failed,
                    what + ": too many messages buffered or awaiting acknowledgement (raise Options::max_buffered)");
    int mid = 0;
    // Under mu: the acknowledgement (on the network thread) cannot be handled before the mid is
    // registered. The library only queues the packet here (threaded mode).
    const int rc = mosquitto_publish_v5(m, &mid, topic.c_str(), static_cast<int>(payload.size()), payload.data(), qos, retain, nullptr);
    // NO_CONN for QoS 1/2: queued, and sent after the reconnect (see the header).
    if (rc != MOSQ_ERR_SUCCESS && !(rc == MOSQ_ERR_NO_CONN && qos > 0)) {
        std::string cause = mosquitto_strerror(rc);
        if (rc == MOSQ_ERR_MALFORMED_UTF8) cause = "the topic is not valid UTF-8";
        else if (rc == MOSQ_ERR_INVAL) cause = "invalid topic (empty, or with a wildcard)";
        return fail(ErrorCode::mqtt_publish_failed, what + ": " + cause);
    }
    if (qos == 0) return {};  // QoS 0: handed to the library, nothing will answer
    if (!wait) {
        unacknowledged.insert(mid);
        return {};
    }
    waiting[mid] = Answer{};
    const bool answered = wait_answer(lock, mid, timeout);
    const int reason = waiting[mid].rc;
    waiting.erase(mid);
    if (!answered)
        return fail(ErrorCode::timeout, what + ": no acknowledgement within " + ms_text(timeout) +
                                            (up ? "" : " (not connected; the message stays buffered and may still be sent)"));
    if (reason >= 0x80) return fail(ErrorCode::mqtt_publish_failed, what + ": the broker answered " + reason_text(reason));
    return {};
}

// ---- Client ------------------------------------------------------------------------------------

Client::Client(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Client::~Client() = default;

void Client::on_message(MessageHandler handler) {
    std::lock_guard lock(impl_->qmu);
    impl_->message_handler = std::make_shared<MessageHandler>(std::move(handler));
}
void Client::on_connection(ConnectionHandler handler) {
    std::lock_guard lock(impl_->qmu);
    impl_->connection_handler = std::make_shared<ConnectionHandler>(std::move(handler));
}
Expected<void> Client::connect() { return impl_->connect(); }
Expected<void> Client::disconnect(std::chrono::milliseconds timeout) { return impl_->disconnect(timeout); }
bool Client::connected() const { return impl_->up; }
// libmosquitto has no process-wide threads: this client's own are joined at once.
void Client::leave_network_threads_to_exit() {}
Expected<void> Client::subscribe(const std::string& filter, int qos, std::chrono::milliseconds timeout) {
    return impl_->subscribe(filter, qos, timeout);
}
Expected<void> Client::unsubscribe(const std::string& filter, std::chrono::milliseconds timeout) {
    return impl_->unsubscribe(filter, timeout);
}
Expected<void> Client::publish(const std::string& topic, const std::string& payload, int qos, bool retain,
                               std::chrono::milliseconds timeout) {
    return impl_->publish(topic, payload, qos, retain, timeout, true);
}
Expected<void> Client::publish_async(const std::string& topic, const std::string& payload, int qos, bool retain) {
    return impl_->publish(topic, payload, qos, retain, std::chrono::milliseconds(0), false);
}

}  // namespace ota::mqtt
