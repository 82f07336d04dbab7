// The project's MQTT client: a thin wrapper over paho-mqtt-cpp (MQTT 5) that speaks the
// project's types. paho appears only in shared/src/mqtt.cpp.
//
// - TLS with a client certificate (mqtts://), or plain tcp:// for loopback tools.
// - Persistent sessions (clean_start=false + session expiry) when session_expiry > 0.
// - A last will (LWT), retained or not.
// - Reconnect after a lost connection with capped exponential backoff and full jitter, on the
//   client's own thread; subscriptions are renewed after every reconnect.
// - QoS 1 by default; publish() waits for the broker's acknowledgement and reports MQTT 5
//   reason codes (e.g. "not authorized") as errors.
// - Messages are handed to the application's handler on one dedicated dispatch thread, in
//   arrival order; no application code runs inside paho's callbacks.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ota/error.hpp"

namespace ota::mqtt {

struct Will {
    std::string topic;
    std::string payload;
    int qos{1};
    bool retain{true};
};

struct Options {
    std::string broker;        // "mqtts://host:port" (TLS) or "tcp://host:port"
    std::string client_id;     // the device id for agents
    std::string cafile;        // CA bundle that signed the broker's certificate
    std::string certfile;      // client certificate (PEM)
    std::string keyfile;       // client private key (PEM)
    std::chrono::seconds keepalive{30};
    std::chrono::seconds connect_timeout{10};
    // 0 = clean session that ends with the connection; >0 = persistent session kept by the
    // broker for that long after a disconnect (queued QoS 1 messages survive).
    std::chrono::seconds session_expiry{0};
    std::optional<Will> will;
    std::chrono::milliseconds reconnect_min{500};
    std::chrono::milliseconds reconnect_max{30000};
    // How many publishes may be buffered while offline or awaiting acknowledgement.
    int max_buffered{10000};
};

struct Message {
    std::string topic;
    std::string payload;
    int qos{0};
    bool retained{false};
};

using MessageHandler = std::function<void(const Message&)>;
// Called on the dispatch thread when the connection comes up (true) or is lost (false).
using ConnectionHandler = std::function<void(bool connected)>;

class Client {
public:
    explicit Client(Options options);
    ~Client();  // disconnects and joins the threads
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Set before connect(). The handler runs on the client's dispatch thread.
    void on_message(MessageHandler handler);
    void on_connection(ConnectionHandler handler);

    // Connect once, waiting up to connect_timeout. A failure names the broker and the cause
    // (refused, TLS handshake, not authorized). After a successful connect, lost connections
    // are re-established in the background until disconnect().
    [[nodiscard]] Expected<void> connect();
    [[nodiscard]] Expected<void> disconnect(std::chrono::milliseconds timeout = std::chrono::seconds(5));
    [[nodiscard]] bool connected() const;

    // Subscribe and remember the filter; renewed after every reconnect.
    [[nodiscard]] Expected<void> subscribe(const std::string& filter, int qos = 1,
                                           std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // Publish and wait for the broker's acknowledgement (QoS 1: PUBACK; QoS 0: sent).
    [[nodiscard]] Expected<void> publish(const std::string& topic, const std::string& payload,
                                         int qos = 1, bool retain = false,
                                         std::chrono::milliseconds timeout = std::chrono::seconds(10));
    // Publish without waiting; delivery is retried by paho across reconnects within the session.
    [[nodiscard]] Expected<void> publish_async(const std::string& topic, const std::string& payload,
                                               int qos = 1, bool retain = false);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace ota::mqtt
