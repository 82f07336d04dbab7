#include "ota/manifest.hpp"

#include <algorithm>

#include "ota/json.hpp"
#include "ota/topics.hpp"

namespace ota {
namespace {

bool is_lower_hex(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// "linux/arm64", "linux/amd64", "linux/arm/v7": lowercase words separated by '/'.
bool is_platform(std::string_view s) {
    if (s.empty() || s.size() > 64 || s.front() == '/' || s.back() == '/') return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '/' || c == '_' || c == '-' || c == '.';
    });
}


Expected<std::optional<Encryption>> read_encryption(ObjectReader& parent) {
    const auto* obj = parent.object("encryption", false);
    if (!obj) return std::optional<Encryption>{};
    ObjectReader r(*obj, parent.path_of("encryption"), ErrorCode::manifest_invalid);
    Encryption e;
    e.alg = r.str("alg");
    e.key_id = r.str("key_id");
    e.iv = r.str("iv");
    e.tag = r.str("tag");
    r.reject_unknown();
    if (r.ok() && e.alg != "aes-256-gcm") r.fail("alg", "unsupported algorithm \"" + e.alg + "\" (expected aes-256-gcm)");
    if (r.ok()) {
        auto iv = crypto::base64_decode(e.iv);
        if (!iv || iv->size() != 12) r.fail("iv", "expected base64 of 12 bytes");
    }
    if (r.ok()) {
        auto tag = crypto::base64_decode(e.tag);
        if (!tag || tag->size() != 16) r.fail("tag", "expected base64 of 16 bytes");
    }
    if (!r.ok()) return std::unexpected(*r.error());
    return std::optional<Encryption>(std::move(e));
}

}  // namespace

std::string_view to_string(InstallType type) noexcept {
    switch (type) {
        case InstallType::file: return "file";
        case InstallType::archive: return "archive";
        case InstallType::docker_image: return "docker-image";
        case InstallType::binary: return "binary";
        case InstallType::self: return "self";
    }
    return "file";
}

Expected<InstallType> parse_install_type(std::string_view name) {
    for (auto t : {InstallType::file, InstallType::archive, InstallType::docker_image, InstallType::binary, InstallType::self})
        if (name == to_string(t)) return t;
    return fail(ErrorCode::manifest_invalid, "unknown install type \"" + std::string(name) +
                                                 "\" (expected file, archive, docker-image, binary or self)");
}

nlohmann::ordered_json Manifest::to_json() const {
    nlohmann::ordered_json j;
    j["schema"] = schema;
    j["component"] = component;
    j["version"] = version;
    j["version_scheme"] = std::string(to_string(version_scheme));
    j["channel"] = channel;
    auto& a = j["artifact"];
    a["url"] = artifact.url;
    a["size"] = artifact.size;
    a["sha256"] = artifact.sha256;
    if (artifact.encryption) {
        const auto& e = *artifact.encryption;
        a["encryption"] = {{"alg", e.alg}, {"key_id", e.key_id}, {"iv", e.iv}, {"tag", e.tag}};
    }
    auto& in = j["install"];
    in["type"] = std::string(to_string(install.type));
    if (!install.target.empty()) in["target"] = install.target;
    if (!install.service.empty()) in["service"] = install.service;
    if (!compatibility.platforms.empty() || !compatibility.min_agent_version.empty()) {
        auto& c = j["compatibility"];
        if (!compatibility.platforms.empty()) c["platforms"] = compatibility.platforms;
        if (!compatibility.min_agent_version.empty()) c["min_agent_version"] = compatibility.min_agent_version;
    }
    j["created"] = format_utc(created);
    if (expires) j["expires"] = format_utc(*expires);
    if (rollback) j["rollback"] = true;
    j["key_id"] = key_id;
    return j;
}

Expected<Manifest> Manifest::from_json(const nlohmann::json& json) {
    ObjectReader r(json, "manifest", ErrorCode::manifest_invalid);
    Manifest m;
    // The schema first: a newer schema may differ in any other field.
    const auto* schema = r.raw("schema");
    if (r.ok() && !schema) r.fail("schema", "missing (expected 1)");
    if (r.ok() && (!schema->is_number_integer() || schema->get<std::int64_t>() != manifest_schema)) {
        return fail(ErrorCode::schema_unsupported,
                    "manifest.schema: " + brief(*schema) + " is not supported (this build reads schema " +
                        std::to_string(manifest_schema) + "); upgrade the reader");
    }
    {
        m.component = r.str("component");
        if (r.ok() && !is_valid_segment(m.component))
            r.fail("component", "\"" + m.component + "\" is not a valid name (1-64 of A-Z a-z 0-9 . _ -)");
        m.version = r.str("version");
        const auto scheme = r.str("version_scheme");
        if (r.ok()) {
            if (auto s = parse_version_scheme(scheme)) m.version_scheme = *s;
            else r.fail("version_scheme", s.error().message);
        }
        if (r.ok()) {
            if (auto v = Version::parse(m.version, m.version_scheme); !v) r.fail("version", v.error().message);
        }
        m.channel = r.str("channel");
        if (r.ok() && !is_valid_segment(m.channel))
            r.fail("channel", "\"" + m.channel + "\" is not a valid name (1-64 of A-Z a-z 0-9 . _ -)");

        if (const auto* a = r.object("artifact", true)) {
            ObjectReader ar(*a, "manifest.artifact", ErrorCode::manifest_invalid);
            m.artifact.url = ar.str("url");
            if (ar.ok() && !m.artifact.url.starts_with("https://"))
                ar.fail("url", "must be an https:// URL, got \"" + m.artifact.url + "\"");
            m.artifact.size = ar.u64("size");
            if (ar.ok() && m.artifact.size == 0) ar.fail("size", "must be greater than 0");
            m.artifact.sha256 = ar.str("sha256");
            if (ar.ok() && (m.artifact.sha256.size() != 64 || !is_lower_hex(m.artifact.sha256)))
                ar.fail("sha256", "expected 64 lowercase hex characters, got \"" + m.artifact.sha256 + "\"");
            if (ar.ok()) {
                auto enc = read_encryption(ar);
                if (!enc) return std::unexpected(enc.error());
                m.artifact.encryption = *enc;
            }
            ar.reject_unknown();
            if (!ar.ok()) return std::unexpected(*ar.error());
        }
        if (const auto* in = r.object("install", true)) {
            ObjectReader ir(*in, "manifest.install", ErrorCode::manifest_invalid);
            const auto type = ir.str("type");
            if (ir.ok()) {
                if (auto t = parse_install_type(type)) m.install.type = *t;
                else ir.fail("type", t.error().message);
            }
            m.install.target = ir.opt_str("target").value_or("");
            m.install.service = ir.opt_str("service").value_or("");
            ir.reject_unknown();
            if (ir.ok()) {
                const auto t = m.install.type;
                const bool needs_target = t == InstallType::file || t == InstallType::archive || t == InstallType::binary;
                if (needs_target && m.install.target.empty())
                    ir.fail("target", std::string("missing (required for install type ") + std::string(to_string(t)) + ")");
                else if (!m.install.target.empty() && !m.install.target.starts_with("/"))
                    ir.fail("target", "must be an absolute path, got \"" + m.install.target + "\"");
                else if (m.install.target.find("/../") != std::string::npos || m.install.target.ends_with("/.."))
                    ir.fail("target", "must not contain '..'");
                else if (t == InstallType::docker_image && m.install.service.empty())
                    ir.fail("service", "missing (required for install type docker-image: the compose service)");
            }
            if (!ir.ok()) return std::unexpected(*ir.error());
        }
        if (const auto* c = r.object("compatibility", false)) {
            ObjectReader cr(*c, "manifest.compatibility", ErrorCode::manifest_invalid);
            m.compatibility.platforms = cr.str_list("platforms", false);
            for (std::size_t i = 0; cr.ok() && i < m.compatibility.platforms.size(); ++i)
                if (!is_platform(m.compatibility.platforms[i]))
                    cr.fail("platforms[" + std::to_string(i) + "]",
                            "\"" + m.compatibility.platforms[i] + "\" is not a platform like linux/arm64");
            m.compatibility.min_agent_version = cr.opt_str("min_agent_version").value_or("");
            if (cr.ok() && !m.compatibility.min_agent_version.empty()) {
                if (auto v = Version::parse(m.compatibility.min_agent_version, VersionScheme::semver); !v)
                    cr.fail("min_agent_version", v.error().message);
            }
            cr.reject_unknown();
            if (!cr.ok()) return std::unexpected(*cr.error());
        }
        std::optional<Timestamp> created;
        created = r.utc("created", true);
        if (created) m.created = *created;
        m.expires = r.utc("expires", false);
        if (r.ok() && m.expires && *m.expires <= m.created) r.fail("expires", "must be later than created");
        m.rollback = r.boolean("rollback", false);
        m.key_id = r.str("key_id");
        if (r.ok() && (m.key_id.size() != 16 || !is_lower_hex(m.key_id)))
            r.fail("key_id", "expected 16 lowercase hex characters, got \"" + m.key_id + "\"");
        r.reject_unknown();
    }
    if (!r.ok()) return std::unexpected(*r.error());
    return m;
}

std::string signed_bytes(const nlohmann::json& manifest) {
    // nlohmann::json keeps object keys in a std::map: dump() emits them sorted by byte value,
    // without whitespace, with the minimal escapes listed in manifest.hpp.
    return std::string(signed_bytes_prefix) + manifest.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
}

std::string make_envelope(Manifest manifest, const crypto::PrivateKey& key) {
    manifest.key_id = key.public_key().key_id();
    const auto ordered = manifest.to_json();
    const nlohmann::json canonical = nlohmann::json::parse(ordered.dump());
    nlohmann::ordered_json env;
    env["manifest"] = ordered;
    env["signature"] = crypto::base64_encode(key.sign(signed_bytes(canonical)));
    return env.dump();
}

Expected<VerifiedRelease> open_envelope(std::string_view text, const crypto::TrustStore& trusted, Timestamp now,
                                        std::string_view what) {
    auto in_context = [&](const Error& e) { return std::unexpected(e.with_context(what)); };
    auto json = parse_json(text, what);
    if (!json) return std::unexpected(json.error());
    ObjectReader env(*json, "envelope", ErrorCode::manifest_invalid);
    const auto* manifest = env.object("manifest", true);
    const auto signature_b64 = env.str("signature");
    env.reject_unknown();
    if (!env.ok()) return in_context(*env.error());

    // Schema and key id are read before the signature is checked, to say clearly why a
    // manifest from a newer publisher or an untrusted key is refused.
    const auto schema = manifest->find("schema");
    if (schema == manifest->end())
        return in_context(Error{ErrorCode::manifest_invalid, "manifest.schema: missing (expected 1)"});
    if (!schema->is_number_integer() || schema->get<std::int64_t>() != manifest_schema)
        return in_context(Error{ErrorCode::schema_unsupported,
                                "manifest.schema: " + brief(*schema) + " is not supported (this build reads schema " +
                                    std::to_string(manifest_schema) + "); upgrade the reader"});
    const auto key_id = manifest->find("key_id");
    if (key_id == manifest->end() || !key_id->is_string())
        return in_context(Error{ErrorCode::manifest_invalid, "manifest.key_id: missing (expected a string)"});
    auto signature = crypto::base64_decode(signature_b64);
    if (!signature || signature->size() != 64)
        return in_context(Error{ErrorCode::signature_invalid, "envelope.signature: expected base64 of 64 bytes"});
    std::string bytes;
    try {
        bytes = signed_bytes(*manifest);
    } catch (const nlohmann::json::exception&) {
        return in_context(Error{ErrorCode::json_invalid, "manifest: strings must be valid UTF-8"});
    }
    if (auto ok = trusted.verify(key_id->get<std::string>(), bytes, *signature); !ok) return in_context(ok.error());

    auto parsed = Manifest::from_json(*manifest);
    if (!parsed) return in_context(parsed.error());
    if (parsed->expires && now >= *parsed->expires)
        return in_context(Error{ErrorCode::manifest_expired, "manifest for " + parsed->component + " " + parsed->version +
                                                                 " expired at " + format_utc(*parsed->expires)});
    return VerifiedRelease{std::move(*parsed), std::string(text)};
}

}  // namespace ota
