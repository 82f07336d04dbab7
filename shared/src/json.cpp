#include "ota/json.hpp"

#include <algorithm>
#include <limits>

namespace ota {
namespace {
bool is_non_negative_integer(const nlohmann::json& v) {
    return v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0);
}
}  // namespace

namespace {
// Length of the valid UTF-8 sequence starting at s[i] (1-4), or 0 when it is not one (overlong
// forms, surrogates and code points above U+10FFFF are invalid, as RFC 3629 says).
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned c = b(i);
    if (c < 0x80) return 1;
    std::size_t n = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (i + n > s.size()) return 0;
    if (b(i + 1) < lo || b(i + 1) > hi) return 0;
    for (std::size_t k = 2; k < n; ++k)
        if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
    return n;
}

void append_hex(std::string& out, unsigned char c) {
    static constexpr char digits[] = "0123456789abcdef";
    out += "\\x";
    out += digits[c >> 4];
    out += digits[c & 0xF];
}
}  // namespace

std::string printable(std::string_view text, std::size_t max) {
    std::string out;
    const auto end = std::min(text.size(), max);
    out.reserve(end + 8);
    for (std::size_t i = 0; i < end;) {
        const auto c = static_cast<unsigned char>(text[i]);
        const auto n = utf8_sequence(text, i);
        if (n == 0) {
            append_hex(out, c);
            ++i;
        } else if (n == 1 && (c < 0x20 || c == 0x7F)) {
            if (c == '\n') out += "\\n";
            else if (c == '\t') out += "\\t";
            else append_hex(out, c);
            ++i;
        } else {
            out.append(text.substr(i, n));
            i += n;
        }
    }
    if (text.size() > max) out += "...";
    return out;
}

Expected<nlohmann::json> parse_json(std::string_view text, std::string_view what) {
    // Depth first, without recursion: nlohmann parses recursively, so a deeply nested input
    // would exhaust the stack before any exception could be thrown.
    std::size_t depth = 0;
    bool in_string = false, escaped = false;
    for (const char c : text) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
        } else if (c == '"') in_string = true;
        else if (c == '[' || c == '{') {
            if (++depth > max_json_depth)
                return fail(ErrorCode::json_invalid, printable(what) + ": malformed JSON: nested deeper than " +
                                                         std::to_string(max_json_depth) + " levels");
        } else if ((c == ']' || c == '}') && depth > 0) --depth;
    }
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ...",
        // or out_of_range.406 for a number that overflows a double; either may quote input bytes.
        std::string msg = e.what();
        if (const auto pos = msg.find("] "); pos != std::string::npos) msg = msg.substr(pos + 2);
        return fail(ErrorCode::json_invalid, printable(what) + ": malformed JSON: " + printable(msg));
    }
}

const nlohmann::json* field(const nlohmann::json& value, std::string_view key) {
    if (!value.is_object()) return nullptr;
    const auto it = value.find(key);
    return it == value.end() ? nullptr : &*it;
}

std::string str_or(const nlohmann::json& value, std::string_view key, std::string fallback) {
    const auto* v = field(value, key);
    return v && v->is_string() ? v->get<std::string>() : fallback;
}

std::optional<std::int64_t> int_field(const nlohmann::json& value, std::string_view key) {
    const auto* v = field(value, key);
    if (!v) return std::nullopt;
    if (v->is_number_unsigned()) {
        const auto u = v->get<std::uint64_t>();
        if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
        return static_cast<std::int64_t>(u);
    }
    if (v->is_number_integer()) return v->get<std::int64_t>();
    return std::nullopt;
}

std::optional<bool> bool_field(const nlohmann::json& value, std::string_view key) {
    const auto* v = field(value, key);
    if (!v || !v->is_boolean()) return std::nullopt;
    return v->get<bool>();
}

std::string brief(const nlohmann::json& value) {
    std::string s = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (s.size() > 40) s = s.substr(0, 37) + "...";
    return printable(s);
}

ObjectReader::ObjectReader(const nlohmann::json& object, std::string path, ErrorCode code)
    : object_(object), path_(std::move(path)), code_(code) {
    if (!object_.is_object()) error_ = Error{code_, path_ + ": expected a JSON object, got " + brief(object_)};
}

std::string ObjectReader::path_of(std::string_view key) const { return path_ + "." + std::string(key); }

void ObjectReader::fail(std::string_view key, std::string_view problem) {
    if (!error_) error_ = Error{code_, path_of(key) + ": " + std::string(problem)};
}

const nlohmann::json* ObjectReader::find(std::string_view key, bool required, std::string_view expected) {
    seen_.emplace(key);
    if (error_) return nullptr;
    const auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) {
        if (required) fail(key, "missing (expected " + std::string(expected) + ")");
        return nullptr;
    }
    return &*it;
}

std::optional<std::string> ObjectReader::opt_str(std::string_view key) {
    const auto* v = find(key, false, "a string");
    if (!v) return std::nullopt;
    if (!v->is_string()) {
        fail(key, "expected a string, got " + brief(*v));
        return std::nullopt;
    }
    return v->get<std::string>();
}

std::string ObjectReader::str(std::string_view key) {
    const auto* v = find(key, true, "a string");
    if (!v) return {};
    if (!v->is_string()) {
        fail(key, "expected a string, got " + brief(*v));
        return {};
    }
    auto s = v->get<std::string>();
    if (s.empty()) fail(key, "must not be empty");
    return s;
}

std::optional<double> ObjectReader::opt_number(std::string_view key) {
    const auto* v = find(key, false, "a number");
    if (!v) return std::nullopt;
    if (!v->is_number()) {
        fail(key, "expected a number, got " + brief(*v));
        return std::nullopt;
    }
    return v->get<double>();
}

std::optional<Timestamp> ObjectReader::utc(std::string_view key, bool required) {
    const auto text = required ? std::optional<std::string>(str(key)) : opt_str(key);
    if (!text || !ok()) return std::nullopt;
    auto t = parse_utc(*text);
    if (!t) {
        fail(key, "expected a UTC time like 2026-03-10T12:00:00Z, got \"" + printable(*text, 80) + "\"");
        return std::nullopt;
    }
    return *t;
}

std::map<std::string, std::string> ObjectReader::str_map(std::string_view key) {
    std::map<std::string, std::string> out;
    const auto* v = find(key, false, "an object of strings");
    if (!v) return out;
    if (!v->is_object()) {
        fail(key, "expected an object of strings, got " + brief(*v));
        return out;
    }
    for (const auto& [k, val] : v->items()) {
        if (!val.is_string()) {
            fail(std::string(key) + "." + k, "expected a string, got " + brief(val));
            return {};
        }
        out.emplace(k, val.get<std::string>());
    }
    return out;
}

std::optional<std::uint64_t> ObjectReader::opt_u64(std::string_view key) {
    const auto* v = find(key, false, "a non-negative integer");
    if (!v) return std::nullopt;
    if (!is_non_negative_integer(*v)) {
        fail(key, "expected a non-negative integer, got " + brief(*v));
        return std::nullopt;
    }
    return v->get<std::uint64_t>();
}

std::uint64_t ObjectReader::u64(std::string_view key) {
    const auto* v = find(key, true, "a non-negative integer");
    if (!v) return 0;
    if (!is_non_negative_integer(*v)) {
        fail(key, "expected a non-negative integer, got " + brief(*v));
        return 0;
    }
    return v->get<std::uint64_t>();
}

std::int64_t ObjectReader::i64(std::string_view key) {
    const auto* v = find(key, true, "an integer");
    if (!v) return 0;
    if (!v->is_number_integer()) {
        fail(key, "expected an integer, got " + brief(*v));
        return 0;
    }
    return v->get<std::int64_t>();
}

bool ObjectReader::boolean(std::string_view key, bool fallback) {
    const auto* v = find(key, false, "true or false");
    if (!v) return fallback;
    if (!v->is_boolean()) {
        fail(key, "expected true or false, got " + brief(*v));
        return fallback;
    }
    return v->get<bool>();
}

std::vector<std::string> ObjectReader::str_list(std::string_view key, bool required) {
    const auto* v = find(key, required, "a list of strings");
    std::vector<std::string> out;
    if (!v) return out;
    if (!v->is_array()) {
        fail(key, "expected a list of strings, got " + brief(*v));
        return out;
    }
    for (std::size_t i = 0; i < v->size(); ++i) {
        const auto& item = (*v)[i];
        if (!item.is_string() || item.get<std::string>().empty()) {
            fail(std::string(key) + "[" + std::to_string(i) + "]", "expected a non-empty string, got " + brief(item));
            return {};
        }
        out.push_back(item.get<std::string>());
    }
    return out;
}

const nlohmann::json* ObjectReader::object(std::string_view key, bool required) {
    const auto* v = find(key, required, "an object");
    if (!v) return nullptr;
    if (!v->is_object()) {
        fail(key, "expected an object, got " + brief(*v));
        return nullptr;
    }
    return v;
}

const nlohmann::json* ObjectReader::raw(std::string_view key) { return find(key, false, "a value"); }

void ObjectReader::reject_unknown() {
    if (error_ || !object_.is_object()) return;
    for (const auto& [key, _] : object_.items()) {
        if (!seen_.contains(key)) {
            fail(key, "unknown field");
            return;
        }
    }
}

}  // namespace ota
