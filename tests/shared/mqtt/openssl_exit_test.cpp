// OpenSSL stays usable by threads that outlive main() in programs that link ota::mqtt.
#include "kit.hpp"

#include <gtest/gtest.h>

namespace kit = ota::testkit;

TEST(OpensslAtExit, AThreadThatOutlivesMainCanStillUseOpenSSL) {
    auto r = kit::run({OTA_OPENSSL_EXIT_PROBE});
    EXPECT_EQ(r.exit_code, 0) << r.err;
}
