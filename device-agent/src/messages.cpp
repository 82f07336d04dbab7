#include "messages.hpp"

#include <array>

#include "ota/json.hpp"
#include "ota/topics.hpp"

namespace ota::agent {
namespace {

constexpr std::array<std::string_view, 5> kCommandNames{"check", "report", "retry", "install", "rollback"};

Error internal(std::string_view what, const std::exception& e) {
    return Error{ErrorCode::internal, std::string(what) + ": " + printable(e.what())};
}

}  // namespace

std::string_view to_string(CommandKind kind) { return kCommandNames[static_cast<std::size_t>(kind)]; }

std::string dump_safe(const nlohmann::json& value) noexcept {
    try {
        return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    } catch (...) {
        return "null";
    }
}
std::string dump_safe(const nlohmann::ordered_json& value) noexcept {
    try {
        return value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    } catch (...) {
        return "null";
    }
}

Expected<Assignment> parse_assignment(std::string_view payload) noexcept {
    try {
        auto j = parse_json(payload, "assignment");
        if (!j) return std::unexpected(j.error());
        ObjectReader r(*j, "assignment", ErrorCode::json_invalid);
        Assignment a{r.str("fleet"), r.str("wave")};
        if (r.ok() && !is_valid_segment(a.fleet)) r.fail("fleet", "not a valid topic segment: '" + printable(a.fleet, 80) + "'");
        if (r.ok() && !is_valid_segment(a.wave)) r.fail("wave", "not a valid topic segment: '" + printable(a.wave, 80) + "'");
        if (!r.ok()) return std::unexpected(*r.error());
        return a;
    } catch (const std::exception& e) {
        return std::unexpected(internal("assignment", e));
    }
}

WaveOffer parse_wave(std::string_view payload, std::string_view component) noexcept {
    WaveOffer w;
    try {
        auto msg = parse_json(payload, "wave message for " + printable(component, 80));
        if (!msg) {
            w.error = msg.error();
            return w;
        }
        ObjectReader r(*msg, "wave", ErrorCode::manifest_invalid);
        w.rollout = r.str("rollout");
        w.state = r.str("state");
        const auto* release = r.raw("release");
        if (r.ok() && !release) r.fail("release", "missing");
        if (r.ok() && !release->is_string() && !release->is_object())
            r.fail("release", "expected a signed envelope (an object), got " + brief(*release));
        if (!r.ok()) {
            w.error = r.error();
            return w;
        }
        w.envelope = release->is_string() ? release->get<std::string>() : dump_safe(*release);
    } catch (const std::exception& e) {
        w.error = internal("wave message", e);
    }
    return w;
}

Expected<Command> parse_cmd(std::string_view payload) noexcept {
    try {
        auto j = parse_json(payload, "cmd");
        if (!j) return std::unexpected(j.error());
        ObjectReader r(*j, "cmd", ErrorCode::json_invalid);
        const auto name = r.str("cmd");
        Command c;
        c.component = r.opt_str("component").value_or("");
        c.rollout = r.opt_str("rollout").value_or("");
        const auto* release = r.raw("release");
        if (!r.ok()) return std::unexpected(*r.error());
        bool known = false;
        for (std::size_t i = 0; i < kCommandNames.size(); ++i)
            if (kCommandNames[i] == name) {
                c.kind = static_cast<CommandKind>(i);
                known = true;
            }
        if (!known) return fail(ErrorCode::json_invalid, "cmd.cmd: unknown command '" + printable(name, 80) + "'");
        const bool needs_component =
            c.kind == CommandKind::retry || c.kind == CommandKind::install || c.kind == CommandKind::rollback;
        if (needs_component && c.component.empty())
            return fail(ErrorCode::json_invalid, "cmd.component: missing (required by " + std::string(to_string(c.kind)) + ")");
        if (c.kind == CommandKind::install) {
            if (!release) return fail(ErrorCode::json_invalid, "cmd.release: missing (required by install)");
            c.release = *release;
        }
        return c;
    } catch (const std::exception& e) {
        return std::unexpected(internal("cmd", e));
    }
}

}  // namespace ota::agent
