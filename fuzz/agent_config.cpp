// Fuzz target `agent_config`: the agent's config loader (device-agent/src/agent_config.*), fed the
// merged JSON document the layers produce (ota/config.hpp). Properties: any JSON gives a config or
// a config_invalid error naming the field path under "agent"; a config that loads prints
// (to_json, what `ota-agent --print-config` shows) to a document that loads to the same printout;
// its write paths (the sandbox's ReadWritePaths=) are absolute, normal, sorted and none inside
// another, and the drop-in has exactly one quoted ReadWritePaths= line per path and no other
// setting (a target cannot smuggle a line into the unit). A site cache maps only URLs of its own
// origin, to a URL under the cache's prefix.
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

    for (const auto& [origin, cache] : c->download_caches) {
        const auto mapped = ota::agent::cache_url(*c, origin + "a/b.bin");
        OTA_FUZZ_CHECK(mapped && mapped->starts_with("https://") && mapped->ends_with("a/b.bin"), origin + " -> " + mapped.value_or("none"));
        const auto longer = origin.substr(0, origin.size() - 1) + ".evil/x";
        bool other_origin = false;
        for (const auto& [o, unused] : c->download_caches) other_origin = other_origin || longer.starts_with(o);
        OTA_FUZZ_CHECK(other_origin || !ota::agent::cache_url(*c, longer), "a longer name matched " + origin);
    }

    const auto paths = c->write_paths();
    for (std::size_t i = 0; i < paths.size(); ++i) {
        OTA_FUZZ_CHECK(paths[i].is_absolute() && paths[i] == paths[i].lexically_normal(), "write path " + paths[i].string());
        if (i == 0) continue;
        OTA_FUZZ_CHECK(paths[i - 1] < paths[i], "write paths not sorted or duplicated: " + paths[i].string());
        const auto rel = paths[i].lexically_relative(paths[i - 1]);
        OTA_FUZZ_CHECK(rel.empty() || *rel.begin() == "..", paths[i].string() + " is inside " + paths[i - 1].string());
    }
    const auto dropin = ota::agent::sandbox_dropin(*c, "/etc/ota/agent.json");
    std::size_t settings = 0, pos = 0;
    while (pos < dropin.size()) {
        const auto end = dropin.find('\n', pos);
        OTA_FUZZ_CHECK(end != std::string::npos, "the drop-in does not end with a newline");
        const std::string_view line(dropin.data() + pos, end - pos);
        if (line.starts_with("ReadWritePaths=")) {
            ++settings;
            OTA_FUZZ_CHECK(line.starts_with("ReadWritePaths=\"-/") && line.ends_with("\""), std::string(line));
        } else {
            OTA_FUZZ_CHECK(line.starts_with("#") || line == "[Service]", "unexpected drop-in line: " + std::string(line));
        }
        pos = end + 1;
    }
    OTA_FUZZ_CHECK(settings == paths.size(), "drop-in lines vs write paths: " + dropin);
    return 0;
}
