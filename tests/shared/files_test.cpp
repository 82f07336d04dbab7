#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "ota/files.hpp"
#include "ota/time.hpp"

namespace fs = std::filesystem;

TEST(Files, AtomicWriteReplacesAndSetsMode) {
    const auto dir = fs::temp_directory_path() / ("ota-files-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const auto f = dir / "key";
    ASSERT_TRUE(ota::write_file_atomic(f, "one", 0600));
    ASSERT_TRUE(ota::write_file_atomic(f, "two", 0600));
    EXPECT_EQ(*ota::read_file(f), "two");
    struct stat st {};
    ASSERT_EQ(::stat(f.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 1);  // no temp left
    ASSERT_TRUE(ota::copy_file_atomic(f, dir / "sub" / "dir" / "copy"));
    EXPECT_EQ(*ota::read_file(dir / "sub" / "dir" / "copy"), "two");
    auto bad = ota::write_file_atomic(dir / "nodir" / "x", "y");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, ota::ErrorCode::io_error);
    EXPECT_NE(bad.error().message.find("nodir"), std::string::npos);
    fs::remove_all(dir);
}

TEST(Time, FormatsAndParsesUtc) {
    auto t = ota::parse_utc("2026-03-10T12:34:56Z");
    ASSERT_TRUE(t);
    EXPECT_EQ(ota::format_utc(*t), "2026-03-10T12:34:56Z");
    for (const char* bad : {"2026-03-10T12:34:56", "2026-02-30T00:00:00Z", "2026-03-10 12:34:56Z", "x"})
        EXPECT_FALSE(ota::parse_utc(bad)) << bad;
}
