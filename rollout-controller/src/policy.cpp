#include "policy.hpp"

#include <algorithm>
#include <set>

#include "ota/crypto.hpp"
#include "ota/json.hpp"
#include "ota/topics.hpp"

namespace ota::controller {
namespace {

constexpr auto code = ErrorCode::config_invalid;
constexpr const char* policy_keys[] = {"success_percent", "max_failures",     "max_failure_percent", "min_finished",
                                       "soak_s",          "device_timeout_s", "approval",            "window"};

bool labels_match(const std::map<std::string, std::string>& want, const std::map<std::string, std::string>& have) {
    for (const auto& [k, v] : want) {
        const auto it = have.find(k);
        if (it == have.end() || it->second != v) return false;
    }
    return true;
}

bool contains(const std::vector<std::string>& list, const std::string& s) {
    return std::find(list.begin(), list.end(), s) != list.end();
}

// Parse a merged policy object; every field is optional.
Expected<WavePolicy> read_policy(const nlohmann::json& j, const std::string& path, ErrorCode ec = code) {
    ObjectReader r(j, path, ec);
    WavePolicy p;
    auto percent = [&](std::string_view key) -> std::optional<double> {
        auto v = r.opt_number(key);
        if (v && (*v < 0 || *v > 100)) r.fail(key, "expected a percentage 0..100, got " + std::to_string(*v));
        return v;
    };
    if (auto v = percent("success_percent")) p.success_percent = *v;
    p.max_failures = r.opt_u64("max_failures");
    p.max_failure_percent = percent("max_failure_percent");
    if (auto v = r.opt_u64("min_finished")) p.min_finished = *v;
    if (auto v = r.opt_u64("soak_s")) p.soak = std::chrono::seconds(static_cast<std::int64_t>(*v));
    if (auto v = r.opt_u64("device_timeout_s")) p.device_timeout = std::chrono::seconds(static_cast<std::int64_t>(*v));
    p.approval = r.boolean("approval", false);
    p.window = read_window(r, "window");
    r.reject_unknown();
    if (!r.ok()) return std::unexpected(*r.error());
    return p;
}

// Keep only the policy keys of a wave object (the rest are its name and selector).
nlohmann::json policy_layer(const nlohmann::json& wave) {
    nlohmann::json layer = nlohmann::json::object();
    for (const char* k : policy_keys)
        if (wave.contains(k)) layer[k] = wave[k];
    return layer;
}

nlohmann::json merged(std::initializer_list<const nlohmann::json*> layers) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto* l : layers)
        if (l && l->is_object()) out.merge_patch(*l);
    return out;
}

Expected<Fleet> read_fleet(const nlohmann::json& j, const std::string& path) {
    ObjectReader r(j, path, code);
    Fleet f;
    f.name = r.str("name");
    if (r.ok() && !is_valid_segment(f.name)) r.fail("name", "\"" + f.name + "\" is not a valid fleet name");
    f.channel = r.opt_str("channel").value_or(f.channel);
    if (const auto* sel = r.object("select", false)) {
        ObjectReader sr(*sel, r.path_of("select"), code);
        f.select_devices = sr.str_list("devices", false);
        f.select_labels = sr.str_map("labels");
        sr.reject_unknown();
        r.adopt(sr.error());
    }
    if (const auto* d = r.object("defaults", false)) f.defaults = *d;
    const auto* waves = r.raw("waves");
    if (r.ok() && (!waves || !waves->is_array() || waves->empty())) r.fail("waves", "expected a non-empty list of waves");
    std::set<std::string> names;
    for (std::size_t i = 0; r.ok() && i < waves->size(); ++i) {
        const auto wpath = path + ".waves[" + std::to_string(i) + "]";
        ObjectReader wr((*waves)[i], wpath, code);
        WaveDef w;
        w.name = wr.str("name");
        if (wr.ok() && !is_valid_segment(w.name)) wr.fail("name", "\"" + w.name + "\" is not a valid wave name");
        if (wr.ok() && !names.insert(w.name).second) wr.fail("name", "\"" + w.name + "\" appears twice");
        w.devices = wr.str_list("devices", false);
        w.labels = wr.str_map("labels");
        w.percent = wr.opt_number("percent");
        if (w.percent && (*w.percent <= 0 || *w.percent > 100)) wr.fail("percent", "expected a percentage above 0, at most 100");
        const int selectors = !w.devices.empty() + !w.labels.empty() + w.percent.has_value();
        if (wr.ok() && selectors > 1) wr.fail("name", "give at most one of devices, labels or percent");
        if (wr.ok() && selectors == 0 && i + 1 < waves->size())
            wr.fail("name", "only the last wave may have no selector (devices, labels or percent)");
        for (const char* k : policy_keys) (void)wr.raw(k);
        wr.reject_unknown();
        if (!wr.ok()) return std::unexpected(*wr.error());
        w.policy = policy_layer((*waves)[i]);
        f.waves.push_back(std::move(w));
    }
    if (const auto* comps = r.object("components", false)) {
        for (const auto& [name, value] : comps->items()) {
            ObjectReader cr(value, r.path_of("components") + "." + name, code);
            if (!is_valid_segment(name)) cr.fail("defaults", "\"" + name + "\" is not a valid component name");
            if (const auto* d = cr.object("defaults", false)) f.component_defaults[name] = *d;
            if (const auto* ws = cr.object("waves", false)) {
                for (const auto& [wave, layer] : ws->items()) {
                    if (!names.contains(wave)) cr.fail("waves." + wave, "is not a wave of this fleet");
                    if (!layer.is_object()) cr.fail("waves." + wave, "expected an object of policy fields, got " + brief(layer));
                    f.component_waves[name][wave] = layer;
                }
            }
            cr.reject_unknown();
            r.adopt(cr.error());
        }
    }
    r.reject_unknown();
    if (!r.ok()) return std::unexpected(*r.error());
    // Check every policy combination now, so a bad one fails at start and not mid-rollout.
    if (auto ok = check_fleet_policies(f, path, code); !ok) return std::unexpected(ok.error());
    return f;
}

}  // namespace

Expected<void> check_fleet_policies(const Fleet& f, const std::string& path, ErrorCode ec) {
    std::vector<std::string> components{""};
    for (const auto& [c, _] : f.component_defaults) components.push_back(c);
    for (const auto& [c, _] : f.component_waves) components.push_back(c);
    for (const auto& c : components) {
        for (std::size_t i = 0; i < f.waves.size(); ++i) {
            const auto* cd = f.component_defaults.contains(c) ? &f.component_defaults.at(c) : nullptr;
            const nlohmann::json* cw = nullptr;
            if (auto it = f.component_waves.find(c); it != f.component_waves.end())
                if (auto w = it->second.find(f.waves[i].name); w != it->second.end()) cw = &w->second;
            const nlohmann::json* ow = nullptr;
            if (auto it = f.override_waves.find(f.waves[i].name); it != f.override_waves.end()) ow = &it->second;
            auto p = read_policy(merged({&f.defaults, &f.waves[i].policy, cd, cw, ow}),
                                 path + (c.empty() ? "" : ".components." + c) + ".waves[" + std::to_string(i) + "]", ec);
            if (!p) return std::unexpected(p.error());
        }
    }
    return {};
}

std::uint32_t hash_bucket(const std::string& fleet, const std::string& device) {
    const auto hex = crypto::sha256_hex(fleet + "/" + device);
    return static_cast<std::uint32_t>(std::stoull(hex.substr(0, 12), nullptr, 16) % 10000);
}

bool Fleet::selects(const std::string& device, const std::map<std::string, std::string>& labels) const {
    if (!select_devices.empty() && !contains(select_devices, device)) return false;
    return labels_match(select_labels, labels);
}

std::size_t Fleet::wave_of(const std::string& device, const std::map<std::string, std::string>& labels) const {
    if (strategy == Strategy::all_at_once) return 0;
    const auto bucket = hash_bucket(name, device);
    for (std::size_t i = 0; i < waves.size(); ++i) {
        const auto& w = waves[i];
        if (!w.devices.empty() && contains(w.devices, device)) return i;
        if (!w.labels.empty() && labels_match(w.labels, labels)) return i;
        if (w.percent && bucket < static_cast<std::uint32_t>(*w.percent * 100.0 + 0.5)) return i;
    }
    return waves.size() - 1;
}

WavePolicy Fleet::policy(std::size_t index, const std::string& component) const {
    const auto* cd = component_defaults.contains(component) ? &component_defaults.at(component) : nullptr;
    const nlohmann::json* cw = nullptr;
    if (auto it = component_waves.find(component); it != component_waves.end())
        if (auto w = it->second.find(waves[index].name); w != it->second.end()) cw = &w->second;
    const nlohmann::json* ow = nullptr;
    if (auto it = override_waves.find(waves[index].name); it != override_waves.end()) ow = &it->second;
    auto p = read_policy(merged({&defaults, &waves[index].policy, cd, cw, ow}), "policy");
    return p ? *p : WavePolicy{};  // validated at load for every combination
}

nlohmann::ordered_json WavePolicy::to_json() const {
    nlohmann::ordered_json j;
    j["success_percent"] = success_percent;
    if (max_failures) j["max_failures"] = *max_failures;
    if (max_failure_percent) j["max_failure_percent"] = *max_failure_percent;
    j["min_finished"] = min_finished;
    j["soak_s"] = soak.count();
    j["device_timeout_s"] = device_timeout.count();
    j["approval"] = approval;
    if (window) j["window"] = window->to_json();
    return j;
}

const Fleet* ControllerConfig::fleet(const std::string& name) const {
    for (const auto& f : fleets)
        if (f.name == name) return &f;
    return nullptr;
}

const Fleet* ControllerConfig::fleet_of(const std::string& device, const std::map<std::string, std::string>& labels) const {
    for (const auto& f : fleets)
        if (f.selects(device, labels)) return &f;
    return nullptr;
}

nlohmann::ordered_json ControllerConfig::to_json() const {
    nlohmann::ordered_json j;
    j["mqtt"] = {{"broker", broker}, {"cafile", cafile}, {"cert", certfile}, {"key", keyfile},
                 {"client_id", client_id}, {"keepalive_s", keepalive.count()}, {"topic_prefix", topic_prefix}};
    j["trusted_keys"] = trusted_keys.string();
    j["database"] = database.string();
    j["metrics_listen"] = metrics_listen;
    j["tick_ms"] = tick.count();
    j["state_interval_ms"] = state_interval.count();
    j["summary_interval_ms"] = summary_interval.count();
    j["max_payload"] = max_payload;
    j["max_components_per_device"] = max_components_per_device;
    auto& fl = j["fleets"] = nlohmann::ordered_json::array();
    for (const auto& f : fleets) {
        nlohmann::ordered_json fj;
        fj["name"] = f.name;
        fj["channel"] = f.channel;
        fj["select"] = {{"devices", f.select_devices}, {"labels", f.select_labels}};
        auto& ws = fj["waves"] = nlohmann::ordered_json::array();
        for (std::size_t i = 0; i < f.waves.size(); ++i) {
            const auto& w = f.waves[i];
            nlohmann::ordered_json wj;
            wj["name"] = w.name;
            if (!w.devices.empty()) wj["devices"] = w.devices;
            if (!w.labels.empty()) wj["labels"] = w.labels;
            if (w.percent) wj["percent"] = *w.percent;
            wj["policy"] = f.policy(i, "").to_json();
            ws.push_back(wj);
        }
        for (const auto& [c, _] : f.component_defaults) fj["components"][c]["defaults"] = f.component_defaults.at(c);
        for (const auto& [c, m] : f.component_waves) fj["components"][c]["waves"] = m;
        fl.push_back(fj);
    }
    j["log"] = {{"format", log_format}, {"level", log_level}};
    return j;
}

Expected<ControllerConfig> parse_controller_config(const nlohmann::json& json) {
    ObjectReader r(json, "controller", code);
    ControllerConfig c;
    if (const auto* m = r.object("mqtt", true)) {
        ObjectReader mr(*m, "controller.mqtt", code);
        c.broker = mr.str("broker");
        c.cafile = mr.opt_str("cafile").value_or("");
        c.certfile = mr.opt_str("cert").value_or("");
        c.keyfile = mr.opt_str("key").value_or("");
        c.client_id = mr.opt_str("client_id").value_or(c.client_id);
        if (auto k = mr.opt_u64("keepalive_s")) c.keepalive = std::chrono::seconds(static_cast<std::int64_t>(*k));
        c.topic_prefix = mr.opt_str("topic_prefix").value_or(c.topic_prefix);
        mr.reject_unknown();
        r.adopt(mr.error());
    }
    c.trusted_keys = r.str("trusted_keys");
    c.database = r.opt_str("database").value_or(c.database.string());
    c.metrics_listen = r.opt_str("metrics_listen").value_or("");
    if (auto v = r.opt_u64("tick_ms")) c.tick = std::chrono::milliseconds(std::max<std::uint64_t>(*v, 10));
    if (auto v = r.opt_u64("state_interval_ms")) c.state_interval = std::chrono::milliseconds(static_cast<std::int64_t>(*v));
    if (auto v = r.opt_u64("summary_interval_ms"))
        c.summary_interval = std::chrono::milliseconds(static_cast<std::int64_t>(std::min<std::uint64_t>(*v, 3'600'000)));
    if (auto v = r.opt_u64("max_payload")) c.max_payload = *v;
    if (auto v = r.opt_u64("max_components_per_device")) c.max_components_per_device = std::max<std::uint64_t>(*v, 1);
    const auto* fleets = r.raw("fleets");
    if (r.ok() && (!fleets || !fleets->is_array() || fleets->empty())) r.fail("fleets", "expected a non-empty list of fleets");
    std::set<std::string> names;
    for (std::size_t i = 0; r.ok() && i < fleets->size(); ++i) {
        auto f = read_fleet((*fleets)[i], "controller.fleets[" + std::to_string(i) + "]");
        if (!f) return std::unexpected(f.error());
        if (!names.insert(f->name).second) r.fail("fleets", "fleet \"" + f->name + "\" appears twice");
        c.fleets.push_back(std::move(*f));
    }
    if (const auto* l = r.object("log", false)) {
        ObjectReader lr(*l, "controller.log", code);
        c.log_format = lr.opt_str("format").value_or(c.log_format);
        c.log_level = lr.opt_str("level").value_or(c.log_level);
        lr.reject_unknown();
        r.adopt(lr.error());
    }
    r.reject_unknown();
    if (!r.ok()) return std::unexpected(*r.error());
    return c;
}

}  // namespace ota::controller
