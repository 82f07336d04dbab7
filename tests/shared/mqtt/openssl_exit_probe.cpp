// openssl_exit_probe: a thread that still uses OpenSSL after main() has returned, as paho C's
// detached network threads may (see the constructor at the top of shared/src/mqtt.cpp).
//
// main() registers release_worker() with atexit() before anything uses OpenSSL, so it runs
// after any atexit handler registered later, OpenSSL's own cleanup among them. It lets the
// worker thread hash once more and joins it. Exit status 0: the hash was right; 3: OpenSSL had
// already been cleaned up under the thread (it failed or gave a wrong digest); a crash is the
// other way this race shows.
#include "ota/mqtt.hpp"

#include <openssl/evp.h>

#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace {

std::mutex mu;
std::condition_variable cv;
bool ready = false;
bool released = false;
bool second_hash_ok = false;
std::thread worker;

bool sha256_of_abc_is_right() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest("abc", 3, md, &n, EVP_sha256(), nullptr) != 1 || n != 32) return false;
    return md[0] == 0xba && md[1] == 0x78 && md[2] == 0x16 && md[31] == 0xad;  // ba7816bf…f20015ad
}

void release_worker() {
    {
        std::lock_guard lock(mu);
        released = true;
    }
    cv.notify_all();
    worker.join();
    if (!second_hash_ok) {
        std::fputs("openssl_exit_probe: SHA-256 failed in a thread after main() returned "
                   "(OpenSSL was cleaned up at exit)\n", stderr);
        _exit(3);
    }
}

}  // namespace

int main() {
    std::atexit(release_worker);
    // Link and use the MQTT library as the daemons do; this client never connects.
    ota::mqtt::Options options;
    options.broker = "tcp://127.0.0.1:1";
    options.client_id = "openssl-exit-probe";
    ota::mqtt::Client client(options);
    worker = std::thread([] {
        bool first = sha256_of_abc_is_right();
        std::unique_lock lock(mu);
        ready = true;
        cv.notify_all();
        cv.wait(lock, [] { return released; });
        second_hash_ok = first && sha256_of_abc_is_right();
    });
    std::unique_lock lock(mu);
    cv.wait(lock, [] { return ready; });
    return 0;
}
