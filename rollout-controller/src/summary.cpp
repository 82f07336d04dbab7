#include "summary.hpp"

#include <set>

namespace ota::controller {

StageClass classify_stage(std::string_view stage) noexcept {
    for (const auto* s : {"downloading", "verifying", "installing", "health_checking"})
        if (stage == s) return StageClass::in_progress;
    for (const auto* s : {"failed", "rolled_back", "rejected"})
        if (stage == s) return StageClass::failed;
    return StageClass::other;
}

nlohmann::ordered_json StateCounts::to_json() const {
    nlohmann::ordered_json j;
    for (const auto s : device_states) j[std::string(to_string(s))] = (*this)[s];
    j["total"] = total;
    return j;
}

void Summary::release(const std::string& component, const std::string& channel, const std::string& version,
                      VersionScheme scheme) {
    auto& r = releases_[{component, channel}];
    if (r.version == version && r.scheme == scheme) return;
    r = {version, scheme};
    dirty_ = true;
}

void Summary::stage(const std::string& device, const std::string& component, std::string_view stage) {
    const auto c = classify_stage(stage);
    auto [it, added] = stages_.try_emplace({device, component}, c);
    if (!added && it->second == c) return;
    it->second = c;
    dirty_ = true;
}

// Every target a document needs, with its version parsed once: per (channel, component) for the
// fleets' channels, and ("", component) for the newest release of the component over all channels.
Summary::Targets Summary::targets(const std::map<std::string, std::string>& fleet_channels) const {
    Targets out;
    for (const auto& [key, rel] : releases_) {
        const auto& [component, channel] = key;
        auto& newest = out[{"", component}];
        if (!newest.release) {
            newest.release = &rel;
            continue;
        }
        if (newest.release->scheme != rel.scheme) continue;  // versions of two schemes do not order
        auto a = Version::parse(rel.version, rel.scheme);
        auto b = Version::parse(newest.release->version, rel.scheme);
        if (!a || !b) continue;
        if (auto c = a->compare(*b); c && *c == std::strong_ordering::greater) newest.release = &rel;
    }
    std::set<std::string> channels;
    for (const auto& [fleet, channel] : fleet_channels) channels.insert(channel);
    for (const auto& [key, rel] : releases_)
        if (channels.contains(key.second)) out[{key.second, key.first}].release = &rel;
    for (auto& [key, t] : out)
        if (auto v = Version::parse(t.release->version, t.release->scheme)) t.version = std::move(*v);
    return out;
}

// The installed version against the target: nullopt when either is missing or they do not order.
static std::optional<std::strong_ordering> compare_installed(const DeviceRow& d, const std::string& component,
                                                             const Version* target, VersionScheme scheme) {
    const auto it = d.components.find(component);
    if (!target || it == d.components.end() || !it->is_string()) return std::nullopt;
    auto v = Version::parse(it->get_ref<const std::string&>(), scheme);
    if (!v) return std::nullopt;
    auto c = v->compare(*target);
    return c ? std::optional(*c) : std::nullopt;
}

DeviceState Summary::state_of(const DeviceRow& d, const std::string& component,
                              std::optional<std::strong_ordering> cmp) const {
    const auto st = stages_.find({d.id, component});
    const auto stage = st == stages_.end() ? StageClass::other : st->second;
    if (!d.online) return DeviceState::offline;
    if (stage == StageClass::in_progress) return DeviceState::updating;
    if (cmp && *cmp != std::strong_ordering::less) return DeviceState::up_to_date;
    if (stage == StageClass::failed) return DeviceState::failed;
    if (cmp) return DeviceState::outdated;
    return DeviceState::unknown;
}

nlohmann::ordered_json Summary::document(const std::map<std::string, DeviceRow>& devices,
                                         const std::map<std::string, std::string>& fleet_channels, Timestamp at) const {
    const auto ts = targets(fleet_channels);
    struct Group {
        std::uint64_t devices{0}, needs_update{0};
        std::map<std::string, StateCounts> components;
    };
    Group all;
    std::map<std::string, Group> fleets;
    for (const auto& [fleet, channel] : fleet_channels) fleets[fleet];
    auto components_of = [this](const DeviceRow& d) {
        std::set<std::string> cs;
        for (auto it = d.components.begin(); it != d.components.end(); ++it) cs.insert(it.key());
        for (auto it = stages_.lower_bound({d.id, ""}); it != stages_.end() && it->first.first == d.id; ++it)
            cs.insert(it->first.second);
        return cs;
    };
    for (const auto& [id, d] : devices) {
        const auto fc = d.fleet.empty() ? fleet_channels.end() : fleet_channels.find(d.fleet);
        Group* fleet = fc == fleet_channels.end() ? nullptr : &fleets[d.fleet];
        bool needs = false;
        ++all.devices;
        if (fleet) ++fleet->devices;
        for (const auto& c : components_of(d)) {
            const Target* t = nullptr;
            if (fleet)
                if (auto it = ts.find({fc->second, c}); it != ts.end()) t = &it->second;
            if (!t)
                if (auto it = ts.find({"", c}); it != ts.end()) t = &it->second;
            const auto cmp = t && t->version ? compare_installed(d, c, &*t->version, t->release->scheme) : std::nullopt;
            const auto s = state_of(d, c, cmp);
            all.components[c].add(s);
            if (fleet) fleet->components[c].add(s);
            // needs an update: installed and older than the target, whatever else is going on
            needs = needs || (cmp && *cmp == std::strong_ordering::less);
        }
        if (needs) {
            ++all.needs_update;
            if (fleet) ++fleet->needs_update;
        }
    }
    // Every released component gets a row, even with no device reporting it (as on the page).
    auto group_json = [&](const Group& g) {
        nlohmann::ordered_json j;
        j["devices"] = g.devices;
        j["needs_update"] = g.needs_update;
        auto& cj = j["components"] = nlohmann::ordered_json::object();
        for (const auto& [c, counts] : g.components) cj[c] = counts.to_json();
        for (const auto& [key, t] : ts)
            if (key.first.empty() && !cj.contains(key.second)) cj[key.second] = StateCounts{}.to_json();
        return j;
    };
    nlohmann::ordered_json doc;
    doc["schema"] = 1;
    doc["at"] = format_utc(at);
    auto a = group_json(all);
    doc["devices"] = a["devices"];
    doc["needs_update"] = a["needs_update"];
    doc["components"] = std::move(a["components"]);
    auto& fj = doc["fleets"] = nlohmann::ordered_json::object();
    for (const auto& [name, g] : fleets) fj[name] = group_json(g);
    return doc;
}

}  // namespace ota::controller
