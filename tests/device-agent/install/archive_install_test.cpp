// `archive` install: a tarball unpacked into releases/<version>, `current` flipped atomically;
// unsafe entries refused with archive_unsafe and nothing live changed; rollback and re-runs.
#include <gtest/gtest.h>

#include "install_test_util.hpp"

namespace ota::agent::test {
namespace {

using Kind = TarEntry::Kind;

class ArchiveInstall : public ::testing::Test {
protected:
    kit::TempDir tmp{"ota-archive-install"};
    fs::path app = tmp / "app";
    std::unique_ptr<Installer> installer = make_installer(InstallType::archive);

    Job job(const std::string& v, const std::vector<TarEntry>& entries, bool gzip = true) {
        const auto artifact = tmp / ("app-" + v + (gzip ? ".tar.gz" : ".tar"));
        write_tar(artifact, entries, gzip);
        Job j{make_manifest(InstallType::archive, app.string(), v, "https://a.example/app-" + v + ".tar.gz",
                            VersionScheme::semver),
              {}, artifact, tmp / "work"};
        return j;
    }
    Job release(const std::string& v) {
        return job(v, {{.name = "bin/", .kind = Kind::dir, .mode = 0755},
                       {.name = "bin/run", .data = "#!/bin/sh\necho " + v + "\n", .mode = 0755},
                       {.name = "./share/version.txt", .data = v},
                       {.name = "share/latest", .kind = Kind::symlink, .link = "version.txt"},
                       {.name = "share/up", .kind = Kind::symlink, .link = "../bin/run"},
                       {.name = "share/copy", .kind = Kind::hardlink, .link = "share/version.txt"}});
    }
    void install(const Job& j) {
        auto rec = installer->prepare(j.request());
        ASSERT_TRUE(rec) << rec.error().describe();
        ASSERT_TRUE(installer->activate(j.request(), *rec));
        auto c = installer->commit(j.request(), *rec);
        ASSERT_TRUE(c) << c.error().describe();
    }
    std::string current() { return fs::read_symlink(app / "current").string(); }
    std::string live(const std::string& file) { return kit::read_file(app / "current" / file); }
};

TEST_F(ArchiveInstall, UnpacksIntoAReleaseDirAndFlipsCurrent) {
    auto j = release("1.0.0");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec) << rec.error().describe();
    EXPECT_FALSE(fs::exists(fs::symlink_status(app / "current"))) << "prepare touches nothing live";
    EXPECT_EQ((*rec)["previous"], nullptr);
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(installer->commit(j.request(), *rec));
    EXPECT_EQ(current(), "releases/1.0.0");
    EXPECT_EQ(live("share/version.txt"), "1.0.0");
    EXPECT_EQ(live("share/latest"), "1.0.0");
    EXPECT_EQ(live("share/copy"), "1.0.0");
    EXPECT_EQ(fs::status(app / "current/bin/run").permissions() & fs::perms::owner_exec, fs::perms::owner_exec);
    EXPECT_EQ(snapshot(app / "releases"),
              (std::map<std::string, std::string>{{"1.0.0", "d"},
                                                  {"1.0.0/bin", "d"},
                                                  {"1.0.0/bin/run", "f:493:#!/bin/sh\necho 1.0.0\n"},
                                                  {"1.0.0/share", "d"},
                                                  {"1.0.0/share/version.txt", "f:420:1.0.0"},
                                                  {"1.0.0/share/copy", "f:420:1.0.0"},
                                                  {"1.0.0/share/latest", "l:version.txt"},
                                                  {"1.0.0/share/up", "l:../bin/run"}}));
}

TEST_F(ArchiveInstall, PlainTarWorksToo) {
    install(job("1.0.0", {{.name = "a.txt", .data = "plain"}}, false));
    EXPECT_EQ(live("a.txt"), "plain");
}

TEST_F(ArchiveInstall, CommitKeepsLivePreviousAndKeepPreviousNewestOthers) {
    for (const auto* v : {"1.0.0", "1.1.0", "1.2.0", "2.0.0"}) install(release(v));
    fs::create_directories(app / "releases" / "not-a-version");
    install(release("2.1.0"));  // keep_previous = 1: 2.1.0 live, 2.0.0 previous; 1.x deleted
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(app / "releases")) names.insert(e.path().filename().string());
    EXPECT_EQ(names, (std::set<std::string>{"2.0.0", "2.1.0", "not-a-version"}));
    auto j = release("3.0.0");
    j.config.keep_previous = 2;
    install(j);
    install(release("1.5.0"));  // a signed rollback to an older version: 3.0.0 is the previous one
    names.clear();
    for (const auto& e : fs::directory_iterator(app / "releases")) names.insert(e.path().filename().string());
    EXPECT_EQ(names, (std::set<std::string>{"1.5.0", "3.0.0", "not-a-version"}));
    EXPECT_EQ(current(), "releases/1.5.0");
}

TEST_F(ArchiveInstall, RollbackAfterActivateRestoresExactlyThePreviousState) {
    install(release("1.0.0"));
    const auto before = snapshot(app);
    auto j = release("1.1.0");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    EXPECT_EQ((*rec)["previous"], "releases/1.0.0");
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    EXPECT_EQ(live("share/version.txt"), "1.1.0");
    ASSERT_TRUE(installer->rollback(j.request(), *rec));
    EXPECT_EQ(snapshot(app), before) << dump(snapshot(app));
    ASSERT_TRUE(installer->rollback(j.request(), *rec));
    EXPECT_EQ(snapshot(app), before);
}

TEST_F(ArchiveInstall, RollbackOfTheFirstReleaseRemovesCurrent) {
    fs::create_directories(app);
    const auto before = snapshot(app);
    auto j = release("1.0.0");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(installer->rollback(j.request(), *rec));
    auto after = snapshot(app);
    after.erase("releases");  // the (empty) releases directory may stay
    EXPECT_EQ(after, before) << dump(after);
}

TEST_F(ArchiveInstall, RollbackWhenOnlyPrepareRan) {
    install(release("1.0.0"));
    const auto before = snapshot(app);
    auto j = release("1.1.0");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(installer->rollback(j.request(), *rec));
    EXPECT_EQ(snapshot(app), before) << dump(snapshot(app));
    ASSERT_TRUE(installer->prepare(j.request()));
    ASSERT_TRUE(installer->rollback(j.request(), nlohmann::json::object()));
    EXPECT_EQ(snapshot(app), before) << dump(snapshot(app));
}

TEST_F(ArchiveInstall, EveryStepRunTwiceReachesTheSameEndState) {
    install(release("1.0.0"));
    auto j = release("1.1.0");
    // A crash during unpacking left a partial directory; another left a current.tmp.
    fs::create_directories(app / "releases" / "1.1.0.partial" / "junk");
    fs::create_symlink("releases/nowhere", app / "current.tmp");
    ASSERT_TRUE(installer->prepare(j.request()));
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec) << rec.error().describe();
    EXPECT_EQ((*rec)["previous"], "releases/1.0.0");
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(installer->commit(j.request(), *rec));
    ASSERT_TRUE(installer->commit(j.request(), *rec));
    EXPECT_EQ(current(), "releases/1.1.0");
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(app / "releases")) names.insert(e.path().filename().string());
    EXPECT_EQ(names, (std::set<std::string>{"1.0.0", "1.1.0"}));
    EXPECT_FALSE(fs::exists(fs::symlink_status(app / "current.tmp")));
    EXPECT_EQ(live("share/version.txt"), "1.1.0");
}

TEST_F(ArchiveInstall, RefusesACurrentThatIsNotASymlink) {
    fs::create_directories(app / "current");
    auto j = release("1.0.0");
    auto rec = installer->prepare(j.request());
    ASSERT_FALSE(rec);
    EXPECT_EQ(rec.error().code, ErrorCode::install_failed);
    EXPECT_NE(rec.error().message.find("not a symlink"), std::string::npos) << rec.error().message;
}

struct UnsafeCase {
    const char* title;
    std::vector<TarEntry> entries;
    const char* entry;  // the entry the error must name
    const char* why;
};

class UnsafeArchive : public ArchiveInstall, public ::testing::WithParamInterface<UnsafeCase> {};

TEST_P(UnsafeArchive, IsRefusedAndNothingLiveChanges) {
    install(release("1.0.0"));
    auto j = job("1.1.0", GetParam().entries);
    const auto tar_before = snapshot(tmp.path());
    auto rec = installer->prepare(j.request());
    ASSERT_FALSE(rec) << GetParam().title;
    EXPECT_EQ(rec.error().code, ErrorCode::archive_unsafe) << rec.error().describe();
    EXPECT_NE(rec.error().message.find(std::string("entry '") + GetParam().entry + "'"), std::string::npos)
        << rec.error().message;
    EXPECT_NE(rec.error().message.find(GetParam().why), std::string::npos) << rec.error().message;
    EXPECT_EQ(snapshot(tmp.path()), tar_before) << "no release dir, no partial dir, current untouched\n"
                                                << dump(snapshot(tmp.path()));
    EXPECT_EQ(current(), "releases/1.0.0");
    EXPECT_FALSE(fs::exists(tmp / "evil"));
    EXPECT_FALSE(fs::exists(app / "evil"));
}

const std::vector<TarEntry> kOk{{.name = "ok.txt", .data = "fine"}};

std::vector<TarEntry> with_ok(std::vector<TarEntry> e) {
    e.insert(e.begin(), kOk.begin(), kOk.end());
    return e;
}

INSTANTIATE_TEST_SUITE_P(
    Entries, UnsafeArchive,
    ::testing::Values(
        UnsafeCase{"dot-dot", with_ok({{.name = "../evil", .data = "x"}}), "../evil", "'..'"},
        UnsafeCase{"dot-dot inside", with_ok({{.name = "a/../../evil", .data = "x"}}), "a/../../evil", "'..'"},
        UnsafeCase{"absolute", with_ok({{.name = "/tmp/evil", .data = "x"}}), "/tmp/evil", "absolute path"},
        UnsafeCase{"symlink escaping", with_ok({{.name = "evil", .kind = Kind::symlink, .link = "../../.."}}), "evil",
                   "escapes the release directory"},
        UnsafeCase{"symlink absolute", with_ok({{.name = "etc", .kind = Kind::symlink, .link = "/etc"}}), "etc",
                   "absolute path"},
        UnsafeCase{"symlink climbing after a name",
                   with_ok({{.name = "d/", .kind = Kind::dir, .mode = 0755},
                            {.name = "d/l", .kind = Kind::symlink, .link = "x/../../.."}}),
                   "d/l", "'..' after a directory name"},
        UnsafeCase{"write through a symlink",
                   with_ok({{.name = "sub", .kind = Kind::symlink, .link = "."},
                            {.name = "sub/sub/evil", .data = "x"}}),
                   "sub/sub/evil", "through the symlink 'sub'"},
        UnsafeCase{"hardlink escaping", with_ok({{.name = "h", .kind = Kind::hardlink, .link = "../../etc/passwd"}}), "h",
                   "hard link"},
        UnsafeCase{"hardlink absolute", with_ok({{.name = "h", .kind = Kind::hardlink, .link = "/etc/passwd"}}), "h",
                   "hard link"},
        UnsafeCase{"hardlink to nothing", with_ok({{.name = "h", .kind = Kind::hardlink, .link = "missing"}}), "h",
                   "not an earlier regular file"},
        UnsafeCase{"character device", with_ok({{.name = "null", .kind = Kind::chardev}}), "null", "character device"},
        UnsafeCase{"fifo", with_ok({{.name = "pipe", .kind = Kind::fifo}}), "pipe", "FIFO"},
        UnsafeCase{"symlink replacing a directory",
                   with_ok({{.name = "d/f", .data = "x"}, {.name = "d", .kind = Kind::symlink, .link = "."}}), "d",
                   "replacing a directory"}),
    [](const auto& param_info) {
        std::string name = param_info.param.title;
        for (auto& c : name)
            if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
        return name;
    });

TEST_F(ArchiveInstall, CorruptArchiveIsInstallFailedAndCleansUp) {
    install(release("1.0.0"));
    auto j = release("1.1.0");
    auto bytes = kit::read_file(j.artifact);
    kit::write_file(j.artifact, bytes.substr(0, bytes.size() / 2));
    auto rec = installer->prepare(j.request());
    ASSERT_FALSE(rec);
    EXPECT_EQ(rec.error().code, ErrorCode::install_failed) << rec.error().describe();
    EXPECT_FALSE(fs::exists(app / "releases/1.1.0.partial"));
    EXPECT_FALSE(fs::exists(app / "releases/1.1.0"));
    EXPECT_EQ(current(), "releases/1.0.0");
}

}  // namespace
}  // namespace ota::agent::test
