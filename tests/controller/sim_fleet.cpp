#include "sim_fleet.hpp"

#include <mosquitto.h>

#include <stdexcept>

namespace ota::testkit {
namespace {

using nlohmann::json;
constexpr const char* prefix = "ota/v1";

struct LibInit {
    LibInit() { mosquitto_lib_init(); }
};

// Dotted numeric versions ("1.10.0" > "1.9.0"), as the simulated devices use them.
std::vector<long> parts(const std::string& v) {
    std::vector<long> out;
    std::size_t i = 0;
    while (i < v.size()) {
        out.push_back(std::strtol(v.c_str() + i, nullptr, 10));
        const auto dot = v.find('.', i);
        if (dot == std::string::npos) break;
        i = dot + 1;
    }
    return out;
}

std::string now_iso() {
    const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    char buf[32];
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace

SimDevice::SimDevice(SimFleet& fleet, std::string id, std::map<std::string, std::string> labels,
                     std::map<std::string, std::string> components, SimBehaviour behaviour)
    : fleet_(fleet), id_(std::move(id)), labels_(std::move(labels)), components_(std::move(components)),
      behaviour_(behaviour) {
    static LibInit init;
    mosq_ = mosquitto_new(id_.c_str(), true, this);
    if (!mosq_) throw std::runtime_error("mosquitto_new failed");
    const auto& pki = fleet_.pki_;
    if (mosquitto_tls_set(mosq_, pki.ca().c_str(), nullptr, pki.cert(id_).c_str(), pki.key(id_).c_str(), nullptr) !=
        MOSQ_ERR_SUCCESS)
        throw std::runtime_error("mosquitto_tls_set failed for " + id_);
    const std::string will_topic = std::string(prefix) + "/devices/" + id_ + "/online";
    const std::string will = R"({"online":false})";
    mosquitto_will_set(mosq_, will_topic.c_str(), static_cast<int>(will.size()), will.data(), 1, true);
    mosquitto_connect_callback_set(mosq_, [](mosquitto*, void* self, int rc) {
        if (rc == 0) static_cast<SimDevice*>(self)->on_connect();
    });
    mosquitto_message_callback_set(mosq_, [](mosquitto*, void* self, const mosquitto_message* m) {
        static_cast<SimDevice*>(self)->on_message(m->topic, std::string(static_cast<const char*>(m->payload),
                                                                          static_cast<std::size_t>(m->payloadlen)));
    });
    if (mosquitto_connect_async(mosq_, "127.0.0.1", fleet_.broker_.port(), 30) != MOSQ_ERR_SUCCESS)
        throw std::runtime_error("mosquitto_connect_async failed for " + id_);
    mosquitto_loop_start(mosq_);
}

SimDevice::~SimDevice() {
    mosquitto_disconnect(mosq_);
    mosquitto_loop_stop(mosq_, false);
    mosquitto_destroy(mosq_);
}

bool SimDevice::connected() const {
    std::lock_guard lock(mu_);
    return connected_;
}

std::vector<WaveSeen> SimDevice::waves() const {
    std::lock_guard lock(mu_);
    return waves_;
}

std::string SimDevice::installed(const std::string& component) const {
    std::lock_guard lock(mu_);
    auto it = components_.find(component);
    return it == components_.end() ? "" : it->second;
}

std::string SimDevice::assignment() const {
    std::lock_guard lock(mu_);
    return assignment_;
}

int SimDevice::starts() const {
    std::lock_guard lock(mu_);
    return starts_;
}

void SimDevice::set_behaviour(SimBehaviour b) {
    std::lock_guard lock(mu_);
    behaviour_ = std::move(b);
}

int SimDevice::next_seq() {
    std::lock_guard lock(mu_);
    return ++seq_;
}

void SimDevice::publish(const std::string& topic, const std::string& payload, bool retain) {
    mosquitto_publish(mosq_, nullptr, topic.c_str(), static_cast<int>(payload.size()), payload.data(), 1, retain);
}

void SimDevice::on_connect() {
    publish(std::string(prefix) + "/devices/" + id_ + "/online",
            json{{"online", true}, {"agent_version", "0.1.0"}, {"ts", now_iso()}}.dump(), true);
    publish_inventory();
    for (const char* t : {"/assignment", "/cmd"}) {
        const std::string topic = std::string(prefix) + "/devices/" + id_ + t;
        mosquitto_subscribe(mosq_, nullptr, topic.c_str(), 1);
    }
    std::lock_guard lock(mu_);
    if (!wave_filter_.empty()) mosquitto_subscribe(mosq_, nullptr, wave_filter_.c_str(), 1);
    connected_ = true;
}

void SimDevice::publish_inventory() {
    json inv;
    {
        std::lock_guard lock(mu_);
        json comps = json::object();
        for (const auto& [c, v] : components_) comps[c] = v.empty() ? json(nullptr) : json(v);
        inv = json{{"device", id_}, {"agent_version", "0.1.0"}, {"platform", "linux/amd64"}, {"labels", labels_},
                   {"components", comps}, {"ts", now_iso()}};
    }
    publish(std::string(prefix) + "/devices/" + id_ + "/inventory", inv.dump(), true);
}

void SimDevice::report(const std::string& component, const std::string& version, const std::string& rollout,
                       const std::string& stage, const std::string& error_code) {
    json s{{"device", id_}, {"component", component}, {"version", version}, {"rollout", rollout},
           {"stage", stage}, {"seq", next_seq()}, {"ts", now_iso()}};
    if (stage == "downloading") s["progress"] = 0;
    if (!error_code.empty()) s["error"] = {{"code", error_code}, {"message", "simulated " + error_code}};
    publish(std::string(prefix) + "/devices/" + id_ + "/status/" + component, s.dump(), true);
}

void SimDevice::on_message(const std::string& topic, const std::string& payload) {
    auto j = json::parse(payload, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return;
    if (topic.ends_with("/assignment")) {
        const auto filter = std::string(prefix) + "/fleets/" + j.value("fleet", "") + "/waves/" + j.value("wave", "") + "/+";
        std::lock_guard lock(mu_);
        assignment_ = payload;
        if (filter == wave_filter_) return;
        if (!wave_filter_.empty()) mosquitto_unsubscribe(mosq_, nullptr, wave_filter_.c_str());
        wave_filter_ = filter;
        mosquitto_subscribe(mosq_, nullptr, filter.c_str(), 1);
        return;
    }
    if (topic.ends_with("/cmd")) {
        const auto cmd = j.value("cmd", ""), component = j.value("component", "");
        if (cmd == "install") {
            // {"cmd":"install","component","rollout","release"}: as if its wave had opened
            j["state"] = "open";
            return on_wave(std::string(prefix) + "/cmd-install/" + component, component, j);
        }
        if (cmd != "retry") return;
        std::string last;
        {
            std::lock_guard lock(mu_);
            for (auto it = waves_.rbegin(); it != waves_.rend(); ++it)
                if (it->topic.ends_with("/" + component)) {
                    started_.erase(it->rollout);
                    last = it->topic;
                    break;
                }
        }
        if (!last.empty()) on_message(last, last_payload_[last]);
        return;
    }
    {
        std::lock_guard lock(mu_);
        last_payload_[topic] = payload;
    }
    on_wave(topic, topic.substr(topic.rfind('/') + 1), j);
}

void SimDevice::on_wave(const std::string& topic, const std::string& component, const nlohmann::json& j) {
    // A wave message: {"rollout", "state", "release": {"manifest": {...}, "signature"}}
    const auto rollout = j.value("rollout", ""), state = j.value("state", "");
    std::string version;
    if (j.contains("release") && j["release"].is_object() && j["release"].contains("manifest"))
        version = j["release"]["manifest"].value("version", "");
    SimBehaviour b;
    {
        std::unique_lock lock(mu_);
        waves_.push_back({topic, rollout, state, version, std::chrono::steady_clock::now()});
        if (state != "open" || started_[rollout]) return;
        started_[rollout] = true;
        // Like the agent: the same version is nothing to do, an older one is refused.
        if (components_[component] == version) return;
        if (!components_[component].empty() && parts(version) < parts(components_[component])) {
            lock.unlock();
            report(component, version, rollout, "rejected", "version_not_newer");
            return;
        }
        ++starts_;
        b = behaviour_;
    }
    report(component, version, rollout, "downloading", "");
    if (b.outcome == SimBehaviour::Outcome::silent) return;
    fleet_.at(std::chrono::steady_clock::now() + b.work, [this, component, version, rollout, b] {
        if (b.outcome == SimBehaviour::Outcome::succeed) {
            {
                std::lock_guard lock(mu_);
                components_[component] = version;
            }
            report(component, version, rollout, "succeeded", "");
            publish_inventory();
        } else {
            report(component, version, rollout, "rolled_back", b.error_code);
        }
    });
}

SimFleet::SimFleet(const Broker& broker, const Pki& pki) : broker_(broker), pki_(pki), thread_([this] { run(); }) {}

SimFleet::~SimFleet() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
    devices_.clear();
}

SimDevice& SimFleet::add(const std::string& id, std::map<std::string, std::string> labels,
                         std::map<std::string, std::string> components, SimBehaviour behaviour) {
    auto d = std::make_unique<SimDevice>(*this, id, std::move(labels), std::move(components), behaviour);
    auto& ref = *d;
    devices_.emplace(id, std::move(d));
    if (!wait_until([&] { return ref.connected(); }, 10s)) throw std::runtime_error("simulated " + id + " did not connect");
    return ref;
}

std::vector<SimDevice*> SimFleet::all() {
    std::vector<SimDevice*> out;
    for (auto& [id, d] : devices_) out.push_back(d.get());
    return out;
}

void SimFleet::at(std::chrono::steady_clock::time_point when, std::function<void()> f) {
    {
        std::lock_guard lock(mu_);
        jobs_.emplace(when, std::move(f));
    }
    cv_.notify_one();
}

void SimFleet::run() {
    std::unique_lock lock(mu_);
    while (!stop_) {
        if (jobs_.empty()) {
            cv_.wait(lock);
            continue;
        }
        const auto when = jobs_.begin()->first;
        if (std::chrono::steady_clock::now() < when) {
            cv_.wait_until(lock, when);
            continue;
        }
        auto f = std::move(jobs_.begin()->second);
        jobs_.erase(jobs_.begin());
        lock.unlock();
        f();
        lock.lock();
    }
}

}  // namespace ota::testkit
