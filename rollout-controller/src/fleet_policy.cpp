#include "fleet_policy.hpp"

#include <algorithm>

#include "ota/time.hpp"

namespace ota::controller {
namespace {

using ojson = nlohmann::ordered_json;

std::string iso(TimePoint t) { return format_utc(std::chrono::time_point_cast<std::chrono::seconds>(t)); }

ojson provenance(const OverrideRow& o) { return ojson{{"set_by", o.actor}, {"set_at", iso(o.ts)}}; }

std::string join(const std::vector<std::string>& v, const char* sep) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
    return out;
}

// What selects a wave's devices, in a few words.
std::string selector_summary(const Fleet& f, std::size_t i) {
    const auto& w = f.waves[i];
    if (f.strategy == Strategy::all_at_once) return "every device of the fleet";
    if (!w.devices.empty()) return "devices " + join(w.devices, ",");
    if (!w.labels.empty()) {
        std::vector<std::string> kv;
        for (const auto& [k, v] : w.labels) kv.push_back(k + "=" + v);
        return "labels " + join(kv, ",");
    }
    if (w.percent) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%g%% of the fleet (cumulative)", *w.percent);
        return buf;
    }
    return "the rest of the fleet";
}

}  // namespace

Strategy FleetOverrides::strategy() const {
    auto it = rows.find("strategy");
    if (it == rows.end() || !it->second.value.is_object()) return Strategy::staggered;
    const auto s = it->second.value.value("strategy", "");
    return parse_strategy(s).value_or(Strategy::staggered);
}

std::optional<std::vector<std::string>> FleetOverrides::approval(Strategy shape) const {
    auto it = rows.find("strategy");
    if (it == rows.end() || !it->second.value.is_object() || strategy() != shape) return std::nullopt;
    const auto a = it->second.value.find("approval");
    if (a == it->second.value.end() || !a->is_array()) return std::nullopt;
    std::vector<std::string> out;
    for (const auto& n : *a)
        if (n.is_string()) out.push_back(n.get<std::string>());
    return out;
}

Fleet effective_fleet(const Fleet& file, const FleetOverrides* o, Strategy shape) {
    Fleet f = file;
    f.strategy = shape;
    if (shape == Strategy::all_at_once) {
        WaveDef all;
        all.name = std::string(all_wave);
        all.policy = nlohmann::json::object();
        f.waves = {all};
        for (auto& [c, waves] : f.component_waves) std::erase_if(waves, [](const auto& kv) { return kv.first != all_wave; });
    }
    if (!o) return f;
    for (const auto& w : f.waves) {
        if (auto it = o->rows.find(window_key(w.name)); it != o->rows.end()) {
            auto& layer = f.override_waves[w.name];
            layer["window"] = it->second.value;  // null: no window (merge_patch removes the key)
        }
    }
    if (auto approval = o->approval(shape)) {
        for (const auto& w : f.waves)
            f.override_waves[w.name]["approval"] = std::find(approval->begin(), approval->end(), w.name) != approval->end();
    }
    return f;
}

ojson policy_document(const Fleet& file, const FleetOverrides* o) {
    const auto strategy = o ? o->strategy() : Strategy::staggered;
    const auto f = effective_fleet(file, o, strategy);
    ojson doc;
    doc["fleet"] = f.name;
    doc["channel"] = f.channel;
    doc["strategy"] = to_string(strategy);
    const OverrideRow* strategy_row = nullptr;
    if (o)
        if (auto it = o->rows.find("strategy"); it != o->rows.end()) strategy_row = &it->second;
    doc["strategy_set"] = strategy_row ? provenance(*strategy_row) : ojson(nullptr);
    auto& waves = doc["waves"] = ojson::array();
    for (std::size_t i = 0; i < f.waves.size(); ++i) {
        const auto& name = f.waves[i].name;
        ojson w;
        w["name"] = name;
        w["select"] = selector_summary(f, i);
        w["policy"] = f.policy(i, "").to_json();
        ojson ov = ojson::object();
        if (o) {
            if (auto it = o->rows.find(window_key(name)); it != o->rows.end()) {
                ov["window"] = provenance(it->second);
                ov["window"]["value"] = it->second.value;
            }
            if (strategy_row && o->approval(strategy)) ov["approval"] = provenance(*strategy_row);
        }
        w["overrides"] = ov;
        waves.push_back(std::move(w));
    }
    // Components with their own layers: their effective policy per wave.
    auto& comps = doc["components"] = ojson::object();
    std::vector<std::string> names;
    for (const auto& [c, _] : f.component_defaults) names.push_back(c);
    for (const auto& [c, _] : f.component_waves) names.push_back(c);
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    for (const auto& c : names) {
        auto& list = comps[c] = ojson::array();
        for (std::size_t i = 0; i < f.waves.size(); ++i)
            list.push_back(ojson{{"wave", f.waves[i].name}, {"policy", f.policy(i, c).to_json()}});
    }
    // Every override, also those the current waves do not use (a wave the file no longer has,
    // or windows of the other strategy's waves).
    auto& all = doc["overrides"] = ojson::array();
    if (o) {
        for (const auto& [key, row] : o->rows) {
            bool used = key == "strategy";
            for (const auto& w : f.waves) used = used || key == window_key(w.name);
            ojson e{{"key", key}, {"value", row.value}, {"set_by", row.actor}, {"set_at", iso(row.ts)}, {"in_use", used}};
            all.push_back(std::move(e));
        }
    }
    return doc;
}

}  // namespace ota::controller
