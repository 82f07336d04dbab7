// Fuzz target `agent_message`: what the agent reads from the broker (device-agent/src/messages.hpp,
// pure functions from branch agent-net). The first byte picks the message, the rest is the payload:
//   'a' devices/<id>/assignment        parse_assignment
//   'w' fleets/<f>/waves/<w>/<comp>    parse_wave (then the offered envelope through open_envelope,
//                                      as the agent verifies it, with the fuzz test key trusted)
//   anything else: devices/<id>/cmd    parse_cmd
// Properties: nothing throws (the functions are noexcept: a throw would terminate); error messages
// are printable (documented: non-UTF-8 bytes appear as \xNN); an assignment has fleet and wave; a
// wave offer's envelope goes through open_envelope without a crash; retry/install/rollback name a component and
// install carries a release; dump_safe always gives JSON.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_common.hpp"
#include "messages.hpp"
#include "ota/manifest.hpp"

namespace {

bool printable(std::string_view s) {
    // UTF-8 multi-byte sequences are fine; control characters are not (they would garble a log line).
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return false;
    return true;
}

void check_error(const ota::Error& e) {
    OTA_FUZZ_CHECK(!e.message.empty(), "an error without a message");
    OTA_FUZZ_CHECK(printable(e.message), "an error message that is not printable: " + e.describe());
    OTA_FUZZ_CHECK(nlohmann::json::accept(nlohmann::json(e.message).dump(-1, ' ', false, nlohmann::json::error_handler_t::strict)),
                   "an error message that is not UTF-8: " + e.describe());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const char kind = static_cast<char>(data[0]);
    const std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (kind) {
        case 'a': {
            auto a = ota::agent::parse_assignment(payload);
            if (!a) return check_error(a.error()), 0;
            OTA_FUZZ_CHECK(!a->fleet.empty() && !a->wave.empty(), "an assignment without fleet or wave");
            return 0;
        }
        case 'w': {
            auto w = ota::agent::parse_wave(payload, "app");
            if (w.error) return check_error(*w.error), 0;
            // A release sent as a string is passed on as it is ("verified later"): open_envelope
            // refuses it then if it is not JSON (json_invalid), as the agent does.
            auto v = ota::open_envelope(w.envelope, ota::fuzz::test_trust(), ota::fuzz::fixed_now(), "wave offer");
            if (!v) check_error(v.error());
            return 0;
        }
        default: {
            auto c = ota::agent::parse_cmd(payload);
            if (!c) return check_error(c.error()), 0;
            using K = ota::agent::CommandKind;
            if (c->kind == K::retry || c->kind == K::install || c->kind == K::rollback)
                OTA_FUZZ_CHECK(!c->component.empty(), std::string(ota::agent::to_string(c->kind)) + " without a component");
            if (c->kind == K::install) OTA_FUZZ_CHECK(!c->release.is_null(), "install without a release");
            OTA_FUZZ_CHECK(nlohmann::json::accept(ota::agent::dump_safe(c->release)), "dump_safe gave no JSON");
            return 0;
        }
    }
}
