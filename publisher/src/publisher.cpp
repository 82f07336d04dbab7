#include "publisher.hpp"

#include "ota/topics.hpp"

namespace ota::publisher {

Expected<Manifest> build_manifest(const ReleaseRequest& rq, Timestamp now) {
    auto bad = [](std::string msg) { return fail(ErrorCode::manifest_invalid, std::move(msg)); };
    if (auto ok = check_segment("component", rq.component); !ok) return std::unexpected(ok.error());
    if (auto ok = check_segment("channel", rq.channel); !ok) return std::unexpected(ok.error());
    Manifest m;
    m.component = rq.component;
    m.channel = rq.channel;
    m.version = rq.version;
    auto scheme = rq.version_scheme.empty() ? detect_version_scheme(rq.version) : parse_version_scheme(rq.version_scheme);
    if (!scheme) return std::unexpected(scheme.error().with_context("--version"));
    m.version_scheme = *scheme;
    if (auto v = Version::parse(rq.version, *scheme); !v) return std::unexpected(v.error().with_context("--version"));

    auto type = parse_install_type(rq.install_type);
    if (!type) return std::unexpected(type.error().with_context("--install"));
    m.install = Install{*type, rq.target, rq.service};
    m.compatibility = Compatibility{rq.platforms, rq.min_agent_version};
    if (!rq.url.starts_with("https://")) return bad("--url: must be an https:// URL, got \"" + rq.url + "\"");
    m.artifact.url = rq.url;
    if (rq.expires_in_days < 0) return bad("--expires-in-days: must be 0 (never) or more");
    m.created = now;
    if (rq.expires_in_days > 0) m.expires = now + std::chrono::days{rq.expires_in_days};
    m.rollback = rq.rollback;

    auto digest = crypto::sha256_file(rq.artifact);
    if (!digest) return std::unexpected(digest.error().with_context("artifact"));
    m.artifact.size = digest->size;
    m.artifact.sha256 = digest->sha256;
    m.key_id = std::string(16, '0');  // replaced when signed

    // Validate the result exactly as a verifier will.
    auto json = nlohmann::json::parse(m.to_json().dump());
    if (auto checked = Manifest::from_json(json); !checked) return std::unexpected(checked.error());
    return m;
}

Expected<std::filesystem::path> copy_destination(const std::filesystem::path& dir, const std::string& url) {
    const auto scheme_end = url.find("://");
    const auto path_start = scheme_end == std::string::npos ? std::string::npos : url.find('/', scheme_end + 3);
    if (path_start == std::string::npos || path_start + 1 >= url.size())
        return fail(ErrorCode::manifest_invalid, "--url \"" + url + "\" has no path to copy the artifact to");
    auto rel = url.substr(path_start + 1);
    if (const auto q = rel.find_first_of("?#"); q != std::string::npos) rel.resize(q);
    const std::filesystem::path relative(rel);
    for (const auto& part : relative)
        if (part == ".." || part == ".")
            return fail(ErrorCode::manifest_invalid, "--url \"" + url + "\": the path must not contain '.' or '..'");
    return dir / relative;
}

Expected<void> publish_retained(const mqtt::Options& options, const std::string& topic, const std::string& payload) {
    mqtt::Client client(options);
    if (auto c = client.connect(); !c) return c;
    auto p = client.publish(topic, payload, 1, true);
    auto d = client.disconnect();
    if (!p) return p;
    return d;
}

}  // namespace ota::publisher
