#include "ota/topics.hpp"

#include <vector>

namespace ota {

bool is_valid_segment(std::string_view name) noexcept {
    if (name.empty() || name.size() > 64) return false;
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return name != "." && name != "..";
}

Expected<void> check_segment(std::string_view what, std::string_view name) {
    if (is_valid_segment(name)) return {};
    return fail(ErrorCode::manifest_invalid,
                std::string(what) + " '" + std::string(name) +
                    "' is not a valid name: use 1-64 characters of letters, digits, '.', '_' and '-'");
}

Topics::Topics(std::string prefix) : prefix_(std::move(prefix)) {
    while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
}

namespace {
std::string join(std::initializer_list<std::string_view> parts) {
    std::string out;
    for (auto p : parts) {
        if (!out.empty()) out += '/';
        out += p;
    }
    return out;
}
}  // namespace

std::string Topics::release(std::string_view component, std::string_view channel) const {
    return join({prefix_, "releases", component, channel});
}
std::string Topics::releases_filter() const { return join({prefix_, "releases", "+", "+"}); }
std::string Topics::keyset() const { return join({prefix_, "keyset"}); }
std::string Topics::summary() const { return join({prefix_, "summary"}); }
std::string Topics::fleet_policy(std::string_view fleet) const { return join({prefix_, "fleets", fleet, "policy"}); }

std::string Topics::wave(std::string_view fleet, std::string_view w, std::string_view component) const {
    return join({prefix_, "fleets", fleet, "waves", w, component});
}
std::string Topics::waves_filter(std::string_view fleet, std::string_view w) const {
    return join({prefix_, "fleets", fleet, "waves", w, "+"});
}
std::string Topics::assignment(std::string_view device) const {
    return join({prefix_, "devices", device, "assignment"});
}
std::string Topics::cmd(std::string_view device) const { return join({prefix_, "devices", device, "cmd"}); }
std::string Topics::status(std::string_view device, std::string_view component) const {
    return join({prefix_, "devices", device, "status", component});
}
std::string Topics::status_filter() const { return join({prefix_, "devices", "+", "status", "+"}); }
std::string Topics::inventory(std::string_view device) const {
    return join({prefix_, "devices", device, "inventory"});
}
std::string Topics::online(std::string_view device) const { return join({prefix_, "devices", device, "online"}); }
std::string Topics::rollout(std::string_view id) const { return join({prefix_, "rollouts", id}); }
std::string Topics::alert(std::string_view id) const { return join({prefix_, "alerts", id}); }
std::string Topics::control_request(std::string_view user) const {
    return join({prefix_, "control", "request", user});
}
std::string Topics::control_request_filter() const { return join({prefix_, "control", "request", "+"}); }
std::string Topics::control_query(std::string_view user) const { return join({prefix_, "control", "query", user}); }
std::string Topics::control_query_filter() const { return join({prefix_, "control", "query", "+"}); }
std::string Topics::control_reply(std::string_view client) const {
    return join({prefix_, "control", "reply", client});
}

std::optional<Topics::Parsed> Topics::parse(std::string_view topic) const {
    if (topic.size() <= prefix_.size() + 1 || topic.substr(0, prefix_.size()) != prefix_ ||
        topic[prefix_.size()] != '/')
        return std::nullopt;
    std::vector<std::string> s;
    std::string_view rest = topic.substr(prefix_.size() + 1);
    while (true) {
        const auto pos = rest.find('/');
        s.emplace_back(rest.substr(0, pos));
        if (pos == std::string_view::npos) break;
        rest.remove_prefix(pos + 1);
    }
    for (const auto& seg : s)
        if (seg.empty()) return std::nullopt;
    const auto n = s.size();
    if (s[0] == "releases" && n == 3) return Parsed{Kind::release, s[1], s[2], {}};
    if (s[0] == "keyset" && n == 1) return Parsed{Kind::keyset, {}, {}, {}};
    if (s[0] == "summary" && n == 1) return Parsed{Kind::summary, {}, {}, {}};
    if (s[0] == "fleets" && n == 5 && s[2] == "waves") return Parsed{Kind::wave, s[1], s[3], s[4]};
    if (s[0] == "devices" && n == 3) {
        if (s[2] == "assignment") return Parsed{Kind::assignment, s[1], {}, {}};
        if (s[2] == "cmd") return Parsed{Kind::cmd, s[1], {}, {}};
        if (s[2] == "inventory") return Parsed{Kind::inventory, s[1], {}, {}};
        if (s[2] == "online") return Parsed{Kind::online, s[1], {}, {}};
    }
    if (s[0] == "devices" && n == 4 && s[2] == "status") return Parsed{Kind::status, s[1], s[3], {}};
    if (s[0] == "rollouts" && n == 2) return Parsed{Kind::rollout, s[1], {}, {}};
    if (s[0] == "alerts" && n == 2) return Parsed{Kind::alert, s[1], {}, {}};
    if (s[0] == "control" && n == 3 && s[1] == "request") return Parsed{Kind::control_request, s[2], {}, {}};
    if (s[0] == "control" && n == 3 && s[1] == "query") return Parsed{Kind::control_query, s[2], {}, {}};
    if (s[0] == "control" && n == 3 && s[1] == "reply") return Parsed{Kind::control_reply, s[2], {}, {}};
    return std::nullopt;
}

}  // namespace ota
