#include "publisher.hpp"

#include <algorithm>

#include "ota/file_crypto.hpp"
#include "ota/files.hpp"
#include "ota/topics.hpp"

namespace ota::publisher {
namespace {

namespace fs = std::filesystem;

// Check the manifest exactly as a verifier will read it.
Expected<Manifest> validated(Manifest m) {
    auto json = nlohmann::json::parse(m.to_json().dump());
    if (auto checked = Manifest::from_json(json); !checked) return std::unexpected(checked.error());
    return m;
}

}  // namespace

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

    return validated(std::move(m));
}

Expected<EncryptionKey> load_encryption_key(const fs::path& file, const std::string& key_id) {
    const bool id_ok = !key_id.empty() && key_id.size() <= 64 && key_id.front() != '.' &&
                       std::all_of(key_id.begin(), key_id.end(), [](char c) {
                           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                                  c == '_' || c == '-';
                       });
    if (!id_ok)
        return fail(ErrorCode::config_invalid, "--encrypt-key-id: expected 1-64 characters of A-Z a-z 0-9 . _ - not starting "
                                               "with '.', got \"" + key_id + "\"");
    auto key = crypto::load_aes_key(file);
    if (!key) return std::unexpected(key.error().with_context("--encrypt-key"));
    return EncryptionKey{std::move(*key), key_id};
}

Expected<Manifest> prepare_release(const ReleaseRequest& rq, const fs::path& copy_to, Timestamp now) {
    if (!rq.encrypt) {
        auto m = build_manifest(rq, now);
        if (!m || copy_to.empty()) return m;
        auto dest = copy_destination(copy_to, rq.url);
        if (!dest) return std::unexpected(dest.error());
        if (auto c = copy_file_atomic(rq.artifact, *dest); !c) return std::unexpected(c.error());
        return m;
    }
    if (copy_to.empty())
        return fail(ErrorCode::config_invalid, "--encrypt-key needs --copy-to: the encrypted artifact is written only there");
    auto dest = copy_destination(copy_to, rq.url);
    if (!dest) return std::unexpected(dest.error());
    std::error_code ec;
    fs::create_directories(dest->parent_path(), ec);
    if (ec) return fail(ErrorCode::io_error, "cannot create directory " + dest->parent_path().string() + ": " + ec.message());
    // Encrypted beside its final name (hidden), renamed into place once the manifest is valid.
    const auto staged = dest->parent_path() / ("." + dest->filename().string() + ".encrypting");
    auto params = crypto::encrypt_file(rq.artifact, staged, rq.encrypt->key);
    if (!params) return std::unexpected(params.error().with_context("artifact"));
    auto cipher = rq;
    cipher.artifact = staged;
    auto m = build_manifest(cipher, now);
    if (m) {
        m->artifact.encryption =
            Encryption{std::string(crypto::aes_256_gcm), rq.encrypt->key_id, params->iv, params->tag};
        m = validated(std::move(*m));
    }
    if (m) {
        if (fs::rename(staged, *dest, ec); ec)
            m = fail(ErrorCode::io_error, "renaming " + staged.string() + " to " + dest->string() + ": " + ec.message());
        else if (auto d = fsync_dir(dest->parent_path()); !d)
            m = std::unexpected(d.error());
    }
    if (!m) fs::remove(staged, ec);
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
    client.leave_network_threads_to_exit();  // the command is done: return now, not ~100 ms later
    if (!p) return p;
    return d;
}

}  // namespace ota::publisher
