// `file`: place the artifact (decrypted first when the manifest says it is encrypted) into the
// target directory under the URL's basename.
//
//   prepare   <dir>/.<name>.ota-new   the new file, complete and fsync'd (hidden, same filesystem)
//   activate  <dir>/<name>            if <name> already exists it is first hard-linked to
//                                     <dir>/.<name>.ota-prev; then rename .ota-new over <name>
//   rollback  <name> is removed (or .ota-prev renamed back); .ota-new removed
//   commit    .ota-prev removed; <dir>/.ota-placed.<component>.json lists the files the agent
//             placed (name, inode, size), newest last; files beyond the live one and
//             `keep_previous` earlier ones are deleted, but only while they still are the very
//             file the agent placed. Files the agent did not place are never touched.
//
// The record names the new file by inode and size, so every step can tell "already done" from
// "not yet" after a crash: "<name> is the new file" is the switch.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "install/fsutil.hpp"
#include "install/installers.hpp"
#include "ota/file_crypto.hpp"
#include "ota/files.hpp"

namespace ota::agent::detail {
namespace {

using nlohmann::json;

struct Paths {
    fs::path dir;
    std::string name;
    [[nodiscard]] fs::path dest() const { return dir / name; }
    [[nodiscard]] fs::path staged() const { return dir / ("." + name + ".ota-new"); }
    [[nodiscard]] fs::path backup() const { return dir / ("." + name + ".ota-prev"); }
};

bool plausible_file_name(std::string_view name) {
    if (name.empty() || name.size() > 200 || name.front() == '.') return false;
    return std::none_of(name.begin(), name.end(), [](char c) {
        return c == '/' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
    });
}

Expected<Paths> paths_of(const InstallRequest& request) {
    const auto& m = request.manifest;
    if (m.install.target.empty() || !fs::path(m.install.target).is_absolute())
        return fail(ErrorCode::install_failed, "file install: manifest.install.target must be an absolute directory, got \"" +
                                                   m.install.target + "\"");
    const auto name = url_basename(m.artifact.url);
    if (!plausible_file_name(name))
        return fail(ErrorCode::install_failed,
                    "file install: cannot name the file after the URL " + m.artifact.url + " (basename \"" + name + "\")");
    return Paths{fs::path(m.install.target), name};
}

fs::path ledger_path(const InstallRequest& request, const Paths& p) {
    const auto& c = request.manifest.component;
    return p.dir / (".ota-placed." + (is_safe_name(c) ? c : std::string("component")) + ".json");
}

// The device key for `key_id`: <decrypt_keys_dir>/<key_id>.key (ota/file_crypto.hpp says what a
// key file may hold). decrypt_failed naming the key id when there is none or it is malformed.
Expected<std::string> load_decrypt_key(const fs::path& keys_dir, const std::string& key_id) {
    if (keys_dir.empty())
        return fail(ErrorCode::decrypt_failed,
                    "the artifact is encrypted with key '" + key_id + "' but no decrypt_keys_dir is configured");
    if (!is_safe_name(key_id)) return fail(ErrorCode::decrypt_failed, "invalid key id '" + key_id + "'");
    auto key = crypto::load_aes_key(keys_dir / (key_id + ".key"));
    if (!key) return fail(ErrorCode::decrypt_failed, "no usable key for key id '" + key_id + "': " + key.error().message);
    return key;
}

// Decrypt the artifact into the new file `out` (as copy_to_new_file writes a plain one): fsync'd,
// and removed again unless the ciphertext authenticated.
Expected<void> decrypt_to_new_file(const fs::path& in, const fs::path& out, const Encryption& enc,
                                   const fs::path& keys_dir) {
    if (enc.alg != crypto::aes_256_gcm)
        return fail(ErrorCode::decrypt_failed, "unsupported encryption algorithm \"" + enc.alg + "\"");
    auto key = load_decrypt_key(keys_dir, enc.key_id);
    if (!key) return std::unexpected(key.error());
    return write_new_file(out, 0644, [&](const ChunkWriter& write) -> Expected<void> {
        auto d = crypto::decrypt_stream(in, *key, {enc.iv, enc.tag}, write);
        if (!d) return std::unexpected(d.error().with_context("key '" + enc.key_id + "'"));
        return {};
    });
}

std::optional<FileId> new_id(const json& record) {
    return record.contains("new") ? FileId::from_json(record["new"]) : std::nullopt;
}

class FileInstaller final : public Installer {
public:
    Expected<json> prepare(const InstallRequest& request) override {
        auto p = paths_of(request);
        if (!p) return std::unexpected(p.error());
        std::error_code ec;
        fs::create_directories(p->dir, ec);
        if (ec) return fail(ErrorCode::install_failed, "file install: cannot create " + p->dir.string() + ": " + ec.message());
        struct stat st {};
        if (::lstat(p->dest().c_str(), &st) == 0 && !S_ISREG(st.st_mode))
            return fail(ErrorCode::install_failed, "file install: " + p->dest().string() + " exists and is not a regular file");

        const auto& enc = request.manifest.artifact.encryption;
        if (enc) {
            if (auto d = decrypt_to_new_file(request.artifact, p->staged(), *enc, request.config.decrypt_keys_dir); !d)
                return std::unexpected(d.error());
        } else {
            if (auto c = copy_to_new_file(request.artifact, p->staged(), 0644); !c)
                return std::unexpected(c.error().with_context("file install"));
        }
        if (auto s = fsync_path(p->dir); !s) return std::unexpected(s.error());
        const auto id = file_id(p->staged());
        if (!id) return fail(ErrorCode::install_failed, "file install: " + p->staged().string() + " vanished after writing");
        json record{{"type", "file"}, {"dir", p->dir.string()}, {"name", p->name}, {"new", id->to_json()}};
        const auto prev = file_id(p->dest());
        record["previous"] = prev ? prev->to_json() : json(nullptr);
        return record;
    }

    Expected<void> activate(const InstallRequest& request, const json& record) override {
        auto p = paths_of(request);
        if (!p) return std::unexpected(p.error());
        const auto fresh = new_id(record);
        if (!fresh) return fail(ErrorCode::install_failed, "file install: the journal record names no new file");
        if (file_id(p->dest()) == fresh) return {};  // already switched (a re-run after a crash)
        if (file_id(p->staged()) != fresh)
            return fail(ErrorCode::install_failed,
                        "file install: the prepared file " + p->staged().string() + " is missing or changed");
        if (exists_nofollow(p->dest()))
            if (auto b = link_or_copy_durable(p->dest(), p->backup(), 0644); !b) return b;
        return rename_durable(p->staged(), p->dest());
    }

    Expected<void> rollback(const InstallRequest& request, const json& record) override {
        auto p = paths_of(request);
        if (!p) return std::unexpected(p.error());
        const auto fresh = new_id(record);
        if (fresh && file_id(p->dest()) == fresh) {
            if (exists_nofollow(p->backup())) {
                if (auto r = rename_durable(p->backup(), p->dest()); !r) return r;
            } else if (auto r = remove_file_durable(p->dest()); !r) {
                return r;
            }
        }
        if (auto r = remove_file_durable(p->backup()); !r) return r;
        return remove_file_durable(p->staged());
    }

    Expected<void> commit(const InstallRequest& request, const json& record) override {
        auto p = paths_of(request);
        if (!p) return std::unexpected(p.error());
        if (auto r = remove_file_durable(p->backup()); !r) return r;
        if (auto r = remove_file_durable(p->staged()); !r) return r;
        const auto fresh = new_id(record);
        if (!fresh || file_id(p->dest()) != fresh) return {};  // not ours any more: leave everything as it is

        // The ledger of files this component placed, oldest first.
        const auto ledger = ledger_path(request, *p);
        json entries = json::array();
        if (exists_nofollow(ledger)) {
            auto text = read_file(ledger, 1 << 20);
            if (!text) return std::unexpected(text.error());
            auto parsed = json::parse(*text, nullptr, false);
            if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("files") || !parsed["files"].is_array())
                return fail(ErrorCode::io_error, ledger.string() + ": not a ledger of placed files; nothing cleaned up");
            entries = parsed["files"];
        }
        std::vector<std::pair<std::string, FileId>> placed;
        for (const auto& e : entries) {
            if (!e.is_object() || !e.contains("name") || !e["name"].is_string()) continue;
            const auto name = e["name"].get<std::string>();
            const auto id = FileId::from_json(e);
            // Still exactly the file the agent placed? Otherwise it is someone else's now.
            if (!id || name == p->name || !plausible_file_name(name) || file_id(p->dir / name) != id) continue;
            placed.emplace_back(name, *id);
        }
        placed.emplace_back(p->name, *fresh);
        const auto keep = static_cast<std::size_t>(std::max(0, request.config.keep_previous)) + 1;
        bool removed = false;
        while (placed.size() > keep) {
            const auto victim = p->dir / placed.front().first;
            if (::unlink(victim.c_str()) != 0 && errno != ENOENT)
                return sys_fail(ErrorCode::io_error, "removing the earlier release", victim, errno);
            removed = true;
            placed.erase(placed.begin());
        }
        if (removed)
            if (auto s = fsync_path(p->dir); !s) return s;
        json out{{"files", json::array()}};
        for (const auto& [name, id] : placed) {
            auto e = id.to_json();
            e["name"] = name;
            out["files"].push_back(e);
        }
        return write_file_atomic(ledger, out.dump() + "\n", 0644);
    }
};

}  // namespace

std::unique_ptr<Installer> make_file_installer() { return std::make_unique<FileInstaller>(); }

}  // namespace ota::agent::detail
