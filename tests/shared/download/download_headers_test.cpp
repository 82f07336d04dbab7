// The downloader's header parsing (download_headers.hpp) on what a server, a proxy or an attacker
// between them may send: the values fetch() judges a response by, and what it must ignore.
#include <gtest/gtest.h>

#include <string>

#include "ota/download_headers.hpp"

namespace {

namespace dl = ota::download;

dl::ResponseHeaders parse(std::initializer_list<std::string> lines) {
    dl::ResponseHeaders h;
    for (const auto& l : lines) dl::parse_header_line(l, h);
    return h;
}

TEST(DownloadHeaders, ContentRangeIsReadOnlyWhenWellFormed) {
    auto r = dl::parse_content_range("bytes 100-199/300");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->first, 100u);
    EXPECT_EQ(r->last, 199u);
    EXPECT_EQ(r->total, 300u);
    r = dl::parse_content_range("bytes 0-0/*");
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->total);
    for (const char* bad : {"", "bytes", "bytes ", "bytes 5-4/10", "bytes 0-9/9", "bytes 0-9/5", "items 0-9/10", "bytes -9/10",
                            "bytes 0-/10", "bytes 0-9/", "bytes 0-9/10x", "bytes +1-9/10", "bytes 0-9/10/11",
                            "bytes 1/2-3", "bytes 0-99999999999999999999/100000000000000000000",
                            "bytes 18446744073709551616-18446744073709551617/*"})
        EXPECT_FALSE(dl::parse_content_range(bad)) << bad;
    EXPECT_TRUE(dl::parse_content_range("bytes 0-18446744073709551614/18446744073709551615"));
}

TEST(DownloadHeaders, SizesAreDecimalAndFitIn64Bits) {
    EXPECT_EQ(dl::parse_u64("0"), 0u);
    EXPECT_EQ(dl::parse_u64("18446744073709551615"), 18446744073709551615u);
    for (const char* bad : {"", "-1", "+1", " 1", "1 ", "0x10", "1e3", "18446744073709551616", "999999999999999999999999"})
        EXPECT_FALSE(dl::parse_u64(bad)) << bad;
    EXPECT_FALSE(parse({"HTTP/1.1 200 OK\r\n", "Content-Length: 1e400\r\n"}).content_length);
    EXPECT_EQ(parse({"HTTP/1.1 200 OK\r\n", "content-length:  42 \r\n"}).content_length, 42u);
}

TEST(DownloadHeaders, AStatusLineStartsANewResponse) {
    const auto h = parse({"HTTP/1.1 302 Found\r\n", "ETag: \"old\"\r\n", "HTTP/1.1 206 Partial Content\r\n",
                          "Content-Range: bytes 5-9/10\r\n"});
    EXPECT_EQ(h.status, 206);
    EXPECT_EQ(h.etag, "");  // the redirect's ETag is forgotten
    EXPECT_EQ(h.content_range, "bytes 5-9/10");
    EXPECT_EQ(parse({"HTTP/2 404\r\n"}).status, 404);
    EXPECT_EQ(parse({"HTTP/1.1 abc\r\n"}).status, 0);
    EXPECT_EQ(parse({"HTTP/1.1\r\n"}).status, 0);
}

TEST(DownloadHeaders, ValidatorsThatAreNotPrintableAsciiAreDropped) {
    // An ETag goes back out in If-Range and into the JSON sidecar: bytes that are not UTF-8 or
    // control characters there would break both, so such a validator is not used at all.
    EXPECT_EQ(parse({"HTTP/1.1 200 OK\r\n", "ETag: \"abc-1\"\r\n"}).etag, "\"abc-1\"");
    EXPECT_EQ(parse({"HTTP/1.1 200 OK\r\n", "ETag: \"\xff\xfe\"\r\n"}).etag, "");
    EXPECT_EQ(parse({"HTTP/1.1 200 OK\r\n", std::string("ETag: \"a\x01") + "b\"\r\n"}).etag, "");
    EXPECT_EQ(parse({"HTTP/1.1 200 OK\r\n", "ETag: \"" + std::string(300, 'a') + "\"\r\n"}).etag, "");
    EXPECT_EQ(parse({"HTTP/1.1 200 OK\r\n", "Last-Modified: \xc3\x28\r\n"}).last_modified, "");
    EXPECT_EQ(parse({"HTTP/1.1 200 OK\r\n", "Last-Modified: Thu, 03 Dec 2026 07:00:00 GMT\r\n"}).last_modified,
              "Thu, 03 Dec 2026 07:00:00 GMT");
    // Content-Range is kept for error messages, printable.
    EXPECT_EQ(parse({"HTTP/1.1 206\r\n", "Content-Range: bytes \xff-1/2\r\n"}).content_range, "bytes ?-1/2");
}

TEST(DownloadHeaders, ArbitraryBytesNeverThrow) {
    std::string line;
    dl::ResponseHeaders h;
    for (int i = 0; i < 2000; ++i) {
        line.push_back(static_cast<char>((i * 131 + 7) & 0xFF));
        if (i % 97 == 0) line += ": ";
        dl::parse_header_line(line, h);
        EXPECT_FALSE(dl::parse_content_range(line));
    }
    EXPECT_EQ(h.status, 0);  // no line began with "HTTP/"
    EXPECT_TRUE(dl::safe_validator(h.etag) || h.etag.empty());
}

}  // namespace
