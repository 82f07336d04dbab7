// Helpers for the install-type tests: a manifest and request for a temp directory, a snapshot of
// a directory tree (to assert "exactly the previous state"), and a tarball writer that can write
// the entries a safe archiver would refuse to write (../evil, /abs, escaping links, devices).
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "install/installer.hpp"
#include "kit.hpp"
#include "ota/manifest.hpp"

namespace ota::agent::test {

namespace fs = std::filesystem;
namespace kit = ota::testkit;

inline Manifest make_manifest(InstallType type, const std::string& target, const std::string& version,
                              const std::string& url, VersionScheme scheme = VersionScheme::date) {
    Manifest m;
    m.component = "comp";
    m.version = version;
    m.version_scheme = scheme;
    m.channel = "stable";
    m.artifact.url = url;
    m.artifact.size = 1;
    m.artifact.sha256 = std::string(64, '0');
    m.install.type = type;
    m.install.target = target;
    m.key_id = std::string(16, '0');
    return m;
}

// A manifest, its config and the artifact, kept alive together for InstallRequest's references.
struct Job {
    Manifest manifest;
    ComponentConfig config;
    fs::path artifact;
    fs::path work_dir;
    [[nodiscard]] InstallRequest request() const { return InstallRequest{manifest, artifact, work_dir, config}; }
};

// Every entry under `root` (not following symlinks): "d" for a directory, "f:<mode>:<content>" for a
// file, "l:<target>" for a symlink.
inline std::map<std::string, std::string> snapshot(const fs::path& root) {
    std::map<std::string, std::string> out;
    if (!fs::exists(fs::symlink_status(root))) return out;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
        const auto rel = it->path().lexically_relative(root).string();
        const auto st = it->symlink_status();
        if (fs::is_symlink(st)) {
            out[rel] = "l:" + fs::read_symlink(it->path()).string();
        } else if (fs::is_directory(st)) {
            out[rel] = "d";
        } else {
            struct stat s {};
            ::lstat(it->path().c_str(), &s);
            out[rel] = "f:" + std::to_string(s.st_mode & 07777) + ":" + kit::read_file(it->path());
        }
    }
    return out;
}

inline std::string dump(const std::map<std::string, std::string>& snap) {
    std::string out;
    for (const auto& [k, v] : snap) out += k + " = " + v.substr(0, 60) + "\n";
    return out;
}

struct TarEntry {
    enum class Kind { file, dir, symlink, hardlink, fifo, chardev };
    std::string name{};
    Kind kind{Kind::file};
    std::string data{};  // file content
    std::string link{};  // symlink / hardlink target
    unsigned mode{0644};
};

// Write a pax tarball (gzip'd when `gzip`) with exactly these entries, names unchanged.
inline void write_tar(const fs::path& path, const std::vector<TarEntry>& entries, bool gzip = false) {
    archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (gzip) archive_write_add_filter_gzip(a);
    ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK) << archive_error_string(a);
    for (const auto& e : entries) {
        archive_entry* entry = archive_entry_new();
        archive_entry_set_pathname(entry, e.name.c_str());
        archive_entry_set_perm(entry, e.mode);
        archive_entry_set_mtime(entry, 1700000000, 0);
        switch (e.kind) {
            case TarEntry::Kind::file:
                archive_entry_set_filetype(entry, AE_IFREG);
                archive_entry_set_size(entry, static_cast<la_int64_t>(e.data.size()));
                break;
            case TarEntry::Kind::dir: archive_entry_set_filetype(entry, AE_IFDIR); break;
            case TarEntry::Kind::symlink:
                archive_entry_set_filetype(entry, AE_IFLNK);
                archive_entry_set_symlink(entry, e.link.c_str());
                break;
            case TarEntry::Kind::hardlink:
                archive_entry_set_filetype(entry, AE_IFREG);
                archive_entry_set_hardlink(entry, e.link.c_str());
                break;
            case TarEntry::Kind::fifo: archive_entry_set_filetype(entry, AE_IFIFO); break;
            case TarEntry::Kind::chardev:
                archive_entry_set_filetype(entry, AE_IFCHR);
                archive_entry_set_rdev(entry, makedev(1, 3));
                break;
        }
        ASSERT_GE(archive_write_header(a, entry), ARCHIVE_WARN) << archive_error_string(a);
        if (e.kind == TarEntry::Kind::file && !e.data.empty()) {
            ASSERT_EQ(archive_write_data(a, e.data.data(), e.data.size()), static_cast<la_ssize_t>(e.data.size()));
        }
        archive_entry_free(entry);
    }
    ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

}  // namespace ota::agent::test
