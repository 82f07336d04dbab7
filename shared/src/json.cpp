#include "ota/json.hpp"

namespace ota {
namespace {
bool is_non_negative_integer(const nlohmann::json& v) {
    return v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0);
}
}  // namespace

Expected<nlohmann::json> parse_json(std::string_view text, std::string_view what) {
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
        // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
        std::string msg = e.what();
        if (const auto pos = msg.find("] "); pos != std::string::npos) msg = msg.substr(pos + 2);
        return fail(ErrorCode::json_invalid, std::string(what) + ": malformed JSON: " + msg);
    }
}

std::string brief(const nlohmann::json& value) {
    std::string s = value.dump();
    if (s.size() > 40) s = s.substr(0, 37) + "...";
    return s;
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
