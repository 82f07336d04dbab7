#include "agent_config.hpp"

#include <sys/utsname.h>

#include <algorithm>
#include <cstdio>

#include "ota/json.hpp"
#include "ota/topics.hpp"

namespace ota::agent {
namespace {

namespace fs = std::filesystem;

constexpr auto code = ErrorCode::config_invalid;

std::chrono::seconds seconds_or(ObjectReader& r, std::string_view key, std::chrono::seconds fallback) {
    const auto v = r.opt_u64(key);
    return v ? std::chrono::seconds(static_cast<std::int64_t>(*v)) : fallback;
}

std::optional<HealthCheck> read_health(ObjectReader& parent) {
    const auto* obj = parent.object("health", false);
    if (!obj) return std::nullopt;
    ObjectReader r(*obj, parent.path_of("health"), code);
    HealthCheck h;
    h.command = r.str_list("command", false);
    h.url = r.opt_str("url").value_or("");
    h.cafile = r.opt_str("cafile").value_or("");
    if (auto t = r.opt_u64("timeout_ms")) h.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(*t));
    if (auto n = r.opt_u64("retries")) h.retries = static_cast<int>(*n);
    if (auto i = r.opt_u64("interval_ms")) h.interval = std::chrono::milliseconds(static_cast<std::int64_t>(*i));
    r.reject_unknown();
    if (r.ok() && h.command.empty() == h.url.empty()) r.fail("command", "give exactly one of command or url");
    if (!r.ok()) {
        parent.adopt(r.error());
        return std::nullopt;
    }
    return h;
}

VersionSource read_source(ObjectReader& parent) {
    VersionSource s;
    const auto* obj = parent.object("version_source", false);
    if (!obj) return s;
    ObjectReader r(*obj, parent.path_of("version_source"), code);
    const auto type = r.str("type");
    if (type == "files") {
        s.type = VersionSource::Type::files;
        s.dir = r.str("dir");
        s.pattern = r.str("pattern");
    } else if (type == "version_file") {
        s.type = VersionSource::Type::version_file;
        s.path = r.str("path");
        s.field = r.opt_str("field").value_or("version");
    } else if (type == "agent") {
        s.type = VersionSource::Type::agent;
    } else if (type == "docker") {
        s.type = VersionSource::Type::docker;
        s.repository = r.str("repository");
    } else if (r.ok()) {
        r.fail("type", "\"" + type + "\" is not files, version_file, docker or agent");
    }
    r.reject_unknown();
    parent.adopt(r.error());
    return s;
}

// components.<name>.type and .target: what a release of the component may install as, and where.
void read_install_rule(ObjectReader& r, ComponentSettings& s) {
    if (auto t = r.opt_str("type")) {
        if (auto type = parse_install_type(*t)) s.type = *type;
        else r.fail("type", "\"" + *t + "\" is not file, archive, binary, docker-image or self");
    }
    const auto target = r.opt_str("target");
    if (!target || !r.ok()) return;
    s.target = *target;
    const bool takes_target = s.type == InstallType::file || s.type == InstallType::archive || s.type == InstallType::binary;
    if (!s.type) r.fail("target", "needs the component's type (file, archive or binary) beside it");
    else if (!takes_target)
        r.fail("target", std::string("a ") + std::string(to_string(*s.type)) + " component takes no target");
    else if (!s.target.is_absolute()) r.fail("target", "must be an absolute path, got \"" + *target + "\"");
    else if (std::any_of(target->begin(), target->end(), [](unsigned char ch) { return ch < 0x20 || ch == 0x7f; }))
        r.fail("target", "must not contain control characters");
    else if (std::any_of(s.target.begin(), s.target.end(), [](const fs::path& part) { return part == ".."; }))
        r.fail("target", "must not contain '..'");
    else if (s.type == InstallType::binary && !s.target.has_filename())
        r.fail("target", "a binary's target is the binary's path, got the directory \"" + *target + "\"");
}

// "/a/b/" -> "/a/b"; "/a/./b" -> "/a/b".
fs::path normal_dir(const fs::path& p) {
    auto n = p.lexically_normal();
    if (!n.has_filename() && n != n.root_path()) n = n.parent_path();
    return n;
}

// Whether `inner` is `outer` or below it, component by component.
bool is_within(const fs::path& inner, const fs::path& outer) {
    auto [o, i] = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
    return o == outer.end();
}

// A value for a systemd unit setting: double-quoted, with \ and " escaped and % doubled.
std::string unit_quoted(const std::string& value) {
    std::string out = "\"";
    for (char ch : value) {
        if (ch == '\\' || ch == '"') out += '\\';
        if (ch == '%') out += '%';
        out += ch;
    }
    return out + "\"";
}

// "https://HOST[:PORT]/" with an optional path that ends in "/": a prefix that cannot match a
// longer host name ("https://cdn.example.com" would match "https://cdn.example.com.evil/").
bool is_url_prefix(std::string_view url) {
    constexpr std::string_view scheme = "https://";
    if (!url.starts_with(scheme) || !url.ends_with('/') || url.size() > 2048) return false;
    const auto rest = url.substr(scheme.size());
    const auto slash = rest.find('/');
    if (slash == 0) return false;
    const auto authority = rest.substr(0, slash);
    for (const char ch : url)
        if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f || ch == '?' || ch == '#' || ch == '\\') return false;
    return authority.find('@') == std::string_view::npos;
}

}  // namespace

std::optional<std::string> cache_url(const AgentConfig& config, std::string_view url) {
    for (const auto& [origin, cache] : config.download_caches)
        if (url.starts_with(origin)) return cache + std::string(url.substr(origin.size()));
    return std::nullopt;
}

std::vector<fs::path> AgentConfig::write_paths() const {
    std::vector<fs::path> paths{normal_dir(state_dir)};
    if (!binary_path.empty()) paths.push_back(normal_dir(binary_path.parent_path()));
    for (const auto& [name, s] : components) {
        if (s.target.empty()) continue;
        auto t = install_root.empty() ? s.target : install_root / s.target.relative_path();
        paths.push_back(normal_dir(s.type == InstallType::binary ? t.parent_path() : t));
    }
    // A relative state_dir or binary_path (tests, by hand) names no place a unit could open; one
    // with control characters cannot be written into a unit file.
    std::erase_if(paths, [](const fs::path& p) {
        const auto& s = p.native();
        return !p.is_absolute() || std::any_of(s.begin(), s.end(), [](unsigned char ch) { return ch < 0x20 || ch == 0x7f; });
    });
    std::sort(paths.begin(), paths.end());
    paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
    std::vector<fs::path> outer;
    for (const auto& p : paths)  // sorted: a directory comes before what is inside it
        if (outer.empty() || !is_within(p, outer.back())) outer.push_back(p);
    return outer;
}

std::string sandbox_dropin(const AgentConfig& config, const fs::path& config_path) {
    std::string from = config_path.string();
    std::replace_if(from.begin(), from.end(), [](unsigned char ch) { return ch < 0x20 || ch == 0x7f; }, '?');
    std::string out = "# Generated from " + from +
                      " by ota-agent-generator (docs/systemd.md, \"Install targets\"):\n"
                      "# the directories the agent's config says it writes. Do not edit; change the config, then\n"
                      "# systemctl daemon-reload && systemctl restart ota-agent\n[Service]\n";
    for (const auto& p : config.write_paths()) out += "ReadWritePaths=" + unit_quoted("-" + p.string()) + "\n";
    return out;
}

Expected<void> check_install_allowed(const ComponentSettings& settings, const Manifest& m) {
    const auto& name = settings.install.name;
    if (settings.type && *settings.type != m.install.type)
        return fail(ErrorCode::target_not_allowed, "the release installs " + name + " as " +
                                                       std::string(to_string(m.install.type)) + "; this device allows only " +
                                                       std::string(to_string(*settings.type)) + " (components." + name + ".type)");
    if (!settings.target.empty() && normal_dir(m.install.target) != normal_dir(settings.target))
        return fail(ErrorCode::target_not_allowed, "the release installs " + name + " to " + m.install.target +
                                                       "; this device allows only " + settings.target.string() +
                                                       " (components." + name + ".target)");
    return {};
}

std::string detect_platform() {
    struct utsname u {};
    ::uname(&u);
    const std::string m = u.machine;
    if (m == "x86_64") return "linux/amd64";
    if (m == "aarch64" || m == "arm64") return "linux/arm64";
    if (m.starts_with("armv7")) return "linux/arm/v7";
    return "linux/" + m;
}

Expected<AgentConfig> parse_agent_config(const nlohmann::json& json) {
    ObjectReader r(json, "agent", code);
    AgentConfig c;
    c.device_id = r.str("device_id");
    if (r.ok() && !is_valid_segment(c.device_id))
        r.fail("device_id", "\"" + c.device_id + "\" is not a valid name (1-64 of A-Z a-z 0-9 . _ -)");
    c.fleet_hint = r.opt_str("fleet").value_or("");
    c.platform = r.opt_str("platform").value_or(detect_platform());
    if (const auto* labels = r.object("labels", false)) {
        for (const auto& [k, v] : labels->items()) {
            if (!v.is_string()) r.fail("labels." + k, "expected a string");
            else c.labels[k] = v.get<std::string>();
        }
    }
    if (const auto* m = r.object("mqtt", true)) {
        ObjectReader mr(*m, "agent.mqtt", code);
        c.broker = mr.str("broker");
        c.cafile = mr.str("cafile");
        c.certfile = mr.str("cert");
        c.keyfile = mr.str("key");
        c.keepalive = seconds_or(mr, "keepalive_s", c.keepalive);
        c.session_expiry = seconds_or(mr, "session_expiry_s", c.session_expiry);
        c.topic_prefix = mr.opt_str("topic_prefix").value_or(c.topic_prefix);
        mr.reject_unknown();
        if (!mr.ok()) return std::unexpected(*mr.error());
    }
    c.trusted_keys = r.str("trusted_keys");
    c.root_key = r.opt_str("root_key").value_or("");
    c.state_dir = r.opt_str("state_dir").value_or(c.state_dir.string());
    c.binary_path = r.opt_str("binary_path").value_or("");
    c.install_root = r.opt_str("install_root").value_or("");
    if (r.ok() && !c.install_root.empty() && !c.install_root.is_absolute())
        r.fail("install_root", "must be an absolute path, got \"" + c.install_root.string() + "\"");
    if (const auto* d = r.object("download", false)) {
        ObjectReader dr(*d, "agent.download", code);
        c.download_cafile = dr.opt_str("cafile").value_or("");
        c.low_speed_limit = dr.opt_u64("low_speed_limit").value_or(c.low_speed_limit);
        c.low_speed_time = seconds_or(dr, "low_speed_time_s", c.low_speed_time);
        c.download_stall_timeout = seconds_or(dr, "stall_timeout_s", c.download_stall_timeout);
        c.download_deadline = seconds_or(dr, "deadline_s", c.download_deadline);
        c.download_total_deadline = seconds_or(dr, "total_deadline_s", c.download_total_deadline);
        if (auto a = dr.opt_u64("attempts")) c.download_attempts = static_cast<int>(*a);
        c.download_retry_window = seconds_or(dr, "retry_window_s", c.download_retry_window);
        for (const auto& [origin, cache] : dr.str_map("caches")) {
            const auto problem = [&](const std::string& what) { dr.fail("caches", what); };
            if (!is_url_prefix(origin)) problem("origin \"" + origin + "\" must be https://HOST[:PORT]/[PATH/] ending in /");
            else if (!is_url_prefix(cache)) problem("cache \"" + cache + "\" (for " + origin + ") must be https://HOST[:PORT]/[PATH/] ending in /");
            else c.download_caches.emplace_back(origin, cache);
        }
        // The longest origin prefix first: it is the most specific.
        std::stable_sort(c.download_caches.begin(), c.download_caches.end(),
                         [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
        c.cache_fallback = dr.boolean("cache_fallback", c.cache_fallback);
        dr.reject_unknown();
        if (!dr.ok()) return std::unexpected(*dr.error());
    }
    if (const auto* st = r.object("status", false)) {
        ObjectReader sr(*st, "agent.status", code);
        c.progress_interval = seconds_or(sr, "progress_interval_s", c.progress_interval);
        if (auto p = sr.opt_u64("progress_step_percent")) {
            if (*p < 1 || *p > 100) sr.fail("progress_step_percent", "must be 1..100");
            else c.progress_step_percent = static_cast<int>(*p);
        }
        sr.reject_unknown();
        if (!sr.ok()) return std::unexpected(*sr.error());
    }
    c.auto_update = r.boolean("auto_update", true);
    c.update_window = read_window(r, "update_window");
    c.inventory_interval = seconds_or(r, "inventory_interval_s", c.inventory_interval);
    if (auto n = r.opt_u64("max_step_restarts")) c.max_step_restarts = static_cast<int>(*n);
    c.self_update_deadline = seconds_or(r, "self_update_deadline_s", c.self_update_deadline);
    if (auto n = r.opt_u64("self_update_max_starts")) c.self_update_max_starts = static_cast<int>(*n);
    if (const auto* comps = r.object("components", false)) {
        for (const auto& [name, value] : comps->items()) {
            if (!is_valid_segment(name)) {
                r.fail("components." + name, "is not a valid component name");
                break;
            }
            ObjectReader cr(value, "agent.components." + name, code);
            ComponentSettings s;
            s.install.name = name;
            s.install.compose_file = cr.opt_str("compose_file").value_or("");
            s.install.compose_command = cr.opt_str("compose_command").value_or(s.install.compose_command);
            s.install.docker_command = cr.opt_str("docker_command").value_or(s.install.docker_command);
            s.install.decrypt_keys_dir = cr.opt_str("decrypt_keys_dir").value_or("");
            if (auto k = cr.opt_u64("keep_previous")) s.install.keep_previous = static_cast<int>(*k);
            s.install.command_timeout = seconds_or(cr, "command_timeout_s", std::chrono::duration_cast<std::chrono::seconds>(
                                                                                s.install.command_timeout));
            read_install_rule(cr, s);
            s.source = read_source(cr);
            s.health = read_health(cr);
            cr.reject_unknown();
            if (!cr.ok()) return std::unexpected(*cr.error());
            c.components.emplace(name, std::move(s));
        }
    }
    if (const auto* l = r.object("log", false)) {
        ObjectReader lr(*l, "agent.log", code);
        c.log_format = lr.opt_str("format").value_or(c.log_format);
        c.log_level = lr.opt_str("level").value_or(c.log_level);
        lr.reject_unknown();
        if (!lr.ok()) return std::unexpected(*lr.error());
    }
    r.reject_unknown();
    if (!r.ok()) return std::unexpected(*r.error());
    return c;
}

nlohmann::ordered_json AgentConfig::to_json() const {
    nlohmann::ordered_json j;
    j["device_id"] = device_id;
    if (!fleet_hint.empty()) j["fleet"] = fleet_hint;
    j["platform"] = platform;
    j["labels"] = labels;
    j["mqtt"] = {{"broker", broker}, {"cafile", cafile}, {"cert", certfile}, {"key", keyfile},
                 {"keepalive_s", keepalive.count()}, {"session_expiry_s", session_expiry.count()},
                 {"topic_prefix", topic_prefix}};
    j["trusted_keys"] = trusted_keys.string();
    if (!root_key.empty()) j["root_key"] = root_key.string();
    j["state_dir"] = state_dir.string();
    if (!binary_path.empty()) j["binary_path"] = binary_path.string();
    if (!install_root.empty()) j["install_root"] = install_root.string();
    j["download"] = {{"cafile", download_cafile}, {"low_speed_limit", low_speed_limit},
                     {"low_speed_time_s", low_speed_time.count()}, {"stall_timeout_s", download_stall_timeout.count()},
                     {"deadline_s", download_deadline.count()}, {"total_deadline_s", download_total_deadline.count()},
                     {"attempts", download_attempts}, {"retry_window_s", download_retry_window.count()}};
    if (!download_caches.empty()) {
        auto& caches = j["download"]["caches"] = nlohmann::ordered_json::object();
        for (const auto& [origin, cache] : download_caches) caches[origin] = cache;
        j["download"]["cache_fallback"] = cache_fallback;
    }
    j["status"] = {{"progress_interval_s", progress_interval.count()}, {"progress_step_percent", progress_step_percent}};
    j["auto_update"] = auto_update;
    if (update_window) j["update_window"] = update_window->to_json();
    j["inventory_interval_s"] = inventory_interval.count();
    j["max_step_restarts"] = max_step_restarts;
    j["self_update_deadline_s"] = self_update_deadline.count();
    j["self_update_max_starts"] = self_update_max_starts;
    auto& comps = j["components"] = nlohmann::ordered_json::object();
    for (const auto& [name, s] : components) {
        nlohmann::ordered_json c;
        if (s.type) c["type"] = std::string(to_string(*s.type));
        if (!s.target.empty()) c["target"] = s.target.string();
        if (!s.install.compose_file.empty()) c["compose_file"] = s.install.compose_file.string();
        c["compose_command"] = s.install.compose_command;
        c["docker_command"] = s.install.docker_command;
        if (!s.install.decrypt_keys_dir.empty()) c["decrypt_keys_dir"] = s.install.decrypt_keys_dir.string();
        c["keep_previous"] = s.install.keep_previous;
        c["command_timeout_s"] = std::chrono::duration_cast<std::chrono::seconds>(s.install.command_timeout).count();
        switch (s.source.type) {
            case VersionSource::Type::files:
                c["version_source"] = {{"type", "files"}, {"dir", s.source.dir.string()}, {"pattern", s.source.pattern}};
                break;
            case VersionSource::Type::version_file:
                c["version_source"] = {{"type", "version_file"}, {"path", s.source.path.string()}, {"field", s.source.field}};
                break;
            case VersionSource::Type::agent: c["version_source"] = {{"type", "agent"}}; break;
            case VersionSource::Type::docker:
                c["version_source"] = {{"type", "docker"}, {"repository", s.source.repository}};
                break;
            case VersionSource::Type::none: break;
        }
        if (s.health) {
            nlohmann::ordered_json h;
            if (!s.health->command.empty()) h["command"] = s.health->command;
            if (!s.health->url.empty()) h["url"] = s.health->url;
            h["timeout_ms"] = s.health->timeout.count();
            h["retries"] = s.health->retries;
            h["interval_ms"] = s.health->interval.count();
            c["health"] = h;
        }
        comps[name] = c;
    }
    j["log"] = {{"format", log_format}, {"level", log_level}};
    return j;
}

}  // namespace ota::agent
