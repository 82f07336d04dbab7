// `binary` and `self`: the target is the binary's path.
//
//   prepare   <bin>.new      the new binary, mode 0755, fsync'd
//   activate  <bin>.old      a hard link to the live <bin> (a copy where links are impossible),
//                            made durable first; then rename <bin>.new over <bin>
//   rollback  when <bin> is the new binary: rename <bin>.old back over <bin> (or remove <bin> if
//            there was none before); <bin>.new removed
//   commit    <bin>.old stays: one previous binary is kept (keep_previous does not apply)
//
// The record names the new binary by inode and size: "<bin> is the new binary" tells a re-run
// whether the switch happened. Restarting (the agent itself for `self`) is the caller's job.
#include <sys/stat.h>

#include "install/fsutil.hpp"
#include "install/installers.hpp"

namespace ota::agent::detail {
namespace {

using nlohmann::json;

struct Paths {
    fs::path bin;
    [[nodiscard]] fs::path fresh() const { return fs::path(bin.string() + ".new"); }
    [[nodiscard]] fs::path old() const { return fs::path(bin.string() + ".old"); }
};

Expected<Paths> paths_of(const InstallRequest& request) {
    const auto& target = request.manifest.install.target;
    const fs::path bin(target);
    if (target.empty() || !bin.is_absolute() || !bin.has_filename())
        return fail(ErrorCode::install_failed,
                    std::string(to_string(request.manifest.install.type)) +
                        " install: manifest.install.target must be the binary's absolute path, got \"" + target + "\"");
    return Paths{bin};
}

class BinaryInstaller final : public Installer {
public:
    Expected<json> prepare(const InstallRequest& request) override {
        auto p = paths_of(request);
        if (!p) return std::unexpected(p.error());
        struct stat st {};
        if (::lstat(p->bin.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
            return fail(ErrorCode::install_failed, "binary install: " + p->bin.string() + " is not a regular file");
        if (!fs::is_directory(p->bin.parent_path()))
            return fail(ErrorCode::install_failed, "binary install: directory " + p->bin.parent_path().string() + " does not exist");
        if (auto c = copy_to_new_file(request.artifact, p->fresh(), 0755); !c)
            return std::unexpected(c.error().with_context("binary install"));
        if (auto s = fsync_parent(p->fresh()); !s) return std::unexpected(s.error());
        const auto id = file_id(p->fresh());
        if (!id) return fail(ErrorCode::install_failed, "binary install: " + p->fresh().string() + " vanished after writing");
        const auto prev = file_id(p->bin);
        return json{{"type", std::string(to_string(request.manifest.install.type))},
                    {"bin", p->bin.string()},
                    {"new", id->to_json()},
                    {"previous", prev ? prev->to_json() : json(nullptr)}};
    }

    Expected<void> activate(const InstallRequest& request, const json& record) override {
        auto p = paths_of(request);
        if (!p) return std::unexpected(p.error());
        const auto fresh = record.contains("new") ? FileId::from_json(record["new"]) : std::nullopt;
        if (!fresh) return fail(ErrorCode::install_failed, "binary install: the journal record names no new binary");
        if (file_id(p->bin) == fresh) return {};  // already switched
        if (file_id(p->fresh()) != fresh)
            return fail(ErrorCode::install_failed,
                        "binary install: the prepared binary " + p->fresh().string() + " is missing or changed");
        if (exists_nofollow(p->bin))
            if (auto o = link_or_copy_durable(p->bin, p->old(), 0755); !o) return o;
        return rename_durable(p->fresh(), p->bin);
    }

    Expected<void> rollback(const InstallRequest& request, const json& record) override {
        auto p = paths_of(request);
        if (!p) return std::unexpected(p.error());
        const auto fresh = record.contains("new") ? FileId::from_json(record["new"]) : std::nullopt;
        const bool had_previous = record.contains("previous") && !record["previous"].is_null();
        if (fresh && file_id(p->bin) == fresh) {
            if (!had_previous) {
                // There was no binary before this install (a <bin>.old would be from long ago).
                if (auto r = remove_file_durable(p->bin); !r) return r;
            } else if (exists_nofollow(p->old())) {
                if (auto r = rename_durable(p->old(), p->bin); !r) return r;
            } else {
                return fail(ErrorCode::install_failed,
                            "binary rollback: " + p->old().string() + " is missing; cannot restore the previous binary");
            }
        }
        return remove_file_durable(p->fresh());
    }

    Expected<void> commit(const InstallRequest& request, const json&) override {
        auto p = paths_of(request);
        if (!p) return std::unexpected(p.error());
        return remove_file_durable(p->fresh());
    }
};

}  // namespace

std::unique_ptr<Installer> make_binary_installer() { return std::make_unique<BinaryInstaller>(); }

}  // namespace ota::agent::detail
