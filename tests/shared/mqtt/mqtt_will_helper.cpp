// A child process for the last-will test: connects with ota::mqtt::Client and a will, publishes
// "online", prints "ready", then sleeps until it is killed (SIGKILL: the socket is cut without an
// MQTT DISCONNECT, which is what makes the broker publish the will).
//
// usage: mqtt_will_helper <broker-url> <client-id> <cafile> <certfile> <keyfile> <will-topic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "ota/mqtt.hpp"

int main(int argc, char** argv) {
    if (argc != 7) {
        std::fprintf(stderr, "usage: %s <broker-url> <client-id> <cafile> <certfile> <keyfile> <will-topic>\n",
                     argv[0]);
        return 2;
    }
    ota::mqtt::Options options;
    options.broker = argv[1];
    options.client_id = argv[2];
    options.cafile = argv[3];
    options.certfile = argv[4];
    options.keyfile = argv[5];
    options.connect_timeout = std::chrono::seconds(5);
    options.will = ota::mqtt::Will{.topic = argv[6], .payload = "offline", .qos = 1, .retain = true};
    ota::mqtt::Client client(options);
    if (auto r = client.connect(); !r) {
        std::fprintf(stderr, "%s\n", r.error().describe().c_str());
        return 1;
    }
    if (auto r = client.publish(argv[6], "online", 1, true); !r) {
        std::fprintf(stderr, "%s\n", r.error().describe().c_str());
        return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}
