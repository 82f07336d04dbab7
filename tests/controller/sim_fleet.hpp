// Simulated devices for the controller tests (a test stand-in for real agents, documented in
// docs/controller.md, "Tests"): each is a real MQTT client (libmosquitto, TLS, its own device
// certificate, client id = device id) accepted by the real broker's ACL. It speaks the agent's
// protocol: online + retained inventory at connect, follows its assignment to its wave, and on an
// `open` wave message reports `downloading` then, after `work`, `succeeded` (and a new inventory),
// `failed`, or nothing at all (silent). Commands on devices/<id>/cmd: `retry` (start the last
// offered release of the component again) and `install` (start the release in the cmd). It does not download or verify anything: that is the real
// agent's job, covered by tests/device-agent.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "kit.hpp"

struct mosquitto;

namespace ota::testkit {

struct SimBehaviour {
    enum class Outcome { succeed, fail, silent };
    Outcome outcome{Outcome::succeed};
    std::chrono::milliseconds work{100};
    std::string error_code{"health_check_failed"};
};

struct WaveSeen {
    std::string topic, rollout, state, version;
    std::chrono::steady_clock::time_point at;
};

class SimFleet;

class SimDevice {
public:
    SimDevice(SimFleet& fleet, std::string id, std::map<std::string, std::string> labels,
              std::map<std::string, std::string> components, SimBehaviour behaviour);
    ~SimDevice();
    SimDevice(const SimDevice&) = delete;
    SimDevice& operator=(const SimDevice&) = delete;

    [[nodiscard]] const std::string& id() const { return id_; }
    [[nodiscard]] bool connected() const;
    [[nodiscard]] std::vector<WaveSeen> waves() const;
    [[nodiscard]] std::string installed(const std::string& component) const;
    [[nodiscard]] std::string assignment() const;
    // Number of installs started (a wave message that made it start).
    [[nodiscard]] int starts() const;
    void set_behaviour(SimBehaviour b);
    // Publish anything as this device (malformed payloads for the ingest tests).
    void publish(const std::string& topic, const std::string& payload, bool retain);
    [[nodiscard]] int next_seq();

private:
    friend class SimFleet;
    void on_connect();
    void on_message(const std::string& topic, const std::string& payload);
    void on_wave(const std::string& topic, const std::string& component, const nlohmann::json& message);
    void publish_inventory();
    void report(const std::string& component, const std::string& version, const std::string& rollout,
                const std::string& stage, const std::string& error_code);

    SimFleet& fleet_;
    std::string id_;
    mosquitto* mosq_{nullptr};
    mutable std::mutex mu_;
    std::map<std::string, std::string> labels_, components_;
    SimBehaviour behaviour_;
    std::vector<WaveSeen> waves_;
    std::map<std::string, bool> started_;  // rollout -> started
    std::string assignment_, wave_filter_;
    std::map<std::string, std::string> last_payload_;  // wave topic -> last message (for cmd retry)
    int seq_{0}, starts_{0};
    bool connected_{false};
};

class SimFleet {
public:
    SimFleet(const Broker& broker, const Pki& pki);
    ~SimFleet();
    // Add device-NNN (its certificate must exist in the Pki) and wait until it is connected.
    SimDevice& add(const std::string& id, std::map<std::string, std::string> labels,
                   std::map<std::string, std::string> components, SimBehaviour behaviour = {});
    [[nodiscard]] SimDevice& operator[](const std::string& id) { return *devices_.at(id); }
    [[nodiscard]] std::vector<SimDevice*> all();

private:
    friend class SimDevice;
    // Run `f` at `when` on the fleet's scheduler thread.
    void at(std::chrono::steady_clock::time_point when, std::function<void()> f);
    void run();
    const Broker& broker_;
    const Pki& pki_;
    std::map<std::string, std::unique_ptr<SimDevice>> devices_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::multimap<std::chrono::steady_clock::time_point, std::function<void()>> jobs_;
    bool stop_{false};
    std::thread thread_;
};

}  // namespace ota::testkit
