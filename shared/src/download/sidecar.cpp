// The sidecar `<dest>.part.json` and the decision whether a partial file is resumed.
#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "internal.hpp"
#include "ota/files.hpp"

namespace ota::download::detail {

fs::path part_path(const fs::path& dest) { return fs::path(dest.string() + ".part"); }
fs::path sidecar_path(const fs::path& dest) { return fs::path(dest.string() + ".part.json"); }
std::string errno_text(int err) { return std::strerror(err); }

std::string to_json(const Sidecar& s) {
    nlohmann::json j{{"url", s.url},   {"sha256", s.sha256},          {"size", s.size},
                     {"etag", s.etag}, {"last_modified", s.last_modified}};
    // A URL that is not UTF-8 is written replaced; it then no longer describes the request and
    // the next call starts over, which is safe.
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::optional<Sidecar> read_sidecar(const fs::path& path) {
    auto text = ota::read_file(path, 64 * 1024);
    if (!text) return std::nullopt;
    try {
        auto j = nlohmann::json::parse(*text, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return std::nullopt;
        Sidecar s;
        s.url = j.at("url").get<std::string>();
        s.sha256 = j.at("sha256").get<std::string>();
        s.size = j.at("size").get<std::uint64_t>();
        if (j.contains("etag")) s.etag = j["etag"].get<std::string>();
        if (j.contains("last_modified")) s.last_modified = j["last_modified"].get<std::string>();
        if ((!s.etag.empty() && !safe_validator(s.etag)) || (!s.last_modified.empty() && !safe_validator(s.last_modified)))
            return std::nullopt;
        return s;
    } catch (const std::exception&) {
        return std::nullopt;  // not ours or damaged (wrong types, numbers out of range): start over
    }
}

Expected<void> write_sidecar(const fs::path& dest, const Sidecar& s) {
    auto w = write_file_atomic(sidecar_path(dest), to_json(s));
    if (w) return {};
    const auto& e = w.error();
    if (e.message.find(errno_text(ENOSPC)) != std::string::npos || e.message.find(errno_text(EDQUOT)) != std::string::npos)
        return fail(ErrorCode::disk_full, e.message);
    return std::unexpected(e);
}

bool resumable(const Request& r, std::uint64_t on_disk, const std::optional<Sidecar>& sidecar) {
    return on_disk > 0 && sidecar && sidecar->describes(r) && !sidecar->validator().empty() &&
           (r.expected_size == 0 || on_disk <= r.expected_size);
}

}  // namespace ota::download::detail
