// The iofault shim itself (tests/faults/iofault.c), on iofault_probe: which calls it counts,
// which one fails and with which errno, the path filter, sticky mode, the call log, threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "fault_sweep.hpp"
#include "kit.hpp"

namespace kit = ota::testkit;
namespace fs = std::filesystem;

namespace {

struct LogLine {
    long index{0};
    std::string op, result, fn, path;
};

class IofaultShim : public ::testing::Test {
protected:
    kit::TempDir tmp{"ota-iofault-shim"};
    fs::path dir = tmp / "watched";
    fs::path log = tmp / "calls.log";

    void SetUp() override { fs::create_directories(dir); }

    // Run the probe with the shim and these settings; stdout lines (one per operation).
    std::vector<std::string> probe(const std::vector<std::string>& ops, std::map<std::string, std::string> env,
                                   std::string* err = nullptr) {
        env = faults::preload_env(OTA_IOFAULT_LIB, std::move(env));
        env["OTA_IOFAULT_LOG"] = log.string();
        std::vector<std::string> argv{OTA_IOFAULT_PROBE};
        argv.insert(argv.end(), ops.begin(), ops.end());
        auto r = kit::run(argv, std::chrono::seconds(20), env);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        if (err) *err = r.err;
        std::vector<std::string> lines;
        std::istringstream in(r.out);
        for (std::string l; std::getline(in, l);) lines.push_back(l);
        return lines;
    }

    std::vector<LogLine> calls() const {
        std::vector<LogLine> out;
        if (!fs::exists(log)) return out;
        std::istringstream in(kit::read_file(log));
        for (std::string l; std::getline(in, l);) {
            std::istringstream f(l);
            LogLine c;
            std::string pid;
            f >> c.index >> c.op >> c.result >> pid >> c.fn;
            std::getline(f >> std::ws, c.path);
            out.push_back(c);
        }
        return out;
    }

    std::string in_dir(const std::string& name) const { return (dir / name).string(); }
};

using Env = std::map<std::string, std::string>;
using Lines = std::vector<std::string>;

TEST_F(IofaultShim, WithoutNthEveryEntryPointIsCountedAndNothingFails) {
    auto out = probe({"write", in_dir("a"), "pwrite", in_dir("a"), "pwrite64", in_dir("a"), "writev", in_dir("a"), "ofstream", in_dir("a"),
                      "fsync", in_dir("a"), "fdatasync", in_dir("a"), "fsync", dir.string(),
                      "rename", in_dir("a"), in_dir("b"), "renameat", in_dir("b"), in_dir("c"),
                      "renameat2", in_dir("c"), in_dir("d"), "fs-rename", in_dir("d"), in_dir("e")},
                     Env{{"OTA_IOFAULT_PATH", dir.string()}});
    EXPECT_EQ(out, (Lines{"write ok", "pwrite ok", "pwrite64 ok", "writev ok", "ofstream ok", "fsync ok", "fdatasync ok", "fsync ok",
                          "rename ok", "renameat ok", "renameat2 ok", "fs-rename ok"}));
    EXPECT_EQ(kit::read_file(dir / "e"), "xxx");  // pwrite overwrote the first byte
    const auto c = calls();
    ASSERT_EQ(c.size(), 12u);
    std::vector<std::string> fns;
    for (std::size_t i = 0; i < c.size(); ++i) {
        EXPECT_EQ(c[i].index, static_cast<long>(i + 1));
        EXPECT_EQ(c[i].result, "ok");
        fns.push_back(c[i].op + "/" + c[i].fn);
    }
    // libstdc++'s ofstream writes with write(2) and std::filesystem::rename calls rename(3).
    EXPECT_EQ(fns, (Lines{"write/write", "write/pwrite", "write/pwrite64", "write/writev", "write/write", "fsync/fsync",
                          "fsync/fdatasync", "fsync/fsync", "rename/rename", "rename/renameat", "rename/renameat2",
                          "rename/rename"}));
    EXPECT_EQ(c[0].path, in_dir("a"));
    EXPECT_EQ(c[7].path, dir.string());  // a directory's own fsync is under the filter
    EXPECT_EQ(c[8].path, in_dir("b"));   // a rename is named by its destination
}

TEST_F(IofaultShim, TheNthCountedCallFailsOnceWithTheChosenErrno) {
    auto out = probe({"write", in_dir("f"), "write", in_dir("f"), "write", in_dir("f")},
                     Env{{"OTA_IOFAULT_PATH", dir.string()}, {"OTA_IOFAULT_NTH", "2"}});
    EXPECT_EQ(out, (Lines{"write ok", "write 28", "write ok"}));  // ENOSPC by default
    EXPECT_EQ(kit::read_file(dir / "f"), "xx");                  // the failed write wrote nothing
    auto c = calls();
    ASSERT_EQ(c.size(), 3u);
    EXPECT_EQ(c[1].result, "fail");
    EXPECT_EQ(c[0].result + c[2].result, "okok");

    fs::remove(log);
    out = probe({"fsync", in_dir("f"), "fsync", in_dir("f")},
                Env{{"OTA_IOFAULT_PATH", dir.string()}, {"OTA_IOFAULT_NTH", "1"}, {"OTA_IOFAULT_ERRNO", "EIO"}});
    EXPECT_EQ(out, (Lines{"fsync 5", "fsync ok"}));
    out = probe({"rename", in_dir("f"), in_dir("g")},
                Env{{"OTA_IOFAULT_PATH", dir.string()}, {"OTA_IOFAULT_NTH", "1"}, {"OTA_IOFAULT_ERRNO", "122"}});
    EXPECT_EQ(out, (Lines{"rename 122"}));  // a number works too (EDQUOT)
    EXPECT_TRUE(fs::exists(dir / "f"));
    EXPECT_FALSE(fs::exists(dir / "g"));
}

TEST_F(IofaultShim, StickyFailsThatCallAndEveryLaterCountedOne) {
    auto out = probe({"write", in_dir("f"), "fsync", in_dir("f"), "write", in_dir("f"), "rename", in_dir("f"), in_dir("g"),
                      "write", (tmp / "outside").string()},
                     Env{{"OTA_IOFAULT_PATH", dir.string()}, {"OTA_IOFAULT_NTH", "2"}, {"OTA_IOFAULT_MODE", "sticky"}});
    EXPECT_EQ(out, (Lines{"write ok", "fsync 28", "write 28", "rename 28", "write ok"}));
    EXPECT_EQ(kit::read_file(dir / "f"), "x");
    EXPECT_EQ(calls().size(), 4u);  // the write outside the directory was not counted
}

TEST_F(IofaultShim, OnlyFilesUnderThePathAndOnlyTheChosenOpsCount) {
    fs::create_directories(tmp / "watched2");  // shares the prefix, is not under it
    auto out = probe({"write", (tmp / "watched2" / "f").string(), "write", in_dir("f"), "fsync", in_dir("f"),
                      "rename", (tmp / "watched2" / "f").string(), (tmp / "watched2" / "g").string(),
                      "rename", (tmp / "watched2" / "g").string(), in_dir("from-outside"), "fsync", in_dir("f")},
                     Env{{"OTA_IOFAULT_PATH", dir.string() + "/"}, {"OTA_IOFAULT_OPS", "fsync,rename"},
                         {"OTA_IOFAULT_NTH", "2"}});
    // Counted: fsync (1), rename into the dir (2: fails), fsync (3). Writes are not counted.
    EXPECT_EQ(out, (Lines{"write ok", "write ok", "fsync ok", "rename ok", "rename 28", "fsync ok"}));
    auto c = calls();
    ASSERT_EQ(c.size(), 3u);
    EXPECT_EQ(c[1].op, "rename");
    EXPECT_EQ(c[1].path, in_dir("from-outside"));
}

TEST_F(IofaultShim, ConcurrentCallsGetDistinctIndexes) {
    auto out = probe({"threads", in_dir("f"), "64"}, Env{{"OTA_IOFAULT_PATH", dir.string()}, {"OTA_IOFAULT_OPS", "write"}});
    EXPECT_EQ(out, (Lines{"threads ok"}));
    std::set<long> indexes;
    for (const auto& c : calls()) indexes.insert(c.index);
    ASSERT_EQ(indexes.size(), 64u);
    EXPECT_EQ(*indexes.begin(), 1);
    EXPECT_EQ(*indexes.rbegin(), 64);
    EXPECT_EQ(kit::read_file(dir / "f").size(), 64u);
}

TEST_F(IofaultShim, ABadSettingIsNamedOnStderr) {
    std::string err;
    auto out = probe({"write", in_dir("f")}, Env{{"OTA_IOFAULT_ERRNO", "ENOPE"}, {"OTA_IOFAULT_NTH", "1"},
                                                  {"OTA_IOFAULT_PATH", dir.string()}}, &err);
    EXPECT_NE(err.find("iofault: OTA_IOFAULT_ERRNO: unknown errno: 'ENOPE'"), std::string::npos) << err;
    EXPECT_EQ(out, (Lines{"write 28"}));  // the default errno stays
    probe({"write", in_dir("f")}, Env{{"OTA_IOFAULT_OPS", "write,fsnyc"}}, &err);
    EXPECT_NE(err.find("OTA_IOFAULT_OPS: unknown op in: 'write,fsnyc'"), std::string::npos) << err;
}

}  // namespace
