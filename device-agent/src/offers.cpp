// Message handling: the assignment, wave offers and commands (docs/agent.md, "What happens to an
// offered release"). Each message goes through dispatch(), the one guard that keeps any input
// from stopping the agent: fields are read by messages.hpp (no exceptions by construction), and
// whatever still throws is counted, logged (bounded) and the message dropped.
#include <algorithm>
#include <utility>

#include "agent_impl.hpp"
#include "messages.hpp"
#include "ota/build_info.hpp"
#include "ota/json.hpp"
#include "ota/time.hpp"
#include "ota/version.hpp"

namespace ota::agent {

void Agent::Impl::dispatch(const mqtt::Message& message) {
    try {
        const auto parsed = topics.parse(message.topic);
        if (!parsed) return;
        if (parsed->kind == Topics::Kind::assignment && parsed->a == cfg.device_id) return on_assignment(message.payload);
        if (parsed->kind == Topics::Kind::cmd && parsed->a == cfg.device_id) return on_cmd(message.payload);
        if (parsed->kind == Topics::Kind::wave) return on_wave(parsed->c, message.payload);
        if (parsed->kind == Topics::Kind::keyset && keysets) return on_keyset(message.payload);
    } catch (const std::exception& e) {
        ++dropped;
        note_bad_input("message dropped", Error{ErrorCode::internal, printable(message.topic, 200) + ": " + printable(e.what())});
    } catch (...) {
        ++dropped;
        note_bad_input("message dropped", Error{ErrorCode::internal, printable(message.topic, 200) + ": unknown exception"});
    }
}

// At most a few lines a minute per kind, however many bad messages arrive.
void Agent::Impl::note_bad_input(std::string_view kind, const Error& error) {
    std::uint64_t held = 0;
    if (!input_log.allow(kind, std::chrono::steady_clock::now().time_since_epoch(), held)) return;
    log.warn(std::string(kind), {{"error", printable(error.describe())},
                                 {"held_back", held ? std::to_string(held) : ""},
                                 {"dropped_total", std::to_string(dropped)}});
}

void Agent::Impl::reject(const std::string& component, const std::string& version, const std::string& rollout,
                         const std::string& payload, const Error& error) {
    if (error.code == ErrorCode::unknown_key || error.code == ErrorCode::keyset_expired) awaiting_keys.insert(component);
    // One report per distinct offer: QoS 1 duplicates and retained re-deliveries stay quiet.
    const auto key = "rejected/" + component;
    const auto digest = crypto::sha256_hex(payload);
    auto seen = store->get(key);
    if (seen && *seen == digest) return;
    (void)store->put(key, digest);
    // Reported once per distinct offer; logged a few times a minute at most (a flood of distinct
    // bad offers must not flood the log).
    std::uint64_t held = 0;
    if (input_log.allow("release rejected", std::chrono::steady_clock::now().time_since_epoch(), held))
        log.warn("release rejected", {{"component", component}, {"version", printable(version, 80)},
                                      {"error", printable(error.describe())}, {"held_back", held ? std::to_string(held) : ""}});
    report(component, version, rollout, Reported::rejected, std::nullopt, error);
}

void Agent::Impl::on_wave(const std::string& component, const std::string& payload) {
    offers[component] = payload;
    evaluate(component, payload);
}

// `forced`: an operator asked for this one device (cmd install): no auto-update or window check.
void Agent::Impl::evaluate(const std::string& component, const std::string& payload, bool forced) {
    const auto offer = parse_wave(payload, component);
    if (offer.error) return reject(component, "", offer.rollout, payload, *offer.error);
    const auto& rollout = offer.rollout;
    if (offer.state != "open") {
        log.info("wave not open; nothing started",
                 {{"component", component}, {"rollout", printable(rollout, 80)}, {"state", printable(offer.state, 40)}});
        return;
    }
    const auto& envelope = offer.envelope;
    const auto keys = release_keys();
    if (!keys) return reject(component, "", rollout, payload, keys.error());
    auto verified = open_envelope(envelope, *keys, now_utc(), "release for " + component);
    if (!verified) return reject(component, "", rollout, payload, verified.error());
    const auto& m = verified->manifest;
    if (m.component != component)
        return reject(component, m.version, rollout, payload,
                      {ErrorCode::manifest_invalid, "the wave topic is for " + component + " but the manifest is for " + m.component});
    const auto settings = cfg.components.find(component);
    if (settings == cfg.components.end()) {
        log.debug("release for a component this device does not manage", {{"component", component}});
        return;
    }
    if (auto j = store->journal(component); j && *j) {
        log.info("an update of this component is in progress; the offer waits", {{"component", component}});
        return;
    }
    if (!m.compatibility.platforms.empty() &&
        std::find(m.compatibility.platforms.begin(), m.compatibility.platforms.end(), cfg.platform) ==
            m.compatibility.platforms.end())
        return reject(component, m.version, rollout, payload,
                      {ErrorCode::platform_incompatible,
                       "this device is " + cfg.platform + "; the release is for " + dump_safe(json(m.compatibility.platforms))});
    if (auto allowed = check_install_allowed(settings->second, m); !allowed)
        return reject(component, m.version, rollout, payload, allowed.error());
    if (!m.compatibility.min_agent_version.empty()) {
        auto need = Version::parse(m.compatibility.min_agent_version, VersionScheme::semver);
        auto have = Version::parse(build::version, VersionScheme::semver);
        if (need && have && *is_newer(*need, *have))
            return reject(component, m.version, rollout, payload,
                          {ErrorCode::agent_too_old,
                           "the release needs agent " + m.compatibility.min_agent_version + ", this is " + build::version});
    }
    auto done = store->applied(component, m.version, m.artifact.sha256);
    if (done && *done) return;  // applied (or failed) once already: never again by itself
    if (auto installed = inventory.version(component, recorded_version(component)); installed) {
        auto offered = m.parsed_version();
        auto current = Version::parse(*installed, m.version_scheme);
        if (!current)
            return reject(component, m.version, rollout, payload,
                          {ErrorCode::version_incomparable, "installed version '" + *installed + "' is not a " +
                                                                std::string(to_string(m.version_scheme)) + " version"});
        auto cmp = offered->compare(*current);
        if (!cmp) return reject(component, m.version, rollout, payload, cmp.error());
        if (*cmp == std::strong_ordering::equal) return;  // already at this version
        if (*cmp == std::strong_ordering::less && !m.rollback)
            return reject(component, m.version, rollout, payload,
                          {ErrorCode::version_not_newer, "offered " + m.version + " is older than installed " + *installed});
    }
    if (!cfg.auto_update && !opts.force_update && !forced) {
        log.info("update available; auto-update is off", {{"component", component}, {"version", m.version}});
        return;
    }
    if (cfg.update_window && !opts.force_update && !forced && !cfg.update_window->contains(std::chrono::system_clock::now())) {
        log.info("update available; waiting for the update window", {{"component", component}, {"version", m.version}});
        waiting_for_window = true;
        return;
    }
    if (m.install.type == InstallType::self && !events_empty()) {
        deferred_self = component;  // the agent's own update goes last
        return;
    }
    start_update(component, rollout, envelope);
}

void Agent::Impl::start_update(const std::string& component, const std::string& rollout, const std::string& envelope) {
    json j;
    j["component"] = component;
    j["rollout"] = rollout;
    j["envelope"] = envelope;
    j["accepted_at"] = format_utc(now_utc());
    if (auto prev = inventory.version(component, recorded_version(component))) j["previous_version"] = *prev;
    j["stage"] = std::string(to_string(Stage::downloading));
    j["entries"] = json::object();
    if (auto w = store->put_journal(component, j); !w) {
        log.error("cannot write the journal; update not started", {{"error", w.error().message}});
        const auto parsed = parse_json(envelope, "release").value_or(json());  // kept: `manifest` points into it
        const auto* manifest = field(parsed, "manifest");
        report(component, manifest ? str_or(*manifest, "version") : std::string(), rollout, Reported::failed, std::nullopt,
               w.error().with_context("update not started: cannot write the journal"));
        return;
    }
    run_update(component);
}

void Agent::Impl::on_assignment(const std::string& payload) {
    auto a = parse_assignment(payload);
    if (!a) return note_bad_input("assignment ignored", a.error());
    assignment_seen = true;
    const auto filter = topics.waves_filter(a->fleet, a->wave);
    if (filter == wave_filter) return;
    if (!wave_filter.empty()) (void)client->unsubscribe(wave_filter);
    wave_filter = filter;
    (void)store->put("assignment", payload);
    log.info("following wave", {{"filter", filter}});
    if (auto s = client->subscribe(filter, 1); !s) log.warn("wave subscription failed", {{"error", s.error().message}});
}

void Agent::Impl::on_cmd(const std::string& payload) {
    auto c = parse_cmd(payload);
    if (!c) return note_bad_input("cmd ignored", c.error());
    const auto& component = c->component;
    log.info("cmd", {{"cmd", std::string(to_string(c->kind))}, {"component", printable(component, 80)}});
    switch (c->kind) {
        case CommandKind::check:
            for (const auto& [name, p] : std::map(offers)) evaluate(name, p);
            return;
        case CommandKind::report:
            publish_inventory();
            for (const auto& [name, p] : statuses) (void)store->enqueue(topics.status(cfg.device_id, name), p, true);
            flush();
            return;
        case CommandKind::rollback:
            operator_rollback(component);
            return;
        case CommandKind::install: {
            // `ota-ctl update <device> <component>`: the release in the cmd, checked exactly like
            // one offered by an open wave (signature, expiry, platform, newer version).
            const json offer{{"rollout", c->rollout}, {"state", "open"}, {"release", c->release}};
            evaluate(component, dump_safe(offer), true);
            return;
        }
        case CommandKind::retry:
            (void)store->forget_applied(component);
            (void)store->put("rejected/" + component, "");
            if (offers.contains(component)) evaluate(component, offers[component]);
            return;
    }
}

// Roll back the last finished install of `component` (cmd "rollback"): the installer's
// rollback with the record kept at commit, journalled like any other rollback.
void Agent::Impl::operator_rollback(const std::string& component) {
    if (!cfg.components.contains(component)) return;
    if (auto j = store->journal(component); j && *j) {
        log.warn("rollback refused: an update is in progress", {{"component", component}});
        return;
    }
    auto last = store->get("last_install/" + component);
    if (!last || !*last || (*last)->empty()) {
        log.warn("rollback refused: no finished install to roll back", {{"component", component}});
        return;
    }
    auto l = json::parse(**last, nullptr, false);
    if (l.is_discarded() || !l.is_object()) return;
    json j{{"component", component},
           {"rollout", str_or(l, "rollout")},
           {"envelope", str_or(l, "envelope")},
           {"accepted_at", str_or(l, "accepted_at")},
           {"record", l.contains("record") ? l["record"] : json::object()},
           {"stage", std::string(to_string(Stage::rolling_back))},
           {"final", std::string(to_string(Reported::rolled_back))},
           {"operator", true},
           {"entries", json::object()},
           {"error", {{"code", "rollback_requested"}, {"message", "an operator asked to roll back"}}}};
    if (l.contains("previous_version")) j["previous_version"] = l["previous_version"];
    if (auto w = store->put_journal(component, j); !w) return;
    (void)store->put("last_install/" + component, "");
    run_update(component);
}

// A keyset (retained on <prefix>/keyset, again at every connect): accepted only when the trusted
// root signed it and it is newer, written to disk before it is used; then the offers waiting are
// judged again with its keys (a release of a new key can now be installed, one of a revoked key
// no longer).
void Agent::Impl::on_keyset(const std::string& payload) {
    if (payload.empty()) return;
    auto r = keysets->offer(payload, now_utc(), "keyset on " + topics.keyset());
    if (!r) return note_bad_input("keyset rejected", r.error());
    if (*r != KeysetStore::Offer::accepted) {
        log.debug("keyset ignored", {{"why", std::string(to_string(*r))}});
        return;
    }
    const auto& k = keysets->current()->keyset;
    std::string ids;
    for (const auto& key : k.keys) ids += (ids.empty() ? "" : ",") + key.key.key_id();
    log.info("keyset accepted", {{"version", std::to_string(k.version)}, {"root", k.root.key_id()}, {"keys", ids},
                                 {"expires", format_utc(k.expires)}});
    const auto waiting = std::exchange(awaiting_keys, {});
    for (const auto& component : waiting)
        if (auto it = offers.find(component); it != offers.end()) evaluate(component, it->second);
}

Expected<crypto::TrustStore> Agent::Impl::release_keys() const {
    if (!keysets) return trusted;
    return keysets->release_keys(now_utc(), trusted);
}

crypto::TrustStore Agent::Impl::journal_keys() const {
    crypto::TrustStore keys = trusted;
    if (keysets && keysets->current())
        for (const auto& k : keysets->current()->keyset.keys) keys.add(k.key);
    return keys;
}

}  // namespace ota::agent
