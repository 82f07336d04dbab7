#include "inventory.hpp"

#include <regex>

#include "install/command.hpp"
#include "ota/build_info.hpp"
#include "ota/files.hpp"
#include "ota/version.hpp"

namespace ota::agent {
namespace {

// Collects candidate version strings and keeps the newest (unparsable or incomparable ones are
// passed over).
class Newest {
public:
    void offer(const std::string& text) {
        auto v = Version::parse(text);
        if (!v) return;
        if (!best_) {
            best_ = *v;
            return;
        }
        if (auto newer = is_newer(*v, *best_); newer && *newer) best_ = *v;
    }
    [[nodiscard]] std::optional<std::string> result() const {
        return best_ ? std::optional<std::string>(best_->text()) : std::nullopt;
    }

private:
    std::optional<Version> best_;
};

}  // namespace

std::optional<std::string> newest_in_dir(const std::filesystem::path& dir, const std::string& pattern) {
    std::error_code ec;
    Newest best;
    std::regex re;
    try {
        re = std::regex(pattern);
    } catch (const std::regex_error&) {
        return std::nullopt;
    }
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        std::smatch m;
        const auto name = e.path().filename().string();
        if (name.starts_with(".") || !std::regex_match(name, m, re) || m.size() < 2) continue;
        best.offer(m[1].str());
    }
    return best.result();
}

std::optional<std::string> newest_tag(const std::string& output, const std::string& repository) {
    Newest best;
    std::size_t pos = 0;
    while (pos < output.size()) {
        auto end = output.find('\n', pos);
        if (end == std::string::npos) end = output.size();
        const auto line = output.substr(pos, end - pos);
        pos = end + 1;
        const auto colon = line.rfind(':');
        if (colon == std::string::npos || line.substr(0, colon) != repository) continue;
        const auto tag = line.substr(colon + 1);
        if (tag.empty() || tag == "<none>" || tag == "latest") continue;
        best.offer(tag);
    }
    return best.result();
}

std::optional<std::string> Inventory::version(const std::string& component, const std::optional<std::string>& recorded) {
    const auto it = config_.components.find(component);
    if (it == config_.components.end()) return recorded;
    std::lock_guard lock(mu_);
    const auto& src = it->second.source;
    std::error_code ec;
    switch (src.type) {
        case VersionSource::Type::none: return recorded;
        case VersionSource::Type::agent: return std::string(build::version);
        case VersionSource::Type::files: {
            const auto stamp = std::filesystem::last_write_time(src.dir, ec);
            auto c = cache_.find(component);
            if (c != cache_.end() && !ec && c->second.stamp == stamp) return c->second.version;
            auto v = newest_in_dir(src.dir, src.pattern);
            cache_[component] = {v, ec ? std::filesystem::file_time_type{} : stamp, {}};
            return v;
        }
        case VersionSource::Type::docker: {
            // `docker images` is a call to the engine: cached for a minute, dropped after an install.
            auto c = cache_.find(component);
            if (c != cache_.end() && std::chrono::steady_clock::now() - c->second.read_at < std::chrono::minutes(1))
                return c->second.version;
            auto argv = split_command(it->second.install.docker_command);
            argv.insert(argv.end(), {"images", "--format", "{{.Repository}}:{{.Tag}}"});
            const auto r = run_command(argv, {}, std::chrono::seconds(30));
            auto v = r.ok() ? newest_tag(r.out, src.repository) : recorded;
            cache_[component] = {v, {}, std::chrono::steady_clock::now()};
            return v;
        }
        case VersionSource::Type::version_file: {
            auto text = read_file(src.path, 1 << 20);
            if (!text) return recorded;
            auto j = nlohmann::json::parse(*text, nullptr, false);
            if (j.is_discarded() || !j.is_object() || !j.contains(src.field) || !j[src.field].is_string()) return recorded;
            return j[src.field].get<std::string>();
        }
    }
    return recorded;
}

}  // namespace ota::agent
