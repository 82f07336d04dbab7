// Fuzz target `controller_message`: the controller's real Engine (rollout-controller/src/engine.hpp)
// on a real SQLite Store (a fresh file on tmpfs per input) with a fixed config of 2 fleets x 3 waves.
//
// The input is a script, one message per line: `<kind><device digit> <payload>`
//   s / S   devices/device-<d>/status/app | status/model
//   i / o   devices/device-<d>/inventory | online
//   I       devices/device-<d>/inventory, delivered retained (as after a restart of the controller)
//   r / R   releases/app/stable | releases/model/stable (envelopes signed with the fuzz test key verify)
//   c       control/request/op-<d> (the topic's last segment is the actor; <d> may make it invalid)
//   t       a tick after <payload> seconds (capped at 30 days)
//   L       restart: a new Engine loads everything from the Store
//   x       raw: the payload is "<topic> <payload>" (any topic)
// Properties: nothing crashes; no handler throws (the engine's last guard counts that as
// `handler_error`: a handler that did not read its input without throwing); every publish is under
// the prefix with a JSON payload; a restart rebuilds the same rollouts and members from SQLite
// (silent members may count as pending or in progress again: silence is judged afresh after a start)
// and the same effective fleet policies (the policy commands' overrides); every fleet summary
// published counts each known device once per component (states sum to the total, no total or
// needs_update above the devices, the devices are the engine's, the fleets' within them).
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine.hpp"
#include "fuzz_common.hpp"
#include "ota/log.hpp"
#include "policy.hpp"
#include "store.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace ota::controller;

namespace {

const ControllerConfig& config() {
    static const ControllerConfig cfg = [] {
        const auto j = json::parse(R"({
          "mqtt": {"broker": "mqtts://127.0.0.1:1"},
          "trusted_keys": "/nonexistent",
          "state_interval_ms": 1000,
          "fleets": [
            {"name": "plant-a", "select": {"devices": ["device-0", "device-1", "device-2", "device-3", "device-4"]},
             "defaults": {"device_timeout_s": 600, "max_failures": 1},
             "waves": [{"name": "canary", "devices": ["device-0"], "soak_s": 60},
                       {"name": "early", "percent": 50, "max_failure_percent": 20, "min_finished": 1},
                       {"name": "broad"}]},
            {"name": "plant-b",
             "defaults": {"device_timeout_s": 300},
             "waves": [{"name": "canary", "percent": 10, "approval": true},
                       {"name": "early", "labels": {"ring": "early"}, "success_percent": 50},
                       {"name": "broad", "window": {"start": "22:00", "end": "04:00"}}],
             "components": {"model": {"defaults": {"max_failures": 2}, "waves": {"broad": {"soak_s": 120}}}}}
          ]})");
        auto c = parse_controller_config(j);
        if (!c) ota::fuzz::violated("the fixed controller config does not parse", c.error().describe());
        return *c;
    }();
    return cfg;
}

const fs::path& work_dir() {
    static const fs::path dir = [] {
        const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
        auto d = base / ("ota-fuzz-controller-" + std::to_string(::getpid()));
        fs::create_directories(d);
        return d;
    }();
    return dir;
}

std::string show(const std::map<std::string, std::uint64_t>& m) {
    std::string out;
    for (const auto& [k, v] : m) out += k + "=" + std::to_string(v) + " ";
    return out;
}

std::map<std::string, std::uint64_t> unfinished_as_one(std::map<std::string, std::uint64_t> m) {
    std::uint64_t unfinished = 0;
    for (const char* k : {"silent", "pending", "in_progress"}) {
        if (auto it = m.find(k); it != m.end()) {
            unfinished += it->second;
            m.erase(it);
        }
    }
    m["unfinished"] = unfinished;
    for (auto it = m.begin(); it != m.end();) it = it->second == 0 && it->first != "unfinished" ? m.erase(it) : std::next(it);
    return m;
}

struct Rig {
    std::unique_ptr<Store> store;
    std::unique_ptr<Engine> engine;
    TimePoint now = TimePoint(ota::fuzz::fixed_now().time_since_epoch());

    Rig() {
        std::error_code ec;
        for (const char* f : {"c.db", "c.db-wal", "c.db-shm"}) fs::remove(work_dir() / f, ec);
        auto s = Store::open(work_dir() / "c.db");
        if (!s) ota::fuzz::violated("Store::open", s.error().describe());
        store = std::move(*s);
        start();
    }
    ~Rig() {
        engine.reset();
        store.reset();
    }
    void start() {
        engine = std::make_unique<Engine>(config(), *store, ota::fuzz::test_trust());
        engine->load(now);
        check_outgoing();
    }
    void check_outgoing() {
        for (const auto& o : engine->take_outgoing()) {
            OTA_FUZZ_CHECK(o.topic.starts_with("ota/v1/"), "publish outside the prefix: " + o.topic);
            if (o.payload.empty()) continue;  // clearing a retained message
            OTA_FUZZ_CHECK(json::accept(o.payload), "publish of non-JSON on " + o.topic + ": " + o.payload);
            if (o.topic == "ota/v1/summary") check_summary(json::parse(o.payload));
        }
        const auto& by = engine->counters().by_result;
        if (auto it = by.find("handler_error"); it != by.end())
            OTA_FUZZ_CHECK(it->second == 0, "a handler threw (counted as handler_error)");
    }
    void check_summary(const json& doc) {
        const auto devices = doc.at("devices").get<std::uint64_t>();
        OTA_FUZZ_CHECK(devices == engine->device_count(), "summary devices differ from the engine's: " + doc.dump());
        OTA_FUZZ_CHECK(doc.at("needs_update").get<std::uint64_t>() <= devices, "needs_update above devices: " + doc.dump());
        auto group = [&](const json& g, std::uint64_t limit) {
            for (const auto& [c, counts] : g.at("components").items()) {
                std::uint64_t sum = 0;
                for (const auto& [state, n] : counts.items())
                    if (state != "total") sum += n.get<std::uint64_t>();
                OTA_FUZZ_CHECK(sum == counts.at("total").get<std::uint64_t>(), "states do not sum to the total: " + doc.dump());
                OTA_FUZZ_CHECK(sum <= limit, "a component counted more often than devices: " + doc.dump());
            }
        };
        group(doc, devices);
        std::uint64_t in_fleets = 0;
        for (const auto& [f, g] : doc.at("fleets").items()) {
            group(g, g.at("devices").get<std::uint64_t>());
            in_fleets += g.at("devices").get<std::uint64_t>();
        }
        OTA_FUZZ_CHECK(in_fleets <= devices, "fleets hold more devices than the summary: " + doc.dump());
    }
    void message(std::string topic, std::string payload, bool retained = false) {
        // The service's look at the raw payload (failure reports first) never throws and agrees
        // with the JSON where the JSON has a string stage.
        const bool urgent = ota::controller::is_failure_report(topic, payload);
        if (const auto j = json::parse(payload, nullptr, false); urgent && j.is_object() && j.contains("stage") &&
                                                                   j["stage"].is_string() && topic.find("/status/") != std::string::npos) {
            const auto stage = j["stage"].get<std::string>();
            // A duplicate "stage" key: the scan reads the first, nlohmann the last.
            if (payload.find("\"stage\"") == payload.rfind("\"stage\""))
                OTA_FUZZ_CHECK(stage == "failed" || stage == "rolled_back" || stage == "rejected", "urgent but stage " + stage);
        }
        Store::Batch batch(*store);
        engine->on_message({.topic = std::move(topic), .payload = std::move(payload), .qos = 1, .retained = retained}, now);
        engine->flush(now);
        if (auto c = batch.commit(); !c) ota::fuzz::violated("commit", c.error().describe());
        check_outgoing();
    }
    void tick(std::string_view seconds) {
        std::uint64_t s = 0;
        for (char ch : seconds) {
            if (ch < '0' || ch > '9') break;
            s = std::min<std::uint64_t>(s * 10 + static_cast<std::uint64_t>(ch - '0'), 30ull * 86400);
        }
        now += std::chrono::seconds(s);
        Store::Batch batch(*store);
        engine->tick(now);
        if (auto c = batch.commit(); !c) ota::fuzz::violated("commit", c.error().describe());
        check_outgoing();
    }
    void restart() {
        const auto rollouts = engine->rollouts_by_state();
        const auto members = engine->members_by_state();
        const auto devices = engine->device_count();
        std::vector<std::string> policies;  // operators' overrides are in SQLite: the same after a start
        for (const auto& f : config().fleets) policies.push_back(engine->fleet_policy(f.name)->dump());
        engine.reset();
        start();
        for (std::size_t i = 0; i < policies.size(); ++i)
            OTA_FUZZ_CHECK(engine->fleet_policy(config().fleets[i].name)->dump() == policies[i],
                           "fleet policy differs after a restart from SQLite: " + policies[i]);
        OTA_FUZZ_CHECK(engine->rollouts_by_state() == rollouts,
                       "rollouts differ after a restart from SQLite: " + show(rollouts) + " -> " + show(engine->rollouts_by_state()));
        // Silence is judged afresh after a start (a fresh timeout at each connect, docs/controller.md),
        // so silent members count again as what they were; finished ones must be the same.
        OTA_FUZZ_CHECK(unfinished_as_one(engine->members_by_state()) == unfinished_as_one(members),
                       "members differ after a restart from SQLite: " + show(members) + " -> " + show(engine->members_by_state()));
        OTA_FUZZ_CHECK(engine->device_count() == devices, "devices differ after a restart from SQLite");
    }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    ota::log::init(ota::log::Format::plain, ota::log::Level::error);  // bounded by the engine's limiter
    (void)config();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    Rig rig;
    std::size_t lines = 0;
    for (std::size_t start = 0; start < in.size() && lines < 64; ++lines) {
        auto nl = in.find('\n', start);
        if (nl == std::string_view::npos) nl = in.size();
        const auto line = in.substr(start, nl - start);
        start = nl + 1;
        if (line.size() < 2) continue;
        const char kind = line[0];
        const std::string device = "device-" + std::string(1, line[1]);
        const std::string payload(line.size() > 3 ? line.substr(3) : std::string_view{});
        const std::string dev = "ota/v1/devices/" + device;
        switch (kind) {
            case 's': rig.message(dev + "/status/app", payload); break;
            case 'S': rig.message(dev + "/status/model", payload); break;
            case 'i': rig.message(dev + "/inventory", payload); break;
            case 'I': rig.message(dev + "/inventory", payload, true); break;
            case 'o': rig.message(dev + "/online", payload); break;
            case 'r': rig.message("ota/v1/releases/app/stable", payload); break;
            case 'R': rig.message("ota/v1/releases/model/stable", payload); break;
            case 'c': rig.message("ota/v1/control/request/op-" + std::string(1, line[1]), payload); break;
            case 't': rig.tick(payload); break;
            case 'L': rig.restart(); break;
            case 'x': {
                const auto sp = payload.find(' ');
                rig.message(payload.substr(0, sp), sp == std::string::npos ? std::string() : payload.substr(sp + 1));
                break;
            }
            default: break;
        }
    }
    return 0;
}
