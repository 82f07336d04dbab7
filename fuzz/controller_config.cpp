// Fuzz target `controller_config`: the controller's config loader (rollout-controller/src/policy.*:
// fleets, waves, policy layers), fed the merged JSON document the layers produce (ota/config.hpp).
// Properties: any JSON gives a config or a config_invalid error naming the field path under
// "controller"; loading is deterministic (the same document prints the same config); for a config
// that loads, every fleet has waves, every device lands in one of its fleet's waves, buckets are in
// 0..9999, and the effective policy of every wave is printable. (The printout, `ota-controller
// --print-config`, is a report with each wave's effective policy, not a loadable config, so there
// is no reload property here, unlike agent_config.)
#include <cstddef>
#include <map>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_common.hpp"
#include "policy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) return 0;
    const auto c = ota::controller::parse_controller_config(j);
    if (!c) {
        OTA_FUZZ_CHECK(c.error().code == ota::ErrorCode::config_invalid, c.error().describe());
        OTA_FUZZ_CHECK(c.error().message.starts_with("controller"), "error does not name the field path: " + c.error().describe());
        return 0;
    }
    const auto printed = c->to_json();
    const auto again = ota::controller::parse_controller_config(j);
    OTA_FUZZ_CHECK(again.has_value() && again->to_json() == printed, "loading is not deterministic: " + printed.dump());
    OTA_FUZZ_CHECK(!c->fleets.empty(), "a config without fleets loaded");
    const std::map<std::string, std::string> labels{{"site", "plant-a"}, {"ring", "early"}};
    for (const auto& f : c->fleets) {
        OTA_FUZZ_CHECK(!f.waves.empty(), "fleet " + f.name + " without waves loaded");
        for (const char* device : {"device-0", "device-1", "d", "device-042"}) {
            OTA_FUZZ_CHECK(f.wave_of(device, labels) < f.waves.size(), "wave_of out of range in fleet " + f.name);
            OTA_FUZZ_CHECK(f.wave_of(device, {}) < f.waves.size(), "wave_of out of range in fleet " + f.name);
            OTA_FUZZ_CHECK(ota::controller::hash_bucket(f.name, device) < 10000, "hash_bucket out of range");
        }
        for (std::size_t w = 0; w < f.waves.size(); ++w) {
            const auto p = f.policy(w, "app");
            OTA_FUZZ_CHECK(p.success_percent >= 0 && p.success_percent <= 100, "success_percent out of range");
            (void)p.to_json().dump();
            for (const auto& [component, layer] : f.component_defaults) (void)f.policy(w, component).to_json().dump();
        }
    }
    return 0;
}
