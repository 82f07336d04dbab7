// `binary` and `self`: <bin>.new written, <bin>.old kept, atomic rename; rollback restores the
// previous bytes; every step re-run after a crash reaches the same state.
#include <gtest/gtest.h>

#include "install_test_util.hpp"

namespace ota::agent::test {
namespace {

class BinaryInstall : public ::testing::TestWithParam<InstallType> {
protected:
    kit::TempDir tmp{"ota-binary-install"};
    fs::path bin_dir = tmp / "bin";
    fs::path bin = bin_dir / "tool";
    std::unique_ptr<Installer> installer = make_installer(GetParam());

    void SetUp() override {
        fs::create_directories(bin_dir);
        kit::write_file(bin, "#!/bin/sh\necho old\n");
        fs::permissions(bin, fs::perms(0755));
    }
    Job job(const std::string& v, const std::string& content) {
        const auto artifact = tmp / ("tool-" + v);
        kit::write_file(artifact, content);
        return Job{make_manifest(GetParam(), bin.string(), v, "https://a.example/tool-" + v, VersionScheme::semver), {},
                   artifact, tmp / "work"};
    }
};

TEST_P(BinaryInstall, PrepareActivateCommitKeepsOneOld) {
    auto j = job("2.0.0", "#!/bin/sh\necho new\n");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec) << rec.error().describe();
    EXPECT_EQ(snapshot(bin_dir), (std::map<std::string, std::string>{{"tool", "f:493:#!/bin/sh\necho old\n"},
                                                                     {"tool.new", "f:493:#!/bin/sh\necho new\n"}}));
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(installer->commit(j.request(), *rec));
    EXPECT_EQ(snapshot(bin_dir), (std::map<std::string, std::string>{{"tool", "f:493:#!/bin/sh\necho new\n"},
                                                                     {"tool.old", "f:493:#!/bin/sh\necho old\n"}}));
    const auto r = kit::run({bin.string()});
    EXPECT_EQ(r.out, "new\n");

    // The next update replaces .old with the binary it replaces.
    auto j3 = job("3.0.0", "three");
    auto rec3 = installer->prepare(j3.request());
    ASSERT_TRUE(rec3);
    ASSERT_TRUE(installer->activate(j3.request(), *rec3));
    ASSERT_TRUE(installer->commit(j3.request(), *rec3));
    EXPECT_EQ(snapshot(bin_dir), (std::map<std::string, std::string>{{"tool", "f:493:three"},
                                                                     {"tool.old", "f:493:#!/bin/sh\necho new\n"}}));
}

TEST_P(BinaryInstall, RollbackAfterActivateRestoresThePreviousBytes) {
    kit::write_file(bin_dir / "tool.old", "an old .old from an earlier update");
    const auto before = snapshot(bin_dir);
    auto j = job("2.0.0", "new bytes");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    EXPECT_EQ(kit::read_file(bin), "new bytes");
    ASSERT_TRUE(installer->rollback(j.request(), *rec));
    ASSERT_TRUE(installer->rollback(j.request(), *rec));
    auto after = snapshot(bin_dir);
    EXPECT_EQ(after.at("tool"), before.at("tool"));
    EXPECT_FALSE(after.contains("tool.new"));
    EXPECT_EQ(kit::run({bin.string()}).out, "old\n");
}

TEST_P(BinaryInstall, RollbackWhenOnlyPrepareRanKeepsTheLiveBinaryAndItsOld) {
    kit::write_file(bin_dir / "tool.old", "the previous update's old binary");
    const auto before = snapshot(bin_dir);
    auto j = job("2.0.0", "new bytes");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(installer->rollback(j.request(), *rec));
    EXPECT_EQ(snapshot(bin_dir), before) << dump(snapshot(bin_dir));
    ASSERT_TRUE(installer->prepare(j.request()));
    ASSERT_TRUE(installer->rollback(j.request(), nlohmann::json::object()));
    EXPECT_EQ(snapshot(bin_dir), before) << dump(snapshot(bin_dir));
}

TEST_P(BinaryInstall, EveryStepRunTwiceAndACrashBetweenLinkAndRename) {
    auto j = job("2.0.0", "new bytes");
    ASSERT_TRUE(installer->prepare(j.request()));
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    // The crash came after <bin>.old was made and before the rename.
    ASSERT_EQ(::link(bin.c_str(), (bin_dir / "tool.old").c_str()), 0);
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    ASSERT_TRUE(installer->commit(j.request(), *rec));
    ASSERT_TRUE(installer->commit(j.request(), *rec));
    EXPECT_EQ(snapshot(bin_dir), (std::map<std::string, std::string>{{"tool", "f:493:new bytes"},
                                                                     {"tool.old", "f:493:#!/bin/sh\necho old\n"}}));
}

TEST_P(BinaryInstall, FirstInstallRollbackRemovesTheBinary) {
    fs::remove(bin);
    kit::write_file(bin_dir / "tool.old", "stale, from long ago");
    const auto before = snapshot(bin_dir);
    auto j = job("1.0.0", "first");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(installer->activate(j.request(), *rec));
    EXPECT_EQ(kit::read_file(bin), "first");
    EXPECT_EQ(kit::read_file(bin_dir / "tool.old"), "stale, from long ago");
    ASSERT_TRUE(installer->rollback(j.request(), *rec));
    EXPECT_EQ(snapshot(bin_dir), before) << dump(snapshot(bin_dir));
}

TEST_P(BinaryInstall, ActivateWithoutThePreparedBinaryFails) {
    auto j = job("2.0.0", "new");
    auto rec = installer->prepare(j.request());
    ASSERT_TRUE(rec);
    fs::remove(bin_dir / "tool.new");
    auto a = installer->activate(j.request(), *rec);
    ASSERT_FALSE(a);
    EXPECT_EQ(a.error().code, ErrorCode::install_failed);
    EXPECT_EQ(kit::read_file(bin), "#!/bin/sh\necho old\n");
}

INSTANTIATE_TEST_SUITE_P(Types, BinaryInstall, ::testing::Values(InstallType::binary, InstallType::self),
                         [](const auto& param_info) { return param_info.param == InstallType::binary ? "binary" : "self"; });

}  // namespace
}  // namespace ota::agent::test
