// Reading JSON objects field by field with errors that name the field path, e.g.
//   manifest.artifact.size: expected a non-negative integer, got "12"
// The reader keeps the first error; later reads return defaults, so a parser reads every field
// and checks error() once at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ota/error.hpp"
#include "ota/time.hpp"

namespace ota {

// Parse bytes as JSON; the error names `what` (e.g. "release on ota/v1/releases/x/stable").
// Never throws: every input (numbers that overflow a double, invalid UTF-8, nesting deeper than
// max_json_depth) is an ErrorCode::json_invalid whose message is printable (bytes of the input
// that are not UTF-8 appear as \xNN).
inline constexpr std::size_t max_json_depth = 64;
[[nodiscard]] Expected<nlohmann::json> parse_json(std::string_view text, std::string_view what);

// Fields of an untrusted JSON value, read without throwing: the fallback (or nullopt) when `value`
// is not an object, the key is absent, or its value has another type. A number outside the
// target's range is absent too (never wrapped or truncated).
[[nodiscard]] std::string str_or(const nlohmann::json& value, std::string_view key, std::string fallback = {});
[[nodiscard]] std::optional<std::int64_t> int_field(const nlohmann::json& value, std::string_view key);
[[nodiscard]] std::optional<bool> bool_field(const nlohmann::json& value, std::string_view key);
[[nodiscard]] const nlohmann::json* field(const nlohmann::json& value, std::string_view key);
// Not on a temporary: the pointer would dangle at the end of the statement.
const nlohmann::json* field(const nlohmann::json&& value, std::string_view key) = delete;

// `text` as valid UTF-8 for a log line or an error message: each byte that is not part of a valid
// UTF-8 sequence becomes \xNN, control characters become \n, \t, \xNN; at most `max` bytes of
// the input are kept ("..." marks the cut).
[[nodiscard]] std::string printable(std::string_view text, std::size_t max = 512);

class ObjectReader {
public:
    // `code` is the error code used for every problem found (manifest_invalid, config_invalid...).
    ObjectReader(const nlohmann::json& object, std::string path, ErrorCode code);

    [[nodiscard]] std::string str(std::string_view key);  // required, non-empty
    [[nodiscard]] std::optional<std::string> opt_str(std::string_view key);
    [[nodiscard]] std::uint64_t u64(std::string_view key);
    [[nodiscard]] std::optional<std::uint64_t> opt_u64(std::string_view key);
    [[nodiscard]] std::int64_t i64(std::string_view key);
    [[nodiscard]] std::optional<double> opt_number(std::string_view key);  // any JSON number
    // A UTC time like "2026-03-10T12:00:00Z" (nullopt when optional and absent, or on error).
    [[nodiscard]] std::optional<Timestamp> utc(std::string_view key, bool required);
    // An object of strings ({"site": "plant-a"}); empty when absent.
    [[nodiscard]] std::map<std::string, std::string> str_map(std::string_view key);
    [[nodiscard]] bool boolean(std::string_view key, bool fallback);
    [[nodiscard]] std::vector<std::string> str_list(std::string_view key, bool required);
    // A nested object (nullptr when optional and absent, or on error).
    [[nodiscard]] const nlohmann::json* object(std::string_view key, bool required);
    // Any value (nullptr when absent).
    [[nodiscard]] const nlohmann::json* raw(std::string_view key);

    // Record a problem with a field: "<path>.<key>: <problem>".
    void fail(std::string_view key, std::string_view problem);
    // Take a nested reader's error as this reader's (its message already has the full path).
    void adopt(const std::optional<Error>& nested) {
        if (nested && !error_) error_ = nested;
    }
    // Every key of the object that no read asked for is an error ("unknown field").
    void reject_unknown();

    [[nodiscard]] std::string path_of(std::string_view key) const;
    [[nodiscard]] const std::optional<Error>& error() const { return error_; }
    [[nodiscard]] bool ok() const { return !error_; }
    [[nodiscard]] ErrorCode code() const { return code_; }  // for nested readers

private:
    const nlohmann::json* find(std::string_view key, bool required, std::string_view expected);
    const nlohmann::json& object_;
    std::string path_;
    ErrorCode code_;
    std::set<std::string, std::less<>> seen_;
    std::optional<Error> error_;
};

// A short, printable rendering of a JSON value for error messages (truncated).
[[nodiscard]] std::string brief(const nlohmann::json& value);

}  // namespace ota
