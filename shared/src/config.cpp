#include "ota/config.hpp"

#include <algorithm>
#include <vector>

#include "ota/files.hpp"
#include "ota/json.hpp"

extern char** environ;

namespace ota::config {
namespace fs = std::filesystem;

std::map<std::string, std::string> process_environment() {
    std::map<std::string, std::string> env;
    for (char** e = environ; e && *e; ++e) {
        std::string_view kv(*e);
        const auto eq = kv.find('=');
        if (eq != std::string_view::npos) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
    }
    return env;
}

nlohmann::json env_layer(std::string_view prefix, const std::map<std::string, std::string>& env) {
    nlohmann::json layer = nlohmann::json::object();
    for (const auto& [name, value] : env) {
        if (name.size() <= prefix.size() || !name.starts_with(prefix)) continue;
        std::string key = name.substr(prefix.size());
        std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        nlohmann::json* node = &layer;
        std::size_t start = 0;
        while (true) {
            const auto sep = key.find("__", start);
            const auto part = key.substr(start, sep == std::string::npos ? std::string::npos : sep - start);
            if (sep == std::string::npos) {
                auto parsed = nlohmann::json::parse(value, nullptr, false);
                (*node)[part] = parsed.is_discarded() || parsed.is_object() ? nlohmann::json(value) : parsed;
                break;
            }
            node = &(*node)[part];
            if (!node->is_object()) *node = nlohmann::json::object();
            start = sep + 2;
        }
    }
    return layer;
}

Expected<nlohmann::json> load_layers(const fs::path& file, bool required, std::string_view env_prefix) {
    nlohmann::json merged = nlohmann::json::object();
    auto apply_file = [&](const fs::path& path) -> Expected<void> {
        auto text = read_file(path, 4 * 1024 * 1024);
        if (!text) return std::unexpected(Error{ErrorCode::config_invalid, text.error().message});
        auto json = parse_json(*text, "config " + path.string());
        if (!json) return std::unexpected(Error{ErrorCode::config_invalid, json.error().message});
        if (!json->is_object())
            return fail(ErrorCode::config_invalid, "config " + path.string() + ": expected a JSON object at the top");
        merged.merge_patch(*json);
        return {};
    };
    std::error_code ec;
    if (!file.empty()) {
        if (fs::exists(file, ec)) {
            if (auto r = apply_file(file); !r) return std::unexpected(r.error());
        } else if (required) {
            return fail(ErrorCode::config_invalid, "config " + file.string() + ": no such file");
        }
        const fs::path dropins = file.string() + ".d";
        if (fs::is_directory(dropins, ec)) {
            std::vector<fs::path> parts;
            for (const auto& e : fs::directory_iterator(dropins, ec))
                if (e.path().extension() == ".json") parts.push_back(e.path());
            std::sort(parts.begin(), parts.end());
            for (const auto& p : parts)
                if (auto r = apply_file(p); !r) return std::unexpected(r.error());
        }
    }
    merged.merge_patch(env_layer(env_prefix, process_environment()));
    return merged;
}

}  // namespace ota::config
