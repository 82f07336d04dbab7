// The libmosquitto client's state (shared/src/mqtt_mosquitto.cpp: construction and the
// operations; shared/src/mqtt/mosquitto_loop.cpp: libmosquitto's callbacks, the network and
// dispatch threads). Private to those two files.
#pragma once

#include "ota/mqtt.hpp"

#include "common.hpp"

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <variant>

namespace ota::mqtt {
namespace mosquitto_detail {

using Clock = std::chrono::steady_clock;

// "Not authorized (0x87)": libmosquitto's names of MQTT 5 reason codes.
[[nodiscard]] std::string reason_text(int code);

struct ConnEvent {
    bool up;
};
using Event = std::variant<Message, ConnEvent>;

}  // namespace mosquitto_detail

struct Client::Impl {
    using Clock = mosquitto_detail::Clock;
    using Event = mosquitto_detail::Event;
    using ConnEvent = mosquitto_detail::ConnEvent;

    explicit Impl(Options o);
    ~Impl();

    Expected<void> connect();
    Expected<void> disconnect(std::chrono::milliseconds timeout);
    Expected<void> subscribe(const std::string& filter, int qos, std::chrono::milliseconds timeout);
    Expected<void> unsubscribe(const std::string& filter, std::chrono::milliseconds timeout);
    Expected<void> publish(const std::string& topic, const std::string& payload, int qos, bool retain,
                           std::chrono::milliseconds timeout, bool wait);

    // libmosquitto's callbacks (network thread)
    void on_connect(int rc, int flags);
    void on_disconnect(int rc);
    void on_message(const mosquitto_message& m);
    void on_publish(int mid, int rc);
    void on_subscribe(int mid, int count, const int* granted);
    void on_unsubscribe(int mid);
    void on_log(int level, const char* text);

    void network_loop();
    void dispatch_loop();
    void push(Event ev);
    void announce_up();      // with mu held
    void announce_down();    // with mu held
    std::chrono::milliseconds backoff(unsigned attempt);
    Error connect_error();   // why the first attempt failed, in one line (may probe the broker)
    // Wait (mu held by `lock`) until the operation `mid` is answered, up to `timeout`.
    bool wait_answer(std::unique_lock<std::mutex>& lock, int mid, std::chrono::milliseconds timeout);

    Options opts;
    std::string where;
    std::string host;
    int port{0};
    std::optional<Error> init_error;
    mosquitto* m{nullptr};
    std::mutex op_mu;  // connect() / disconnect() one at a time

    std::mutex mu;  // everything below, up to the dispatch queue
    std::condition_variable cv;
    bool stopping{false};
    bool want{false};           // keep a connection up (connect() called, disconnect() not)
    bool first_attempt{false};  // connect()'s own attempt: its outcome goes back to connect()
    bool started{false};        // mosquitto_connect_bind_async() was called once
    bool socket_open{false};    // an attempt or a connection is under way on the socket
    std::atomic<bool> up{false};  // CONNACK accepted, not lost since
    bool announced{false};        // on_connection(true) queued and not yet followed by false
    bool attempt_done{false};
    int attempt_rc{MOSQ_ERR_SUCCESS};
    std::optional<int> refused;  // the CONNACK's reason code when it refused
    Clock::time_point attempt_deadline{};
    unsigned attempts{0};
    std::set<int> resubscribing;  // SUBSCRIBEs of a reconnect not yet answered
    std::vector<std::pair<std::string, int>> subscriptions;
    struct Answer {
        bool done{false};
        int rc{0};
    };
    std::map<int, Answer> waiting;  // mid -> answer, for the calls that wait for one
    std::set<int> unacknowledged;   // mids of publish_async() not yet acknowledged
    std::mt19937_64 rng{std::random_device{}()};

    std::mutex log_mu;
    std::string last_error_line;  // libmosquitto's last MOSQ_LOG_ERR line (e.g. OpenSSL's reason)

    std::mutex qmu;
    std::condition_variable qcv;
    std::deque<Event> events;
    bool qstop{false};
    std::shared_ptr<MessageHandler> message_handler;
    std::shared_ptr<ConnectionHandler> connection_handler;

    std::thread network;
    std::thread dispatcher;
};

}  // namespace ota::mqtt
