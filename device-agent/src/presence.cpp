// Connection handling: what the agent publishes about itself (online, inventory) and the outbox
// of status reports. on_connected() runs on the MQTT client's dispatch thread at every connect,
// so `online` and the inventory are published at once, also while an update runs on the agent's
// thread (docs/protocol.md: "at every connect").
#include "agent_impl.hpp"
#include "messages.hpp"
#include "ota/build_info.hpp"
#include "ota/systemd.hpp"
#include "ota/time.hpp"

namespace ota::agent {

using namespace std::chrono_literals;

void Agent::Impl::on_connected() {
    {
        std::lock_guard lock(presence_mu);
        ++connects;
    }
    log.info("connected", {{"broker", cfg.broker}});
    nlohmann::ordered_json online{{"online", true}, {"agent_version", build::version}, {"ts", format_utc(now_utc())}};
    if (auto p = client->publish(topics.online(cfg.device_id), dump_safe(online), 1, true, 5s); !p)
        log.warn("online not published", {{"error", p.error().message}});
    publish_inventory();
    flush();
}

std::string Agent::Impl::status_payload(const std::string& component, const std::string& version, const std::string& rollout,
                                        Reported stage, std::optional<int> progress, const std::optional<Error>& error) {
    nlohmann::ordered_json j;
    j["device"] = cfg.device_id;
    j["component"] = component;
    j["version"] = version;
    j["rollout"] = rollout;
    j["stage"] = std::string(to_string(stage));
    if (progress) j["progress"] = *progress;
    if (error) j["error"] = {{"code", std::string(to_string(error->code))}, {"message", error->message}};
    const auto seq = store->next_seq();
    std::uint64_t held = 0;
    if (seq.unreserved && input_log.allow("seq unreserved", std::chrono::steady_clock::now().time_since_epoch(), held))
        log.error("cannot reserve status sequence numbers; counting on from memory",
                  {{"error", seq.unreserved->describe()}, {"held_back", std::to_string(held)}});
    j["seq"] = seq.value;
    j["ts"] = format_utc(now_utc());
    return dump_safe(j);  // an error message quoting input bytes that are not UTF-8 is written replaced
}

void Agent::Impl::report(const std::string& component, const std::string& version, const std::string& rollout, Reported stage,
                         std::optional<int> progress, const std::optional<Error>& error) {
    const auto payload = status_payload(component, version, rollout, stage, progress, error);
    if (auto q = store->enqueue(topics.status(cfg.device_id, component), payload, true); !q) {
        std::uint64_t held = 0;
        if (input_log.allow("outbox unwritable", std::chrono::steady_clock::now().time_since_epoch(), held))
            log.error("cannot queue a status report; sending it directly",
                      {{"error", q.error().describe()}, {"held_back", std::to_string(held)}});
        send_direct(component, payload);
    }
    statuses[component] = payload;
    note_stage(component, version, stage, progress, error);
    // Rejections follow input from outside: a flood of bad offers is logged a few times a minute.
    std::uint64_t held = 0;
    if (stage == Reported::rejected && !input_log.allow("status rejected", std::chrono::steady_clock::now().time_since_epoch(), held)) {
        flush();
        return;
    }
    log.info("status", {{"component", component}, {"version", version}, {"stage", std::string(to_string(stage))},
                        {"progress", progress ? std::to_string(*progress) : ""},
                        {"error", error ? std::string(to_string(error->code)) : ""}});
    flush();
}

// The outbox is in the state database: when that cannot be written (a full or failing disk), a
// report goes out directly if it can, so the device does not fall silent: after what the outbox
// holds (older reports; status topics are retained, so the last one sent is what stands). Not
// resent after a restart; its seq still orders it among the queued ones.
void Agent::Impl::send_direct(const std::string& component, const std::string& payload) {
    flush();
    if (!client || !client->connected()) return;
    if (auto p = client->publish(topics.status(cfg.device_id, component), payload, 1, true, 5s); !p)
        log.warn("status report not sent", {{"error", p.error().message}});
}

// Send queued reports in order while connected; each leaves the outbox once acknowledged. Both
// threads flush (the dispatch thread at connect): one at a time, so none is sent twice. A report
// sent but not removable (the database cannot be written) is not sent again in this run (a later
// report may have gone out directly since, and must stay the retained one); each flush tries to
// remove it again.
void Agent::Impl::flush() {
    if (!client || !client->connected()) return;
    std::lock_guard lock(flush_mu);
    std::erase_if(sent_unremoved, [this](std::int64_t id) { return store->remove(id).has_value(); });
    for (int round = 0; round < 100; ++round) {
        auto items = store->pending(50);
        if (!items || items->empty()) return;
        bool progressed = false;
        for (const auto& item : *items) {
            if (sent_unremoved.contains(item.id)) continue;
            if (auto p = client->publish(item.topic, item.payload, 1, item.retain, 5s); !p) {
                log.warn("report not acknowledged; kept in the outbox", {{"error", p.error().message}});
                return;
            }
            progressed = true;
            if (auto r = store->remove(item.id); !r) {
                if (sent_unremoved.empty()) log.error("cannot remove a sent report from the outbox", {{"error", r.error().describe()}});
                sent_unremoved.insert(item.id);
            }
        }
        if (!progressed) return;
    }
}

// The last stage reported, for STATUS= (`systemctl status ota-agent`), sent at once.
void Agent::Impl::note_stage(const std::string& component, const std::string& version, Reported stage,
                             std::optional<int> progress, const std::optional<Error>& error) {
    last_stage = component + " " + std::string(to_string(stage)) + " " + version +
                 (progress ? " " + std::to_string(*progress) + "%" : std::string()) +
                 (error ? " (" + std::string(ota::to_string(error->code)) + ")" : std::string());
    systemd::status(service_status());
}

// What `systemctl status ota-agent` shows (STATUS=): connected or not, versions, the last stage.
std::string Agent::Impl::service_status() {
    std::string s = client && client->connected() ? "connected" : "not connected";
    std::string versions;
    {
        std::lock_guard lock(presence_mu);
        versions = published_versions;
    }
    // {"model":"1.2.0","app":null} -> "model=1.2.0 app=none"
    auto j = nlohmann::json::parse(versions, nullptr, false);
    if (j.is_object() && !j.empty()) {
        s += "; versions";
        for (const auto& [name, v] : j.items()) s += " " + name + "=" + (v.is_string() ? v.get<std::string>() : std::string("none"));
    }
    if (!last_stage.empty()) s += "; last: " + last_stage;
    return s;
}

// The installed versions per component (cached by Inventory; cheap to call often).
nlohmann::ordered_json Agent::Impl::installed_versions() {
    auto comps = nlohmann::ordered_json::object();
    for (const auto& [name, _] : cfg.components) {
        auto v = inventory.version(name, recorded_version(name));
        comps[name] = v ? json(*v) : json(nullptr);
    }
    return comps;
}

void Agent::Impl::publish_inventory() {
    if (!client || !client->connected()) return;
    nlohmann::ordered_json j;
    j["device"] = cfg.device_id;
    j["agent_version"] = build::version;
    j["platform"] = cfg.platform;
    j["labels"] = cfg.labels;
    j["components"] = installed_versions();
    j["ts"] = format_utc(now_utc());
    if (auto p = client->publish(topics.inventory(cfg.device_id), dump_safe(j), 1, true, 5s); !p) {
        log.warn("inventory not published", {{"error", p.error().message}});
        return;
    }
    std::lock_guard lock(presence_mu);
    last_inventory = std::chrono::steady_clock::now();
    published_versions = dump_safe(j["components"]);
}

// Publish the inventory when the installed versions changed (e.g. a file dropped into a
// watched directory by hand), checked every few seconds, and every inventory_interval anyway.
void Agent::Impl::inventory_tick(std::chrono::steady_clock::time_point now) {
    std::string published;
    {
        std::lock_guard lock(presence_mu);
        if (now - last_inventory <= cfg.inventory_interval) {
            if (now - last_inventory_check < 5s) return;
            last_inventory_check = now;
            published = published_versions;
        }
    }
    if (published.empty() || dump_safe(installed_versions()) != published) publish_inventory();
}

void Agent::Impl::remember_unrecorded(const std::string& component, const std::string& version) {
    std::lock_guard lock(presence_mu);
    unrecorded_installed[component] = version;
}

void Agent::Impl::forget_unrecorded(const std::string& component) {
    std::lock_guard lock(presence_mu);
    unrecorded_installed.erase(component);
}

std::optional<std::string> Agent::Impl::recorded_version(const std::string& component) {
    {
        std::lock_guard lock(presence_mu);
        if (auto u = unrecorded_installed.find(component); u != unrecorded_installed.end()) return u->second;
    }
    auto v = store->get("installed/" + component);
    return v ? *v : std::nullopt;
}

}  // namespace ota::agent
