// Fuzz target `archive`: the archive installer's extraction (device-agent/src/install/
// archive_installer.cpp, through its Installer interface: prepare unpacks and fsyncs, activate
// flips `current`) of crafted tarballs (.tar, .tar.gz/.bz2/.xz/.zst) into a sandbox on tmpfs:
//
//   <sandbox>/target/     the manifest's install.target: everything the installer writes
//   <sandbox>/outside/    a sentinel file and directory the archive tries to reach ("..",
//                         absolute paths, symlinks, hard links)
//   <sandbox>/artifact    the input bytes;  <sandbox>/work/  the agent's work dir
//
// Properties: nothing is created or changed outside target/ (or work/); no symlink unpacked into
// the release points outside the release directory; no unpacked file is a hard link to the
// sentinel; a refused archive leaves no releases/<v>.partial behind; an error is named.
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "install/installer.hpp"
#include "ota/manifest.hpp"

namespace fs = std::filesystem;

namespace {

const fs::path& sandbox() {
    static const fs::path dir = [] {
        const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
        const auto d = base / ("ota-fuzz-archive-" + std::to_string(::getpid()));
        fs::create_directories(d);
        return fs::canonical(d);
    }();
    return dir;
}

constexpr std::string_view sentinel_text = "outside the target: must never change\n";

bool inside(const fs::path& p, const fs::path& dir) {
    const auto rel = p.lexically_normal().lexically_relative(dir.lexically_normal());
    return !rel.empty() && *rel.begin() != "..";
}

void reset() {
    std::error_code ec;
    // chmod first: an archive may have left a directory without write or search permission
    for (auto it = fs::recursive_directory_iterator(sandbox(), fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_directory(ec) && !it->is_symlink(ec)) fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    }
    for (const auto& e : fs::directory_iterator(sandbox(), ec)) fs::remove_all(e.path(), ec);
    fs::create_directories(sandbox() / "target");
    fs::create_directories(sandbox() / "work");
    fs::create_directories(sandbox() / "outside/dir");
    std::ofstream(sandbox() / "outside/sentinel", std::ios::binary) << sentinel_text;
}

void check_sandbox(const fs::path& release) {
    const auto& box = sandbox();
    const auto target = box / "target";
    struct stat sentinel {};
    OTA_FUZZ_CHECK(::lstat((box / "outside/sentinel").c_str(), &sentinel) == 0 && S_ISREG(sentinel.st_mode),
                   "the sentinel file was replaced or removed");
    OTA_FUZZ_CHECK(sentinel.st_nlink == 1, "the sentinel file got a hard link");
    {
        std::ifstream f(box / "outside/sentinel", std::ios::binary);
        const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        OTA_FUZZ_CHECK(text == sentinel_text, "the sentinel file was written");
    }
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(box, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        const auto& p = it->path();
        const bool allowed = p == box / "artifact" || p == box / "outside" || p == box / "outside/sentinel" ||
                             p == box / "outside/dir" || p == target || inside(p, target) || p == box / "work" ||
                             inside(p, box / "work");
        OTA_FUZZ_CHECK(allowed, "written outside the target dir: " + p.string());
        struct stat st {};
        if (::lstat(p.c_str(), &st) != 0) continue;
        if (S_ISREG(st.st_mode) && p != box / "outside/sentinel")
            OTA_FUZZ_CHECK(st.st_ino != sentinel.st_ino, "a hard link to the sentinel: " + p.string());
        if (S_ISLNK(st.st_mode) && inside(p, release)) {
            std::error_code lec;
            const auto to = fs::read_symlink(p, lec);
            if (lec) continue;
            const auto resolved = to.is_absolute() ? to : (p.parent_path() / to);
            OTA_FUZZ_CHECK(!to.is_absolute() && (resolved.lexically_normal() == release.lexically_normal() ||
                                                  inside(resolved, release)),
                           "a symlink out of the release: " + p.string() + " -> " + to.string());
        }
    }
    OTA_FUZZ_CHECK(!ec, "walking the sandbox: " + ec.message());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    reset();
    const auto& box = sandbox();
    {
        std::ofstream f(box / "artifact", std::ios::binary);
        f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    ota::Manifest m;
    m.component = "app";
    m.version = "1.0.0";
    m.install.type = ota::InstallType::archive;
    m.install.target = (box / "target").string();
    ota::agent::ComponentConfig cfg;
    cfg.name = "app";
    const ota::agent::InstallRequest req{.manifest = m, .artifact = box / "artifact", .work_dir = box / "work", .config = cfg};
    const auto release = box / "target/releases/1.0.0";

    auto installer = ota::agent::make_installer(ota::InstallType::archive);
    auto record = installer->prepare(req);
    if (!record) {
        OTA_FUZZ_CHECK(!record.error().message.empty(), "an error without a message");
        OTA_FUZZ_CHECK(record.error().code == ota::ErrorCode::archive_unsafe || record.error().code == ota::ErrorCode::install_failed,
                       "unexpected error code: " + record.error().describe());
        OTA_FUZZ_CHECK(!fs::exists(fs::symlink_status(box / "target/releases/1.0.0.partial")),
                       "a refused archive left its .partial: " + record.error().describe());
        check_sandbox(release);
        return 0;
    }
    check_sandbox(release);
    auto active = installer->activate(req, *record);
    OTA_FUZZ_CHECK(active.has_value(), "activate after a good prepare: " + active.error().describe());
    check_sandbox(release);
    return 0;
}
