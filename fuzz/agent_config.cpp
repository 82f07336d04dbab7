// Fuzz target `agent_config`: the agent's config loader (device-agent/src/agent_config.*), fed the
// merged JSON document the layers produce (ota/config.hpp). Properties: any JSON gives a config or
// a config_invalid error naming the field path under "agent"; a config that loads prints
// (to_json, what `ota-agent --print-config` shows) to a document that loads to the same printout.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "agent_config.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) return 0;
    const auto c = ota::agent::parse_agent_config(j);
    if (!c) {
        OTA_FUZZ_CHECK(c.error().code == ota::ErrorCode::config_invalid, c.error().describe());
        OTA_FUZZ_CHECK(c.error().message.starts_with("agent"), "error does not name the field path: " + c.error().describe());
        return 0;
    }
    const auto printed = c->to_json();
    const auto again = ota::agent::parse_agent_config(nlohmann::json::parse(printed.dump()));
    OTA_FUZZ_CHECK(again.has_value(), "the printed config does not load: " + printed.dump() + " -> " + again.error().describe());
    OTA_FUZZ_CHECK(again->to_json() == printed, "print/load not stable: " + printed.dump() + " vs " + again->to_json().dump());
    return 0;
}
