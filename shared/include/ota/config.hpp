// Layered configuration, each layer overriding the one before (docs/architecture.md, "Config"):
//   1. the JSON config file (optional when `required` is false),
//   2. fragments in "<file>.d/*.json", in name order,
//   3. environment variables <PREFIX><KEY>, where "__" separates nested keys and the value is
//      parsed as JSON when it is valid JSON (numbers, true/false, lists) and taken as a string
//      otherwise: OTA_AGENT_MQTT__BROKER=mqtts://broker:8883 sets {"mqtt":{"broker":"..."}},
//   4. command-line flags, applied by the application (CLI11) on the struct it reads.
// Layers merge as JSON merge patches (RFC 7396): objects merge key by key, other values replace.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ota/error.hpp"

namespace ota::config {

[[nodiscard]] Expected<nlohmann::json> load_layers(const std::filesystem::path& file, bool required,
                                                   std::string_view env_prefix);

// The environment layer alone, from an explicit map (tests) or from the process environment.
[[nodiscard]] nlohmann::json env_layer(std::string_view env_prefix, const std::map<std::string, std::string>& env);
[[nodiscard]] std::map<std::string, std::string> process_environment();

}  // namespace ota::config
