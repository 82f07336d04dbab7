// Fuzz target `envelope`: a release envelope as it arrives on releases/<component>/<channel>.
//
//  1. open_envelope on the bytes as they are (JSON, shape, schema, key id, signature, fields,
//     expiry): never crashes; an error has a message naming the input.
//  2. The same envelope re-signed with the fuzz test key (fuzz_common.hpp), so mutated manifests
//     get past the signature and reach Manifest::from_json's field checks.
//  Properties of every manifest that verifies:
//   - the canonical form is stable: signed_bytes(parse(canonical)) == signed bytes;
//   - the model round-trips: from_json(to_json(m)) == m;
//   - re-publishing it (make_envelope with the test key) opens to the same manifest.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_common.hpp"
#include "ota/manifest.hpp"

namespace {

using nlohmann::json;

void check_error(const ota::Error& e) {
    OTA_FUZZ_CHECK(!e.message.empty(), "an error without a message, code " + std::string(ota::to_string(e.code)));
    OTA_FUZZ_CHECK(e.message.starts_with("fuzz"), "the error does not name the input: " + e.describe());
}

void check_verified(const ota::VerifiedRelease& v, const json& manifest_json) {
    const auto& m = v.manifest;
    // canonical form is stable
    const std::string bytes = ota::signed_bytes(manifest_json);
    const auto canonical = json::parse(bytes.substr(ota::signed_bytes_prefix.size()), nullptr, false);
    OTA_FUZZ_CHECK(!canonical.is_discarded(), "the canonical form is not JSON: " + bytes);
    OTA_FUZZ_CHECK(ota::signed_bytes(canonical) == bytes, "canonical form not stable: " + bytes);

    // model round trip
    const auto again = ota::Manifest::from_json(json::parse(m.to_json().dump()));
    OTA_FUZZ_CHECK(again.has_value(), "to_json of a valid manifest does not parse: " + m.to_json().dump() + " -> " +
                                          again.error().describe());
    OTA_FUZZ_CHECK(*again == m, "manifest round trip changed it: " + m.to_json().dump() + " vs " + again->to_json().dump());

    // re-publish: what ota-publish would send opens to the same manifest
    const auto env = ota::make_envelope(m, ota::fuzz::test_key());
    const auto reopened = ota::open_envelope(env, ota::fuzz::test_trust(), ota::fuzz::fixed_now(), "fuzz-republished");
    OTA_FUZZ_CHECK(reopened.has_value(), "a re-signed valid manifest does not open: " + env + " -> " + reopened.error().describe());
    OTA_FUZZ_CHECK(reopened->manifest == m, "re-signed manifest differs: " + env);
}

void open_and_check(std::string_view text, const char* what) {
    const auto r = ota::open_envelope(text, ota::fuzz::test_trust(), ota::fuzz::fixed_now(), what);
    if (!r) {
        check_error(r.error());
        return;
    }
    OTA_FUZZ_CHECK(r->envelope == text, "the envelope text is not forwarded unchanged");
    const auto j = json::parse(text);  // it verified, so it is JSON with a manifest object
    check_verified(*r, j.at("manifest"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    open_and_check(text, "fuzz-input");

    // Re-sign what is there, so the manifest checks behind the signature get fuzzed too.
    auto j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return 0;
    auto it = j.find("manifest");
    if (it == j.end() || !it->is_object()) return 0;
    std::string bytes;
    try {
        bytes = ota::signed_bytes(*it);
    } catch (const json::exception&) {
        return 0;  // not UTF-8: open_envelope refused it above (json_invalid)
    }
    (*it)["key_id"] = ota::fuzz::test_key().public_key().key_id();
    j["signature"] = ota::crypto::base64_encode(ota::fuzz::test_key().sign(ota::signed_bytes(*it)));
    open_and_check(j.dump(), "fuzz-resigned");
    return 0;
}
