#include "ota/keyset.hpp"

#include <algorithm>
#include <set>

#include "ota/files.hpp"
#include "ota/json.hpp"

namespace ota {
namespace {

constexpr std::size_t max_keyset_bytes = 256 * 1024;
constexpr std::size_t max_keys = 64;

Expected<crypto::PublicKey> read_key(const nlohmann::json& obj, const std::string& path) {
    ObjectReader r(obj, path, ErrorCode::keyset_invalid);
    const auto id = r.str("key_id");
    const auto b64 = r.str("public_key");
    std::optional<crypto::PublicKey> key;
    if (r.ok()) {
        auto raw = crypto::base64_decode(b64);
        auto k = raw ? crypto::PublicKey::from_raw(*raw) : std::unexpected(raw.error());
        if (!k) r.fail("public_key", "expected base64 of a raw 32-byte Ed25519 public key");
        else if (k->key_id() != id) r.fail("key_id", "\"" + id + "\" is not the id of its public key (" + k->key_id() + ")");
        else key = std::move(*k);
    }
    (void)r.raw("expires");  // read by the caller
    r.reject_unknown();
    if (!r.ok()) return std::unexpected(*r.error());
    return *key;
}

nlohmann::ordered_json key_json(const crypto::PublicKey& k) {
    return nlohmann::ordered_json{{"key_id", k.key_id()}, {"public_key", crypto::base64_encode(k.raw())}};
}


}  // namespace

std::string_view to_string(KeysetStore::Offer offer) noexcept {
    switch (offer) {
        case KeysetStore::Offer::accepted: return "accepted";
        case KeysetStore::Offer::same: return "same";
        case KeysetStore::Offer::older: return "older";
    }
    return "older";
}

nlohmann::ordered_json Keyset::to_json() const {
    nlohmann::ordered_json j;
    j["schema"] = schema;
    j["version"] = version;
    j["created"] = format_utc(created);
    j["expires"] = format_utc(expires);
    j["root"] = key_json(root);
    auto& ks = j["keys"] = nlohmann::ordered_json::array();
    for (const auto& k : keys) {
        auto kj = key_json(k.key);
        if (k.expires) kj["expires"] = format_utc(*k.expires);
        ks.push_back(std::move(kj));
    }
    j["revoked"] = revoked;
    return j;
}

Expected<Keyset> Keyset::from_json(const nlohmann::json& json) {
    ObjectReader r(json, "keyset", ErrorCode::keyset_invalid);
    Keyset k;
    const auto* schema = r.raw("schema");
    if (r.ok() && (!schema || !schema->is_number_integer() || schema->get<std::int64_t>() != keyset_schema))
        return fail(ErrorCode::schema_unsupported, "keyset.schema: " + (schema ? brief(*schema) : std::string("missing")) +
                                                       " is not supported (this build reads schema 1)");
    k.version = r.u64("version");
    if (r.ok() && k.version == 0) r.fail("version", "must be at least 1");
    if (auto t = r.utc("created", true)) k.created = *t;
    if (auto t = r.utc("expires", true)) k.expires = *t;
    if (r.ok() && k.expires <= k.created) r.fail("expires", "must be later than created");
    if (const auto* root = r.object("root", true); root && r.ok()) {
        auto key = read_key(*root, "keyset.root");
        if (!key) return std::unexpected(key.error());
        k.root = std::move(*key);
    }
    const auto* keys = r.raw("keys");
    if (r.ok() && (!keys || !keys->is_array())) r.fail("keys", "expected a list of keys");
    if (r.ok() && keys->size() > max_keys) r.fail("keys", "more than " + std::to_string(max_keys) + " keys");
    std::set<std::string> ids;
    for (std::size_t i = 0; r.ok() && i < keys->size(); ++i) {
        const auto path = "keyset.keys[" + std::to_string(i) + "]";
        auto key = read_key((*keys)[i], path);
        if (!key) return std::unexpected(key.error());
        ObjectReader kr((*keys)[i], path, ErrorCode::keyset_invalid);
        KeysetKey entry{std::move(*key), kr.utc("expires", false)};
        if (!kr.ok()) return std::unexpected(*kr.error());
        if (!ids.insert(entry.key.key_id()).second) r.fail("keys", "key " + entry.key.key_id() + " is listed twice");
        k.keys.push_back(std::move(entry));
    }
    k.revoked = r.str_list("revoked", false);
    for (const auto& id : k.revoked)
        if (r.ok() && ids.contains(id)) r.fail("revoked", "key " + id + " is both trusted and revoked");
    r.reject_unknown();
    if (!r.ok()) return std::unexpected(*r.error());
    return k;
}

crypto::TrustStore Keyset::trust_store(Timestamp now) const {
    crypto::TrustStore t;
    for (const auto& k : keys)
        if (!k.expires || now < *k.expires) t.add(k.key);
    return t;
}

const KeysetKey* Keyset::find(std::string_view key_id) const {
    for (const auto& k : keys)
        if (k.key.key_id() == key_id) return &k;
    return nullptr;
}

std::string keyset_signed_bytes(const Keyset& keyset) {
    // Through nlohmann::json (a std::map): keys sorted by byte value, the canonical form.
    const nlohmann::json canonical = nlohmann::json::parse(keyset.to_json().dump());
    return std::string(keyset_signed_prefix) + canonical.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
}

std::string keyset_document(const Keyset& keyset, const std::vector<const crypto::PrivateKey*>& signers) {
    const auto bytes = keyset_signed_bytes(keyset);
    nlohmann::ordered_json doc;
    doc["keyset"] = keyset.to_json();
    auto& sigs = doc["signatures"] = nlohmann::ordered_json::array();
    for (const auto* s : signers)
        sigs.push_back({{"key_id", s->public_key().key_id()}, {"signature", crypto::base64_encode(s->sign(bytes))}});
    return doc.dump(2);
}

Expected<SignedKeyset> parse_keyset(std::string_view text, std::string_view what) {
    auto in_context = [&](const Error& e) { return std::unexpected(e.with_context(printable(what))); };
    if (text.size() > max_keyset_bytes)
        return in_context(Error{ErrorCode::keyset_invalid, "larger than " + std::to_string(max_keyset_bytes) + " bytes"});
    auto json = parse_json(text, what);
    if (!json) return std::unexpected(json.error());
    ObjectReader doc(*json, "document", ErrorCode::keyset_invalid);
    const auto* body = doc.object("keyset", true);
    const auto* sigs = doc.raw("signatures");
    doc.reject_unknown();
    if (doc.ok() && (!sigs || !sigs->is_array())) doc.fail("signatures", "expected a list of signatures");
    if (!doc.ok()) return in_context(*doc.error());
    auto keyset = Keyset::from_json(*body);
    if (!keyset) return in_context(keyset.error());
    SignedKeyset out{std::move(*keyset), {}, std::string(text)};
    for (std::size_t i = 0; i < sigs->size() && i < 8; ++i) {
        ObjectReader sr((*sigs)[i], "document.signatures[" + std::to_string(i) + "]", ErrorCode::keyset_invalid);
        KeysetSignature s{sr.str("key_id"), {}};
        const auto b64 = sr.str("signature");
        sr.reject_unknown();
        if (!sr.ok()) return in_context(*sr.error());
        auto raw = crypto::base64_decode(b64);
        if (!raw || raw->size() != 64)
            return in_context(Error{ErrorCode::signature_invalid, "document.signatures[" + std::to_string(i) +
                                                                      "].signature: expected base64 of 64 bytes"});
        s.signature = std::move(*raw);
        out.signatures.push_back(std::move(s));
    }
    return out;
}

Expected<void> verify_keyset(const SignedKeyset& doc, const crypto::PublicKey& trusted_root, std::string_view what) {
    const auto bytes = keyset_signed_bytes(doc.keyset);
    auto signed_by = [&](const crypto::PublicKey& key) -> Expected<void> {
        for (const auto& s : doc.signatures)
            if (s.key_id == key.key_id()) {
                if (key.verify(bytes, s.signature)) return {};
                return fail(ErrorCode::signature_invalid, std::string(printable(what)) + ": the signature of root key " +
                                                              key.key_id() + " does not verify");
            }
        return fail(doc.signatures.empty() ? ErrorCode::signature_invalid : ErrorCode::unknown_key,
                    std::string(printable(what)) + ": not signed by the trusted root key " + key.key_id());
    };
    if (auto ok = signed_by(trusted_root); !ok) return ok;
    if (doc.keyset.root.key_id() != trusted_root.key_id()) {
        // Root rotation: the old root vouches for the new one, and the new one proves it holds
        // its private key; from now on only the new root is trusted.
        if (auto ok = signed_by(doc.keyset.root); !ok)
            return fail(ok.error().code, ok.error().message + " (a keyset that rotates the root must be signed by both roots)");
    }
    return {};
}

Expected<KeysetStore> KeysetStore::open(crypto::PublicKey provisioned_root, std::filesystem::path state_file) {
    KeysetStore store(std::move(provisioned_root), std::move(state_file));
    std::error_code ec;
    if (!std::filesystem::exists(store.file_, ec)) return store;
    auto text = read_file(store.file_, max_keyset_bytes + 1);
    if (!text) return std::unexpected(text.error());
    auto doc = parse_keyset(*text, store.file_.string());
    if (!doc) return std::unexpected(doc.error());
    // Written only after it was verified; its own root signed it (checked again against damage).
    if (auto ok = verify_keyset(*doc, doc->keyset.root, store.file_.string()); !ok) return std::unexpected(ok.error());
    store.current_ = std::move(*doc);
    return store;
}

const crypto::PublicKey& KeysetStore::root() const { return current_ ? current_->keyset.root : provisioned_; }

Expected<KeysetStore::Offer> KeysetStore::offer(std::string_view text, Timestamp now, std::string_view what) {
    auto doc = parse_keyset(text, what);
    if (!doc) return std::unexpected(doc.error());
    if (current_) {
        const auto have = current_->keyset.version, got = doc->keyset.version;
        if (got < have) return Offer::older;
        if (got == have) {
            if (keyset_signed_bytes(doc->keyset) == keyset_signed_bytes(current_->keyset)) return Offer::same;
            return fail(ErrorCode::keyset_invalid, std::string(printable(what)) + ": version " + std::to_string(got) +
                                                       " was accepted before with other content; refused");
        }
    }
    if (auto ok = verify_keyset(*doc, root(), what); !ok) return std::unexpected(ok.error());
    if (now >= doc->keyset.expires)
        return fail(ErrorCode::keyset_expired, std::string(printable(what)) + ": keyset version " +
                                                   std::to_string(doc->keyset.version) + " expired at " +
                                                   format_utc(doc->keyset.expires));
    if (auto w = write_file_atomic(file_, doc->text, 0644); !w)
        return fail(w.error().code, "keyset version " + std::to_string(doc->keyset.version) + " not accepted: " + w.error().message);
    current_ = std::move(*doc);
    return Offer::accepted;
}

Expected<crypto::TrustStore> KeysetStore::release_keys(Timestamp now, const crypto::TrustStore& provisioned) const {
    if (!current_) return provisioned;
    if (now >= current_->keyset.expires)
        return fail(ErrorCode::keyset_expired, "the trusted keyset (version " + std::to_string(current_->keyset.version) +
                                                   ") expired at " + format_utc(current_->keyset.expires) +
                                                   "; no new install until a fresh keyset is published");
    return current_->keyset.trust_store(now);
}

}  // namespace ota
