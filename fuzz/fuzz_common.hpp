// Shared by the fuzz targets (docs/fuzzing.md): the fixed test signing key, so that seeds signed
// with it verify and the fuzzer gets past the signature to the manifest checks, and a check that
// aborts with a message (a finding, reported by libFuzzer with the input that caused it).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ota/crypto.hpp"
#include "ota/time.hpp"

namespace ota::fuzz {

// A test key, published here on purpose: it signs only the seed corpora. Key id printed by
// `fuzz_seeds --key-id`.
inline constexpr std::string_view test_private_key_pem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIO0ehgzGRg2UiEkIyQIqDYupzDA2Dgpdea/OW0/O3Pm+\n"
    "-----END PRIVATE KEY-----\n";

inline const crypto::PrivateKey& test_key() {
    static const crypto::PrivateKey key = [] {
        auto k = crypto::PrivateKey::from_pem(test_private_key_pem);
        if (!k) {
            std::fprintf(stderr, "fuzz: the test key does not load: %s\n", k.error().describe().c_str());
            std::abort();
        }
        return *k;
    }();
    return key;
}

inline const crypto::TrustStore& test_trust() {
    static const crypto::TrustStore trust = [] {
        crypto::TrustStore t;
        t.add(test_key().public_key());
        return t;
    }();
    return trust;
}

// The fixed "now" of every target: 2026-12-01T00:00:00Z (before the seeds' expiry, after their
// creation), so a run does not depend on the day it runs.
inline Timestamp fixed_now() { return Timestamp{std::chrono::seconds{1796083200}}; }

[[noreturn]] inline void violated(const char* what, const std::string& detail) {
    std::fprintf(stderr, "fuzz property violated: %s\n%s\n", what, detail.c_str());
    std::abort();
}

}  // namespace ota::fuzz

#define OTA_FUZZ_CHECK(cond, detail)                            \
    do {                                                        \
        if (!(cond)) ::ota::fuzz::violated(#cond, (detail));    \
    } while (false)
