// ota-ctl: the operator's command line (docs/controller.md, "Operating with ota-ctl").
// Every command except `watch` is one request on <prefix>/control/request/<CN of --cert> (the
// broker lets that identity write only there, so the controller records the CN as the actor) and
// one reply on <prefix>/control/reply/<client id>; `watch` follows the retained <prefix>/rollouts/<id>.
// Exit status: 0 ok, 1 error (one line on stderr: "ota-ctl: <code>: <message>"), 2 usage;
// watch: 0 when the rollout completed, 4 halted, 5 aborted or superseded.
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ota/build_info.hpp"
#include "ota/config.hpp"
#include "ota/crypto.hpp"
#include "ota/json.hpp"
#include "ota/mqtt.hpp"
#include "ota/topics.hpp"
#include "format.hpp"
#include "policy_cli.hpp"

namespace {

using nlohmann::json;
using ota::ctl::str;
using ota::ctl::table;

struct Settings {
    std::string broker, cafile, cert, key, prefix{"ota/v1"};
    std::string user;  // the CN of `cert`: the request topic's last segment
    int timeout_s{10};
    bool raw_json{false};
};

int fail_with(const ota::Error& e) {
    std::fprintf(stderr, "ota-ctl: %s\n", e.describe().c_str());
    return 1;
}

std::string random_hex(std::size_t n) {
    std::random_device rd;
    std::string s;
    for (std::size_t i = 0; i < n; ++i) s += "0123456789abcdef"[rd() % 16];
    return s;
}

ota::mqtt::Options options(const Settings& s, const std::string& client_id) {
    ota::mqtt::Options o;
    o.broker = s.broker;
    o.client_id = client_id;
    o.cafile = s.cafile;
    o.certfile = s.cert;
    o.keyfile = s.key;
    o.connect_timeout = std::chrono::seconds(s.timeout_s);
    return o;
}

// A connected client with a private reply topic.
class Session {
public:
    explicit Session(const Settings& s)
        : s_(s), topics_(s.prefix), client_id_("ota-ctl-" + std::to_string(::getpid()) + "-" + random_hex(6)),
          client_(options(s, client_id_)) {}

    ota::Expected<void> connect(ota::mqtt::MessageHandler handler) {
        client_.on_message(std::move(handler));
        return client_.connect();
    }
    ota::mqtt::Client& client() { return client_; }
    const ota::Topics& topics() const { return topics_; }

    // Send one request and wait for its reply's result.
    ota::Expected<json> request(json req) {
        const auto reply_topic = topics_.control_reply(client_id_);
        // Shared with the handler: the client (and a late duplicate reply) outlives this call.
        struct Pending {
            std::string id = random_hex(16);
            std::mutex mu;
            std::condition_variable cv;
            std::optional<json> reply;
        };
        const auto pending = std::make_shared<Pending>();
        if (auto c = connect([pending](const ota::mqtt::Message& m) {
                auto j = json::parse(m.payload, nullptr, false);
                if (j.is_discarded() || !j.is_object() || j.value("id", "") != pending->id) return;
                std::lock_guard lock(pending->mu);
                pending->reply = std::move(j);
                pending->cv.notify_one();
            });
            !c)
            return std::unexpected(c.error());
        if (auto sub = client_.subscribe(reply_topic, 1); !sub) return std::unexpected(sub.error());
        req["id"] = pending->id;
        req["reply_to"] = reply_topic;
        if (auto p = client_.publish(topics_.control_request(s_.user), req.dump(), 1, false); !p) return std::unexpected(p.error());
        std::unique_lock lock(pending->mu);
        if (!pending->cv.wait_for(lock, std::chrono::seconds(s_.timeout_s), [&] { return pending->reply.has_value(); }))
            return ota::fail(ota::ErrorCode::timeout, "no reply from the controller within " + std::to_string(s_.timeout_s) +
                                                          " s (is ota-controller running?)");
        const auto reply = pending->reply;
        if (!(*reply)["ok"].is_boolean() || !(*reply)["ok"].get<bool>()) {
            const auto& e = (*reply)["error"];
            auto code = ota::ErrorCode::internal;
            const auto name = e.value("code", "internal");
            for (auto c : {ota::ErrorCode::request_invalid, ota::ErrorCode::not_found, ota::ErrorCode::state_conflict})
                if (ota::to_string(c) == name) code = c;
            return ota::fail(code, e.value("message", "the controller refused the request"));
        }
        return (*reply)["result"];
    }

private:
    const Settings& s_;
    ota::Topics topics_;
    std::string client_id_;
    ota::mqtt::Client client_;
};

void print_rollouts(const json& list) {
    std::vector<std::vector<std::string>> rows{
        {"ROLLOUT", "STATE", "WAVE", "VERSION", "DEVICES", "SUCCEEDED", "FAILED", "SILENT", "IN-PROGRESS", "UPDATED"}};
    for (const auto& r : list) {
        const auto& t = r["totals"];
        rows.push_back({str(r, "rollout"), str(r, "state"), str(r, "wave"), str(r, "version"), str(t, "devices"),
                        str(t, "succeeded"), str(t, "failed"), str(t, "silent"), str(t, "in_progress"), str(r, "updated")});
    }
    table(rows);
}

void print_status(const json& r) {
    std::printf("rollout   %s\nrelease   %s %s (fleet %s)\nstate     %s%s\n\n", str(r, "rollout").c_str(),
                str(r, "component").c_str(), str(r, "version").c_str(), str(r, "fleet").c_str(), str(r, "state").c_str(),
                r.contains("reason") ? (" (" + str(r, "reason") + ")").c_str() : "");
    std::vector<std::vector<std::string>> rows{
        {"WAVE", "STATE", "DEVICES", "SUCCEEDED", "FAILED", "IN-PROGRESS", "SILENT", "PENDING", "OPENED"}};
    for (const auto& w : r["waves"])
        rows.push_back({str(w, "name"), str(w, "state"), str(w, "devices"), str(w, "succeeded"), str(w, "failed"),
                        str(w, "in_progress"), str(w, "silent"), str(w, "pending"), str(w, "opened_at")});
    table(rows);
}

void print_devices(const json& result) {
    std::vector<std::vector<std::string>> rows{{"DEVICE", "FLEET", "WAVE", "ONLINE", "COMPONENT", "VERSION", "TARGET", "STATUS"}};
    for (const auto& d : result["devices"]) {
        bool first = true;
        for (const auto& [c, v] : d["components"].items()) {
            rows.push_back({first ? str(d, "device") : "", first ? str(d, "fleet") : "", first ? str(d, "wave") : "",
                            first ? (d.value("online", false) ? "yes" : "no") : "", c, str(v, "version"), str(v, "target"),
                            str(v, "status")});
            first = false;
        }
        if (first) rows.push_back({str(d, "device"), str(d, "fleet"), str(d, "wave"), d.value("online", false) ? "yes" : "no", "-", "-", "-", "-"});
    }
    table(rows);
    std::printf("\nversion skew:\n");
    for (const auto& [c, versions] : result["skew"].items()) {
        std::string line = "  " + c + ":";
        for (const auto& [v, n] : versions.items()) line += " " + v + " (" + n.dump() + ")";
        std::printf("%s\n", line.c_str());
    }
}

void print_audit(const json& list) {
    std::vector<std::vector<std::string>> rows{{"TIME", "ACTOR", "ACTION", "ROLLOUT", "DETAIL"}};
    for (const auto& a : list)
        rows.push_back({str(a, "ts"), str(a, "actor"), str(a, "action"), str(a, "rollout"), str(a, "detail")});
    table(rows);
}

std::string bar(std::uint64_t done, std::uint64_t failed, std::uint64_t total) {
    constexpr std::uint64_t width = 30;
    if (total == 0) return "[" + std::string(width, ' ') + "]";
    const auto ok = std::min(width, done * width / total), bad = std::min(width - ok, failed * width / total);
    return "[" + std::string(ok, '#') + std::string(bad, 'x') + std::string(width - ok - bad, '.') + "]";
}

std::string render_progress(const json& r) {
    std::ostringstream o;
    o << str(r, "rollout") << "  " << str(r, "state") << "  (" << str(r, "component") << " " << str(r, "version") << ")\n";
    for (const auto& w : r["waves"]) {
        const auto n = w.value("devices", 0ULL), ok = w.value("succeeded", 0ULL);
        const auto bad = w.value("failed", 0ULL) + w.value("silent", 0ULL);
        char line[256];
        std::snprintf(line, sizeof line, "  %-10s %-16s %s %3llu%%  %llu/%llu ok  %llu failed  %llu in progress\n",
                      str(w, "name").c_str(), str(w, "state").c_str(), bar(ok, bad, n).c_str(),
                      n ? static_cast<unsigned long long>(ok * 100 / n) : 0ULL, static_cast<unsigned long long>(ok),
                      static_cast<unsigned long long>(n), static_cast<unsigned long long>(bad),
                      static_cast<unsigned long long>(w.value("in_progress", 0ULL)));
        o << line;
    }
    return o.str();
}

int watch(const Settings& s, const std::string& rollout) {
    // What the handler uses is declared before the session: it outlives the client, whose
    // destructor waits for a handler still running (found by LeakSanitizer: a state that arrived
    // as watch returned was moved into an already destroyed `latest`).
    std::mutex mu;
    std::condition_variable cv;
    std::optional<json> latest;
    bool fresh = false;
    Session session(s);
    if (auto c = session.connect([&](const ota::mqtt::Message& m) {
            auto j = json::parse(m.payload, nullptr, false);
            if (j.is_discarded() || !j.is_object()) return;
            std::lock_guard lock(mu);
            latest = std::move(j);
            fresh = true;
            cv.notify_one();
        });
        !c)
        return fail_with(c.error());
    if (auto sub = session.client().subscribe(session.topics().rollout(rollout), 1); !sub) return fail_with(sub.error());
    const bool tty = ::isatty(STDOUT_FILENO) != 0;
    int lines = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(s.timeout_s);
    std::unique_lock lock(mu);
    for (;;) {
        if (!cv.wait_until(lock, deadline, [&] { return fresh; })) {
            if (!latest)
                return fail_with({ota::ErrorCode::not_found, "no state for rollout " + rollout + " on " +
                                                                 session.topics().rollout(rollout) + " within " +
                                                                 std::to_string(s.timeout_s) + " s"});
            continue;  // keep watching; the deadline only bounds the first state
        }
        fresh = false;
        const auto text = render_progress(*latest);
        if (tty && lines > 0) std::printf("\x1b[%dA\x1b[J", lines);
        std::printf("%s", text.c_str());
        if (!tty) std::printf("\n");
        std::fflush(stdout);
        lines = static_cast<int>(std::count(text.begin(), text.end(), '\n'));
        const auto state = latest->value("state", "");
        if (state == "completed") return 0;
        if (state == "halted") {
            std::printf("halted: %s\n", latest->value("reason", "").c_str());
            return 4;
        }
        if (state == "aborted" || state == "superseded") return 5;
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ota-ctl: steer and watch OTA rollouts"};
    app.require_subcommand(1);
    Settings s;
    std::string config_path;
    if (const char* home = std::getenv("HOME")) config_path = std::string(home) + "/.config/ota/ctl.json";
    app.set_version_flag("--version", std::string("ota-ctl ") + ota::build::version + " (commit " +
                                          ota::build::git_commit + ", built " + ota::build::date + ")");
    app.add_option("--config", config_path, "Settings file (JSON: broker, cafile, cert, key, topic_prefix); "
                                            "OTA_CTL_* override it")->capture_default_str();
    std::string broker, cafile, cert, key, prefix;
    app.add_option("--broker", broker, "Broker URL, e.g. mqtts://127.0.0.1:8883");
    app.add_option("--cafile", cafile, "CA certificate of the broker");
    app.add_option("--cert", cert, "Operator client certificate (its CN is the actor in the audit log)");
    app.add_option("--key", key, "Operator client key");
    app.add_option("--topic-prefix", prefix, "Topic prefix (default ota/v1)");
    app.add_option("--timeout", s.timeout_s, "Seconds to wait for the controller's reply")->capture_default_str();
    app.add_flag("--json", s.raw_json, "Print the controller's reply as JSON");

    std::string rollout, device, component;
    bool outdated = false;
    int limit = 50;
    auto* c_rollouts = app.add_subcommand("rollouts", "List rollouts with their state and totals");
    auto* c_status = app.add_subcommand("status", "Show a rollout: a table per wave (devices, succeeded, failed, in progress, silent)");
    c_status->add_option("rollout", rollout, "Rollout id")->required();
    auto* c_watch = app.add_subcommand("watch", "Live progress bars until the rollout completes, halts or ends");
    c_watch->add_option("rollout", rollout, "Rollout id")->required();
    std::vector<CLI::App*> actions;
    for (const auto& [name, help] : std::vector<std::pair<std::string, std::string>>{
             {"approve", "Approve the next wave that waits for approval"},
             {"pause", "Pause: no new device starts, no wave opens"},
             {"resume", "Resume a paused or halted rollout (failures so far are accepted)"},
             {"abort", "Abort: devices that have not started never start"},
             {"retry", "Retry the failed and silent devices (and resume a halted rollout)"}}) {
        auto* c = app.add_subcommand(name, help);
        c->add_option("rollout", rollout, "Rollout id")->required();
        actions.push_back(c);
    }
    auto* c_update = app.add_subcommand("update", "Update one device now with the latest release of a component");
    c_update->add_option("device", device, "Device id")->required();
    c_update->add_option("component", component, "Component")->required();
    auto* c_devices = app.add_subcommand("devices", "Devices with their versions: up to date, outdated or unknown, and version skew");
    c_devices->add_flag("--outdated", outdated, "Only devices with an outdated component");
    auto* c_audit = app.add_subcommand("audit", "The audit log: every transition and operator action");
    c_audit->add_option("--rollout", rollout, "Only this rollout");
    c_audit->add_option("--limit", limit, "Most recent entries to show")->capture_default_str();
    const ota::ctl::PolicyCli policy_cli(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }

    // Settings: file (optional) <- OTA_CTL_* <- flags.
    auto layers = ota::config::load_layers(config_path, false, "OTA_CTL_");
    if (!layers) return fail_with(layers.error());
    // "actor" (settings before issue 11) is ignored: the broker-authenticated CN is the actor.
    if (layers->is_object() && layers->erase("actor") > 0)
        std::fprintf(stderr, "ota-ctl: warning: setting \"actor\" ignored: the audit log records the CN of --cert\n");
    ota::ObjectReader r(*layers, "ota-ctl", ota::ErrorCode::config_invalid);
    s.broker = r.opt_str("broker").value_or("");
    s.cafile = r.opt_str("cafile").value_or("");
    s.cert = r.opt_str("cert").value_or("");
    s.key = r.opt_str("key").value_or("");
    s.prefix = r.opt_str("topic_prefix").value_or(s.prefix);
    r.reject_unknown();
    if (!r.ok()) return fail_with(*r.error());
    for (auto [flag, field] : {std::pair{&broker, &s.broker}, {&cafile, &s.cafile}, {&cert, &s.cert}, {&key, &s.key},
                               {&prefix, &s.prefix}})
        if (!flag->empty()) *field = *flag;
    if (s.broker.empty()) {
        std::fprintf(stderr, "ota-ctl: config_invalid: no broker: give --broker, OTA_CTL_BROKER or \"broker\" in %s\n",
                     config_path.c_str());
        return 2;
    }

    if (c_watch->parsed()) return watch(s, rollout);
    if (s.cert.empty()) {
        std::fprintf(stderr, "ota-ctl: config_invalid: no client certificate: give --cert, OTA_CTL_CERT or \"cert\" in %s\n",
                     config_path.c_str());
        return 2;
    }
    auto cn = ota::crypto::certificate_common_name(s.cert);
    if (!cn) {
        fail_with({cn.error().code, "--cert: " + cn.error().message});
        return 2;
    }
    if (!ota::is_valid_segment(*cn)) {
        std::fprintf(stderr, "ota-ctl: config_invalid: --cert %s: CN \"%s\" is not a valid topic segment (1-64 of A-Z a-z 0-9 . _ -)\n",
                     s.cert.c_str(), cn->c_str());
        return 2;
    }
    s.user = *cn;
    if (auto req = policy_cli.request()) {
        Session session(s);
        auto result = session.request(*req);
        if (!result) return fail_with(result.error());
        if (s.raw_json) std::printf("%s\n", result->dump(2).c_str());
        else policy_cli.print(*result);
        return 0;
    }

    json req;
    auto* sub = app.get_subcommands().front();
    req["cmd"] = sub->get_name();
    if (!rollout.empty()) req["rollout"] = rollout;
    if (c_update->parsed()) req["device"] = device, req["component"] = component;
    if (c_devices->parsed()) req["outdated"] = outdated;
    if (c_audit->parsed()) req["limit"] = limit;
    Session session(s);
    auto result = session.request(req);
    if (!result) return fail_with(result.error());
    if (s.raw_json) {
        std::printf("%s\n", result->dump(2).c_str());
        return 0;
    }
    if (c_rollouts->parsed()) print_rollouts(*result);
    else if (c_status->parsed()) print_status(*result);
    else if (c_devices->parsed()) print_devices(*result);
    else if (c_audit->parsed()) print_audit(*result);
    else if (c_update->parsed())
        std::printf("%s: install of %s %s requested (rollout %s)\n", device.c_str(), component.c_str(),
                    str(*result, "version").c_str(), str(*result, "rollout").c_str());
    else
        std::printf("%s: %s\n", rollout.c_str(), result->contains("approved") ? ("wave " + str(*result, "approved") + " approved").c_str()
                                                 : result->contains("retried") ? (str(*result, "retried") + " devices retried").c_str()
                                                                                : str(*result, "state").c_str());
    return 0;
}
