// Fuzz target `keyset`: a keyset document as it arrives on <prefix>/keyset (shared/include/ota/keyset.hpp).
//
//  1. The bytes as they are, offered to a KeysetStore whose root is the fuzz test key, on a fresh
//     state file: never crashes; an error names the input; nothing is persisted unless accepted.
//  2. The parsed keyset re-signed by the test key (made its root), so mutated keysets reach the
//     acceptance rules. Properties of every keyset that parses:
//   - the model round-trips: from_json(to_json(k)) gives the same signed bytes;
//   - signed by its root it is accepted (unless already expired), persisted, and a store opened on
//     the file holds the same version; offered again it is `same`, an older version is `older`;
//   - the same version with other content is refused (keyset_invalid);
//   - the release keys it yields are exactly its keys that have not expired.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_common.hpp"
#include "ota/json.hpp"
#include "ota/keyset.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path& state_dir() {
    static const fs::path dir = [] {
        auto d = fs::temp_directory_path() / ("ota-fuzz-keyset-" + std::to_string(::getpid()));
        fs::create_directories(d);
        return d;
    }();
    return dir;
}

ota::KeysetStore fresh_store() {
    const auto file = state_dir() / "keyset.json";
    std::error_code ec;
    fs::remove(file, ec);
    auto s = ota::KeysetStore::open(ota::fuzz::test_key().public_key(), file);
    OTA_FUZZ_CHECK(s.has_value(), "a store on a missing file does not open: " + s.error().describe());
    return std::move(*s);
}

void check_error(const ota::Error& e) {
    OTA_FUZZ_CHECK(!e.message.empty(), "an error without a message, code " + std::string(ota::to_string(e.code)));
    OTA_FUZZ_CHECK(e.message.find("fuzz") != std::string::npos, "the error does not name the input: " + e.describe());
    OTA_FUZZ_CHECK(ota::printable(e.message, e.message.size()) == e.message, "the error is not printable: " + e.describe());
}

void check_signed(ota::Keyset k) {
    const auto now = ota::fuzz::fixed_now();
    k.root = ota::fuzz::test_key().public_key();
    const auto doc = ota::keyset_document(k, {&ota::fuzz::test_key()});
    // round trip of the model
    const auto parsed = ota::parse_keyset(doc, "fuzz-resigned");
    OTA_FUZZ_CHECK(parsed.has_value(), "a re-signed keyset does not parse: " + doc + " -> " + parsed.error().describe());
    OTA_FUZZ_CHECK(ota::keyset_signed_bytes(parsed->keyset) == ota::keyset_signed_bytes(k), "round trip changed it: " + doc);

    auto store = fresh_store();
    const auto r = store.offer(doc, now, "fuzz-resigned");
    if (now >= k.expires) {
        OTA_FUZZ_CHECK(!r && r.error().code == ota::ErrorCode::keyset_expired, "an expired keyset was not refused: " + doc);
        return;
    }
    OTA_FUZZ_CHECK(r && *r == ota::KeysetStore::Offer::accepted,
                   "a keyset signed by the root was not accepted: " + doc + (r ? "" : " -> " + r.error().describe()));
    auto reopened = ota::KeysetStore::open(ota::fuzz::test_key().public_key(), state_dir() / "keyset.json");
    OTA_FUZZ_CHECK(reopened && reopened->current() && reopened->current()->keyset.version == k.version,
                   "the accepted keyset was not persisted: " + doc);
    const auto again = store.offer(doc, now, "fuzz-again");
    OTA_FUZZ_CHECK(again && *again == ota::KeysetStore::Offer::same, "the same keyset again is not `same`: " + doc);
    if (k.version > 1) {
        auto older = k;
        --older.version;
        const auto o = store.offer(ota::keyset_document(older, {&ota::fuzz::test_key()}), now, "fuzz-older");
        OTA_FUZZ_CHECK(o && *o == ota::KeysetStore::Offer::older, "an older version is not `older`: " + doc);
    }
    auto other = k;
    other.expires = k.expires + std::chrono::seconds(1);
    const auto conflict = store.offer(ota::keyset_document(other, {&ota::fuzz::test_key()}), now, "fuzz-conflict");
    OTA_FUZZ_CHECK(!conflict && conflict.error().code == ota::ErrorCode::keyset_invalid,
                   "the same version with other content was not refused: " + doc);
    // the trusted release keys are exactly the keyset's unexpired keys
    const auto keys = store.release_keys(now, {});
    OTA_FUZZ_CHECK(keys.has_value(), "an accepted, unexpired keyset yields no keys");
    std::size_t valid = 0;
    for (const auto& key : k.keys) {
        const bool live = !key.expires || now < *key.expires;
        valid += live;
        OTA_FUZZ_CHECK((keys->find(key.key.key_id()) != nullptr) == live, "key " + key.key.key_id() + " trusted wrongly");
    }
    OTA_FUZZ_CHECK(keys->size() == valid, "the keyset yields keys it does not list");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    auto store = fresh_store();
    const auto r = store.offer(text, ota::fuzz::fixed_now(), "fuzz-input");
    if (!r) {
        check_error(r.error());
        OTA_FUZZ_CHECK(!store.current() && !fs::exists(state_dir() / "keyset.json"), "a refused keyset was kept");
    }
    if (const auto parsed = ota::parse_keyset(text, "fuzz-input")) check_signed(parsed->keyset);
    return 0;
}
