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
    // User name + password (a console login on the broker's console listener); empty: none.
    // The TLS listener ignores them (the certificate's CN is the user name there).
    std::string username, password;
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
    // - Handlers may call publish()/subscribe() (and wait for the ack) on this client.
    // - Whatever a handler uses must outlive the Client; no handler is called once the
    //   destructor has begun (one already running is waited for). Do not destroy the Client
    //   from inside its own handler.
    // - Messages of a resumed session may arrive before on_connection(true) for that connection.
    void on_message(MessageHandler handler);
    void on_connection(ConnectionHandler handler);

    // Connect once, waiting up to connect_timeout. A failure names the broker and the cause
    // (refused, TLS handshake, not authorized). After a successful connect, lost connections
    // are re-established in the background until disconnect().
    // paho C runs one network thread per process that notices a new socket only every second:
    // connecting while another Client of the same process is connected takes ~2 s.
    [[nodiscard]] Expected<void> connect();
    [[nodiscard]] Expected<void> disconnect(std::chrono::milliseconds timeout = std::chrono::seconds(5));
    [[nodiscard]] bool connected() const;

    // For a program that exits once this client is done (ota-publish): the destructor then leaves
    // paho's process-wide network threads to the exit instead of stopping them, which paho does by
    // polling every 100 ms (MQTTAsync_destroy of the last client): the command returns within a
    // few ms of the broker's acknowledgement instead of ~100 ms later. Our own threads are still
    // joined. Call after disconnect(); not for a process that goes on.
    void leave_network_threads_to_exit();

    // Subscribe and remember the filter; renewed after every reconnect. When not connected the
    // filter is still remembered (and subscribed on the next connect) but an error is returned.
    // A filter the broker refuses (reason code >= 0x80) is forgotten. Note: Mosquitto 2.0.11
    // grants a subscription the ACL does not allow reading and filters at delivery instead.
    [[nodiscard]] Expected<void> subscribe(const std::string& filter, int qos = 1,
                                           std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // Forget a filter (no longer renewed on reconnect) and unsubscribe if connected.
    [[nodiscard]] Expected<void> unsubscribe(const std::string& filter,
                                             std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // Publish and wait for the broker's acknowledgement (QoS 1: PUBACK; QoS 0: sent).
    // A refusal (e.g. 0x87 Not authorized for an ACL-denied topic) is mqtt_publish_failed.
    // While reconnecting the message is buffered and waited for; ErrorCode::timeout then means
    // "not acknowledged yet", and the message may still be delivered later.
    [[nodiscard]] Expected<void> publish(const std::string& topic, const std::string& payload,
                                         int qos = 1, bool retain = false,
                                         std::chrono::milliseconds timeout = std::chrono::seconds(10));
    // Publish without waiting; delivery is retried by paho across reconnects within the session.
    // A refusal in the PUBACK is not reported. At most Options::max_buffered may be outstanding.
    // paho C 1.3.12 stalls when more QoS 1 publishes are outstanding than the broker's Receive
    // Maximum (Mosquitto's max_inflight_messages): beyond it about one window per second.
    [[nodiscard]] Expected<void> publish_async(const std::string& topic, const std::string& payload,
                                               int qos = 1, bool retain = false);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace ota::mqtt
