// The libmosquitto client's callbacks and threads (see shared/src/mqtt_mosquitto.cpp's header
// for the design and the library behaviour relied on).
#include "mosquitto_impl.hpp"

#include <poll.h>

#include <cstdio>

namespace ota::mqtt {

using namespace detail;
using namespace mosquitto_detail;
using namespace std::chrono_literals;

void Client::Impl::push(Event ev) {
    {
        std::lock_guard lock(qmu);
        if (qstop) return;
        events.push_back(std::move(ev));
    }
    qcv.notify_one();
}

void Client::Impl::announce_up() {
    if (announced) return;
    announced = true;
    attempts = 0;
    push(ConnEvent{true});
    cv.notify_all();
}

void Client::Impl::announce_down() {
    if (!announced) return;
    announced = false;
    push(ConnEvent{false});
}

// ---- callbacks (network thread) ----------------------------------------------------------------

void Client::Impl::on_connect(int rc, int flags) {
    std::lock_guard lock(mu);
    if (rc != 0) {
        refused = rc;
        return;
    }
    up = true;
    refused.reset();
    // Renew the remembered subscriptions. With the session present the broker still has them:
    // renewing is idempotent, and "retained only for a new subscription" avoids every retained
    // message again. Without a session, retained messages are how we catch up.
    const bool session_present = (flags & 1) != 0;
    resubscribing.clear();
    for (const auto& [filter, qos] : subscriptions) {
        int mid = 0;
        const int options = session_present ? MQTT_SUB_OPT_SEND_RETAIN_NEW : MQTT_SUB_OPT_SEND_RETAIN_ALWAYS;
        if (mosquitto_subscribe_v5(m, &mid, filter.c_str(), qos, options, nullptr) == MOSQ_ERR_SUCCESS) resubscribing.insert(mid);
    }
    if (resubscribing.empty()) announce_up();
}

void Client::Impl::on_disconnect(int rc) {
    (void)rc;
    std::lock_guard lock(mu);
    up = false;
    socket_open = false;
    resubscribing.clear();
    announce_down();
    cv.notify_all();
}

void Client::Impl::on_message(const mosquitto_message& msg) {
    Message out;
    out.topic = msg.topic != nullptr ? msg.topic : "";
    if (msg.payloadlen > 0) out.payload.assign(static_cast<const char*>(msg.payload), static_cast<std::size_t>(msg.payloadlen));
    out.qos = msg.qos;
    out.retained = msg.retain;
    push(std::move(out));
}

void Client::Impl::on_publish(int mid, int rc) {
    std::lock_guard lock(mu);
    unacknowledged.erase(mid);
    if (auto it = waiting.find(mid); it != waiting.end()) {
        it->second = Answer{true, rc};
        cv.notify_all();
    }
}

void Client::Impl::on_subscribe(int mid, int count, const int* granted) {
    std::lock_guard lock(mu);
    int worst = 0;
    for (int i = 0; i < count; ++i) worst = std::max(worst, granted[i]);
    if (resubscribing.erase(mid) && resubscribing.empty() && up) announce_up();
    if (auto it = waiting.find(mid); it != waiting.end()) {
        it->second = Answer{true, worst};
        cv.notify_all();
    }
}

void Client::Impl::on_unsubscribe(int mid) {
    std::lock_guard lock(mu);
    if (auto it = waiting.find(mid); it != waiting.end()) {
        it->second = Answer{true, 0};
        cv.notify_all();
    }
}

void Client::Impl::on_log(int level, const char* text) {
    if ((level & MOSQ_LOG_ERR) == 0 || text == nullptr) return;
    std::lock_guard lock(log_mu);
    last_error_line = text;
}

// ---- threads -----------------------------------------------------------------------------------

void Client::Impl::network_loop() {
    std::unique_lock lock(mu);
    while (!stopping) {
        if (!socket_open) {
            if (!want) {
                cv.wait(lock, [this] { return stopping || want; });
                continue;
            }
            if (!first_attempt) {
                const auto delay = backoff(attempts);
                if (attempts < 64) ++attempts;
                if (cv.wait_for(lock, delay, [this] { return stopping || !want; })) continue;
            }
            const bool reconnect = started;
            started = true;
            refused.reset();
            lock.unlock();
            {
                std::lock_guard l(log_mu);
                last_error_line.clear();
            }
            const int rc = reconnect ? mosquitto_reconnect_async(m)
                                     : mosquitto_connect_bind_async(m, host.c_str(), port, static_cast<int>(opts.keepalive.count()), nullptr);
            lock.lock();
            if (rc != MOSQ_ERR_SUCCESS) {
                if (first_attempt) {
                    attempt_rc = rc;
                    attempt_done = true;
                    cv.notify_all();
                    cv.wait(lock, [this] { return stopping || !first_attempt; });
                }
                continue;
            }
            socket_open = true;
            attempt_deadline = Clock::now() + std::max<std::chrono::milliseconds>(opts.connect_timeout, 1s);
            continue;
        }
        lock.unlock();
        const int rc = mosquitto_loop(m, 50, 1);
        lock.lock();
        if (rc != MOSQ_ERR_SUCCESS) {
            // The connection (or the attempt) is over; on_disconnect may not have run for an
            // attempt that failed before the CONNACK.
            const bool was_up = up;
            up = false;
            socket_open = false;
            resubscribing.clear();
            announce_down();
            if (first_attempt && !was_up && !announced) {
                attempt_rc = rc;
                attempt_done = true;
                cv.notify_all();
                cv.wait(lock, [this] { return stopping || !first_attempt; });
            }
            continue;
        }
        // libmosquitto 2.0.11 keeps polling a TLS connect whose TCP connection was refused (its
        // loop returns at once, every time, until the deadline): a hung-up socket says so.
        if (!up && socket_open) {
            pollfd pfd{mosquitto_socket(m), POLLOUT, 0};
            if (pfd.fd >= 0 && ::poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLERR | POLLHUP)) != 0) {
                socket_open = false;
                if (first_attempt) {
                    attempt_rc = MOSQ_ERR_CONN_LOST;
                    attempt_done = true;
                    cv.notify_all();
                    cv.wait(lock, [this] { return stopping || !first_attempt; });
                }
                continue;
            }
        }
        if (!up && Clock::now() >= attempt_deadline) {
            // No CONNACK in time: the next attempt's reconnect closes this socket.
            socket_open = false;
            if (first_attempt) {
                attempt_rc = MOSQ_ERR_TIMEOUT;
                attempt_done = true;
                cv.notify_all();
                cv.wait(lock, [this] { return stopping || !first_attempt; });
            }
        }
    }
}

void Client::Impl::dispatch_loop() {
    std::unique_lock lock(qmu);
    for (;;) {
        qcv.wait(lock, [this] { return qstop || !events.empty(); });
        if (qstop) return;
        std::deque<Event> batch;
        batch.swap(events);
        auto on_msg = message_handler;
        auto on_conn = connection_handler;
        lock.unlock();
        for (auto& ev : batch) {
            run_handler(where, [&] {
                if (auto* msg = std::get_if<Message>(&ev)) {
                    if (on_msg && *on_msg) (*on_msg)(*msg);
                } else if (on_conn && *on_conn) {
                    (*on_conn)(std::get<ConnEvent>(ev).up);
                }
            });
        }
        lock.lock();
        if (qstop) return;  // the destructor has begun: not one more handler
    }
}

}  // namespace ota::mqtt
