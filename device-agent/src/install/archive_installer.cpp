// `archive`: a tarball (.tar, .tar.gz, .tar.xz, .tar.bz2, .tar.zst; detected from the content)
// unpacked into a new release directory, then an atomic flip of the `current` symlink.
//
//   <target>/releases/<version>.partial   prepare unpacks here (refusing unsafe entries), fsyncs
//                                          every file and directory, then renames it to
//   <target>/releases/<version>
//   <target>/current -> releases/<version> activate: symlink current.tmp, rename over current
//
//   record    {"type": "archive", "target", "version", "release": "releases/<v>",
//              "previous": the link text `current` had before (null: there was none)}
//   rollback  current flipped back to "previous" (or removed if there was none) when it points at
//             the new release; the new release directory and any .partial are deleted
//   commit    release directories beyond the live one, the previous one and the `keep_previous`
//             newest others (by version, in the manifest's scheme) are deleted; names that are
//             not versions of that scheme are left alone
//
// Unsafe entries (archive_unsafe, naming the entry): absolute paths, `..`, device files, FIFOs,
// sockets, symlinks that are absolute or climb out of the release directory (or have `..` after a
// directory name), hard links to anything but an earlier regular file of the archive, and entries
// that would be written through a symlink of the archive. Owners are not restored; permission bits
// are (without setuid/setgid). Directories are deleted by renaming them to .<name>.deleting first,
// so a crash never leaves a half-deleted release under its own name.
#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <set>

#include "install/fsutil.hpp"
#include "install/installers.hpp"
#include "ota/version.hpp"

namespace ota::agent::detail {
namespace {

using nlohmann::json;

struct Layout {
    fs::path target;
    std::string version;
    [[nodiscard]] fs::path releases() const { return target / "releases"; }
    [[nodiscard]] fs::path release() const { return releases() / version; }
    [[nodiscard]] fs::path partial() const { return releases() / (version + ".partial"); }
    [[nodiscard]] fs::path current() const { return target / "current"; }
    [[nodiscard]] fs::path current_tmp() const { return target / "current.tmp"; }
    [[nodiscard]] std::string link_value() const { return "releases/" + version; }
    // Where a link text found in `current` points, lexically.
    [[nodiscard]] fs::path resolve(const std::string& link) const {
        const fs::path l(link);
        return (l.is_absolute() ? l : target / l).lexically_normal();
    }
};

Expected<Layout> layout_of(const InstallRequest& request) {
    const auto& m = request.manifest;
    if (m.install.target.empty() || !fs::path(m.install.target).is_absolute())
        return fail(ErrorCode::install_failed,
                    "archive install: manifest.install.target must be an absolute directory, got \"" + m.install.target + "\"");
    if (!is_safe_name(m.version))
        return fail(ErrorCode::install_failed, "archive install: version \"" + m.version + "\" cannot name a directory");
    return Layout{fs::path(m.install.target), m.version};
}

// The text of the `current` symlink; nullopt when absent; an error when it is not a symlink.
Expected<std::optional<std::string>> read_current(const Layout& l) {
    struct stat st {};
    if (::lstat(l.current().c_str(), &st) != 0) {
        if (errno == ENOENT) return std::optional<std::string>{};
        return sys_fail(ErrorCode::install_failed, "archive install: cannot examine", l.current(), errno);
    }
    if (!S_ISLNK(st.st_mode))
        return fail(ErrorCode::install_failed,
                    "archive install: " + l.current().string() + " exists and is not a symlink; move it away first");
    std::error_code ec;
    auto text = fs::read_symlink(l.current(), ec);
    if (ec) return fail(ErrorCode::install_failed, "archive install: reading " + l.current().string() + ": " + ec.message());
    return std::optional<std::string>(text.string());
}

// Point `current` at `link` atomically: symlink current.tmp, rename it over current, fsync.
Expected<void> flip(const Layout& l, const std::string& link) {
    if (::unlink(l.current_tmp().c_str()) != 0 && errno != ENOENT)
        return sys_fail(ErrorCode::install_failed, "archive install: removing", l.current_tmp(), errno);
    if (::symlink(link.c_str(), l.current_tmp().c_str()) != 0)
        return sys_fail(ErrorCode::install_failed, "archive install: creating the symlink", l.current_tmp(), errno);
    return rename_durable(l.current_tmp(), l.current());
}

// ---- unpacking -----------------------------------------------------------------------------

struct ArchiveFree {
    void operator()(archive* a) const { archive_read_free(a); }
};
struct DiskFree {
    void operator()(archive* a) const { archive_write_free(a); }
};

std::string join(const std::vector<std::string>& parts, std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n && i < parts.size(); ++i) {
        if (i > 0) out += '/';
        out += parts[i];
    }
    return out;
}

// Split an entry path into components; a non-empty return value says why it is unsafe.
std::string split_path(std::string_view name, std::vector<std::string>& parts) {
    parts.clear();
    if (name.empty()) return "empty name";
    if (name.front() == '/') return "absolute path";
    std::size_t i = 0;
    while (i <= name.size()) {
        auto end = name.find('/', i);
        if (end == std::string_view::npos) end = name.size();
        const auto part = name.substr(i, end - i);
        if (part == "..") return "path contains '..'";
        if (!part.empty() && part != ".") parts.emplace_back(part);
        i = end + 1;
    }
    return {};
}

// A symlink at depth `depth` (number of directories above it inside the release) pointing at
// `target`: safe when relative and made of some leading ".." (at most `depth`) and then names.
std::string check_symlink_target(std::size_t depth, std::string_view target) {
    if (target.empty()) return "symlink with an empty target";
    if (target.front() == '/') return "symlink to the absolute path '" + std::string(target) + "'";
    std::size_t ups = 0;
    bool named = false;
    std::size_t i = 0;
    while (i <= target.size()) {
        auto end = target.find('/', i);
        if (end == std::string_view::npos) end = target.size();
        const auto part = target.substr(i, end - i);
        if (part == "..") {
            if (named) return "symlink target '" + std::string(target) + "' has '..' after a directory name";
            ++ups;
        } else if (!part.empty() && part != ".") {
            named = true;
        }
        i = end + 1;
    }
    if (ups > depth) return "symlink escapes the release directory (-> '" + std::string(target) + "')";
    return {};
}

std::string type_name(mode_t type) {
    switch (type) {
        case AE_IFCHR: return "a character device";
        case AE_IFBLK: return "a block device";
        case AE_IFIFO: return "a FIFO";
        case AE_IFSOCK: return "a socket";
        default: return "an unsupported entry type";
    }
}

Expected<void> unpack(const fs::path& artifact, const fs::path& root) {
    std::unique_ptr<archive, ArchiveFree> in(archive_read_new());
    std::unique_ptr<archive, DiskFree> out(archive_write_disk_new());
    if (!in || !out) return fail(ErrorCode::internal, "libarchive: out of memory");
    archive_read_support_format_tar(in.get());
    archive_read_support_filter_gzip(in.get());
    archive_read_support_filter_bzip2(in.get());
    archive_read_support_filter_xz(in.get());
    archive_read_support_filter_zstd(in.get());
    archive_write_disk_set_options(out.get(), ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                                  ARCHIVE_EXTRACT_SECURE_NODOTDOT);
    const auto what = artifact.string();
    auto lib_fail = [&](archive* a, const std::string& doing) {
        const char* msg = archive_error_string(a);
        const int err = archive_errno(a);
        const auto code = err == ENOSPC || err == EDQUOT ? ErrorCode::disk_full
                          : err == EIO                   ? ErrorCode::io_error
                                                         : ErrorCode::install_failed;
        return fail(code, "archive install: " + doing + ": " + (msg != nullptr ? msg : "libarchive error"));
    };
    if (archive_read_open_filename(in.get(), artifact.c_str(), 1 << 16) != ARCHIVE_OK)
        return lib_fail(in.get(), "opening " + what);

    std::map<std::string, mode_t> seen;  // path -> AE_IF* type of what the archive created there
    std::set<std::string> dirs;
    std::vector<std::string> parts;
    std::vector<std::string> link_parts;
    archive_entry* entry = nullptr;
    while (true) {
        const int r = archive_read_next_header(in.get(), &entry);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN) return lib_fail(in.get(), "reading " + what);
        const char* raw = archive_entry_pathname(entry);
        const std::string name = raw != nullptr ? raw : "";
        auto unsafe = [&](const std::string& why) {
            return fail(ErrorCode::archive_unsafe, what + ": entry '" + name + "': " + why);
        };
        if (auto why = split_path(name, parts); !why.empty()) return unsafe(why);
        const mode_t type = archive_entry_filetype(entry);
        const char* hard = archive_entry_hardlink(entry);
        if (parts.empty()) {
            if (type == AE_IFDIR && hard == nullptr) continue;  // "./" itself
            return unsafe("empty name");
        }
        for (std::size_t i = 1; i < parts.size(); ++i) {
            const auto prefix = join(parts, i);
            if (auto it = seen.find(prefix); it != seen.end() && it->second == AE_IFLNK)
                return unsafe("would be written through the symlink '" + prefix + "'");
        }
        const auto path = join(parts, parts.size());
        if (hard != nullptr) {
            if (auto why = split_path(hard, link_parts); !why.empty()) return unsafe("hard link: " + why);
            const auto link = join(link_parts, link_parts.size());
            auto it = seen.find(link);
            if (it == seen.end() || it->second != AE_IFREG)
                return unsafe("hard link to '" + std::string(hard) + "', which is not an earlier regular file of the archive");
            for (std::size_t i = 1; i < link_parts.size(); ++i)
                if (auto p = seen.find(join(link_parts, i)); p != seen.end() && p->second == AE_IFLNK)
                    return unsafe("hard link through the symlink '" + join(link_parts, i) + "'");
            archive_entry_set_hardlink(entry, (root / link).c_str());
        } else if (type == AE_IFLNK) {
            const char* target = archive_entry_symlink(entry);
            if (auto why = check_symlink_target(parts.size() - 1, target != nullptr ? target : ""); !why.empty())
                return unsafe(why);
            if (dirs.contains(path)) return unsafe("a symlink replacing a directory of the archive");
        } else if (type != AE_IFREG && type != AE_IFDIR) {
            return unsafe(type_name(type) + " is not allowed");
        }
        const mode_t kind = hard != nullptr ? mode_t{AE_IFREG} : type;
        if (auto it = seen.find(path); it != seen.end() && (it->second == AE_IFLNK || kind == AE_IFLNK) && it->second != kind)
            return unsafe("replaces an earlier entry of another type");
        for (std::size_t i = 1; i < parts.size(); ++i) dirs.insert(join(parts, i));
        if (kind == AE_IFDIR) dirs.insert(path);
        seen[path] = kind;

        archive_entry_set_pathname(entry, (root / path).c_str());
        if (kind != AE_IFLNK) archive_entry_set_perm(entry, archive_entry_perm(entry) & 01777);
        if (archive_write_header(out.get(), entry) < ARCHIVE_WARN) return lib_fail(out.get(), "unpacking '" + name + "'");
        if (archive_entry_size(entry) > 0 && kind == AE_IFREG) {
            const void* block = nullptr;
            std::size_t size = 0;
            la_int64_t offset = 0;
            while (true) {
                const int rr = archive_read_data_block(in.get(), &block, &size, &offset);
                if (rr == ARCHIVE_EOF) break;
                if (rr < ARCHIVE_WARN) return lib_fail(in.get(), "reading '" + name + "' from " + what);
                // libarchive reports a failed write(2) (ENOSPC, EIO) as ARCHIVE_WARN: not a warning here.
                if (archive_write_data_block(out.get(), block, size, offset) != ARCHIVE_OK)
                    return lib_fail(out.get(), "writing '" + name + "'");
            }
        }
        if (archive_write_finish_entry(out.get()) < ARCHIVE_WARN) return lib_fail(out.get(), "finishing '" + name + "'");
    }
    if (archive_write_close(out.get()) != ARCHIVE_OK) return lib_fail(out.get(), "finishing " + root.string());
    return {};
}

// fsync every regular file and directory under `root`, then `root`.
Expected<void> sync_tree(const fs::path& root) {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
        const auto st = it->symlink_status(ec);
        if (ec) break;
        if (fs::is_regular_file(st) || fs::is_directory(st))
            if (auto s = fsync_path(it->path()); !s) return s;
    }
    if (ec) return fail(ErrorCode::io_error, "walking " + root.string() + ": " + ec.message());
    return fsync_path(root);
}

// ---- the installer -------------------------------------------------------------------------

class ArchiveInstaller final : public Installer {
public:
    Expected<json> prepare(const InstallRequest& request) override {
        auto l = layout_of(request);
        if (!l) return std::unexpected(l.error());
        std::error_code ec;
        fs::create_directories(l->releases(), ec);
        if (ec) return fail(ErrorCode::install_failed, "archive install: cannot create " + l->releases().string() + ": " + ec.message());
        auto previous = read_current(*l);
        if (!previous) return std::unexpected(previous.error());
        if (*previous && l->resolve(**previous) == l->release().lexically_normal())
            return fail(ErrorCode::install_failed, "archive install: release " + l->version + " is the live release");
        if (exists_nofollow(l->release()))  // left by an earlier attempt: unpack again
            if (auto r = remove_tree_durable(l->release()); !r) return std::unexpected(r.error());
        if (auto r = remove_tree_durable(l->partial()); !r) return std::unexpected(r.error());
        if (::mkdir(l->partial().c_str(), 0755) != 0)
            return sys_fail(ErrorCode::install_failed, "archive install: cannot create", l->partial(), errno);
        // libarchive refuses to write through symlinks; give it a path without any.
        const auto root = fs::canonical(l->partial(), ec);
        if (ec) return fail(ErrorCode::install_failed, "archive install: " + l->partial().string() + ": " + ec.message());
        auto unpacked = unpack(request.artifact, root);
        if (unpacked) unpacked = sync_tree(root);
        if (!unpacked) {
            (void)remove_tree_durable(l->partial());
            return std::unexpected(unpacked.error());
        }
        if (auto r = rename_durable(l->partial(), l->release()); !r) return std::unexpected(r.error());
        return json{{"type", "archive"},
                    {"target", l->target.string()},
                    {"version", l->version},
                    {"release", l->link_value()},
                    {"previous", *previous ? json(**previous) : json(nullptr)}};
    }

    Expected<void> activate(const InstallRequest& request, const json&) override {
        auto l = layout_of(request);
        if (!l) return std::unexpected(l.error());
        auto current = read_current(*l);
        if (!current) return std::unexpected(current.error());
        if (*current == l->link_value()) return {};  // already flipped
        if (!fs::is_directory(l->release()))
            return fail(ErrorCode::install_failed, "archive install: the prepared release " + l->release().string() + " is missing");
        return flip(*l, l->link_value());
    }

    Expected<void> rollback(const InstallRequest& request, const json& record) override {
        auto l = layout_of(request);
        if (!l) return std::unexpected(l.error());
        const std::optional<std::string> previous =
            record.contains("previous") && record["previous"].is_string() ? std::optional(record["previous"].get<std::string>())
                                                                           : std::nullopt;
        if (auto r = remove_file_durable(l->current_tmp()); !r) return r;
        auto current = read_current(*l);
        if (!current) return std::unexpected(current.error());
        const auto ours = l->release().lexically_normal();
        if (*current && l->resolve(**current) == ours) {
            if (previous) {
                if (auto r = flip(*l, *previous); !r) return r;
            } else if (auto r = remove_file_durable(l->current()); !r) {
                return r;
            }
        }
        if (!previous || l->resolve(*previous) != ours)
            if (auto r = remove_tree_durable(l->release()); !r) return r;
        return remove_tree_durable(l->partial());
    }

    Expected<void> commit(const InstallRequest& request, const json& record) override {
        auto l = layout_of(request);
        if (!l) return std::unexpected(l.error());
        if (auto r = remove_file_durable(l->current_tmp()); !r) return r;
        auto current = read_current(*l);
        if (!current) return std::unexpected(current.error());
        if (!*current) return {};
        const auto live = l->resolve(**current);
        std::optional<fs::path> previous;
        if (record.contains("previous") && record["previous"].is_string())
            previous = l->resolve(record["previous"].get<std::string>());
        auto live_version = Version::parse(l->version, request.manifest.version_scheme);
        if (!live_version) return {};

        std::vector<std::pair<Version, fs::path>> older;
        std::vector<fs::path> leftovers;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(l->releases(), ec)) {
            const auto name = e.path().filename().string();
            if (!e.is_directory(ec) || e.is_symlink(ec)) continue;
            if (name.ends_with(".partial") || (name.starts_with(".") && name.ends_with(".deleting"))) {
                leftovers.push_back(e.path());
                continue;
            }
            const auto path = e.path().lexically_normal();
            if (path == live || (previous && path == *previous)) continue;
            auto v = Version::parse(name, request.manifest.version_scheme);
            if (!v || !v->compare(*live_version)) continue;  // not ours to judge: leave it
            older.emplace_back(std::move(*v), e.path());
        }
        if (ec) return fail(ErrorCode::io_error, "listing " + l->releases().string() + ": " + ec.message());
        std::sort(older.begin(), older.end(), [](const auto& a, const auto& b) {
            return a.first.compare(b.first).value_or(std::strong_ordering::equal) == std::strong_ordering::greater;
        });
        // The previous release is always kept and counts as one of the kept ones.
        const auto keep_total = static_cast<std::size_t>(std::max(0, request.config.keep_previous));
        std::size_t kept = previous && fs::is_directory(*previous) ? 1 : 0;
        for (const auto& [version, path] : older) {
            if (kept < keep_total) {
                ++kept;
                continue;
            }
            if (auto r = remove_tree_durable(path); !r) return r;
        }
        for (const auto& path : leftovers) {
            if (path.filename().string().starts_with(".")) {
                fs::remove_all(path, ec);
                if (ec) return fail(ErrorCode::io_error, "removing " + path.string() + ": " + ec.message());
            } else if (auto r = remove_tree_durable(path); !r) {
                return r;
            }
        }
        return {};
    }
};

}  // namespace

std::unique_ptr<Installer> make_archive_installer() { return std::make_unique<ArchiveInstaller>(); }

}  // namespace ota::agent::detail
