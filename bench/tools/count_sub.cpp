// ota-bench-count: the baseline of the controller's ingest benchmark, a bare paho-mqtt-cpp
// subscriber (MQTT 5, TLS with a client certificate, QoS 1) that counts the messages of one
// filter and reports when it had `--count` of them.
//   ota-bench-count --broker mqtts://127.0.0.1:8883 --cafile ca.pem --cert operator.pem --key operator.key
//                   --topic 'ota/v1/devices/+/status/+' --count 100000 [--timeout 120] [--idle 3] [--skip-retained]
// With --reflect-topic it is the baseline of the halt benchmark: a client that answers a failure
// with one publish and nothing else (no parsing beyond a substring, no state, no database).
// Prints "ready" once subscribed, then one JSON line: {"count", "first_ms", "last_ms", "seconds", "rate",
// "cpu_ms"} with wall-clock milliseconds since the epoch and the CPU time (user + system) used. Exit 0 when `count` messages arrived, 1 otherwise.
#include <chrono>
#include <cstdio>
#include <string>

#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <mqtt/async_client.h>

namespace {
long long now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ota-bench-count: count messages like a bare paho subscriber"};
    std::string broker, cafile, cert, key, topic, id = "bench-count";
    long long count = 0;
    int timeout_s = 120;
    bool skip_retained = false;
    int idle_s = 0;
    std::string reflect_topic, reflect_when;
    app.add_option("--broker", broker)->required();
    app.add_option("--cafile", cafile);
    app.add_option("--cert", cert);
    app.add_option("--key", key);
    app.add_option("--topic", topic)->required();
    app.add_option("--count", count)->required();
    app.add_option("--timeout", timeout_s);
    app.add_option("--client-id", id);
    app.add_option("--idle", idle_s, "Stop when nothing arrived for this many seconds after the first message (0: never)");
    app.add_option("--reflect-topic", reflect_topic,
                   "Baseline of the halt benchmark: answer each message containing --reflect-when with "
                   "{\"cmd\":\"baseline\",\"component\":\"<its rollout>\"} on this topic (a device's cmd topic)");
    app.add_option("--reflect-when", reflect_when, "The payload substring that triggers the answer");
    app.add_flag("--skip-retained", skip_retained, "Do not count retained messages delivered at subscribe");
    CLI11_PARSE(app, argc, argv);
    try {
        mqtt::async_client cli(broker, id, mqtt::create_options(MQTTVERSION_5));
        auto ssl = mqtt::ssl_options_builder().trust_store(cafile).key_store(cert).private_key(key).finalize();
        auto opts = mqtt::connect_options_builder().mqtt_version(MQTTVERSION_5).clean_start(true).ssl(ssl)
                        .keep_alive_interval(std::chrono::seconds(30)).finalize();
        cli.start_consuming();
        cli.connect(opts)->wait();
        cli.subscribe(topic, 1)->wait();
        std::printf("ready\n");
        std::fflush(stdout);
        long long n = 0, first = 0, last = 0;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
        auto last_seen = std::chrono::steady_clock::now();
        while (n < count && std::chrono::steady_clock::now() < deadline) {
            mqtt::const_message_ptr m;
            if (!cli.try_consume_message_for(&m, std::chrono::milliseconds(200)) || !m) {
                if (idle_s > 0 && n > 0 && std::chrono::steady_clock::now() - last_seen > std::chrono::seconds(idle_s)) break;
                continue;
            }
            last_seen = std::chrono::steady_clock::now();
            if (!reflect_topic.empty() && m->get_payload_str().find(reflect_when) != std::string::npos) {
                const auto& p = m->get_payload_str();
                const std::string field = "\"rollout\":\"";
                const auto at = p.find(field);
                const auto rollout = at == std::string::npos ? std::string() : p.substr(at + field.size(), p.find('"', at + field.size()) - at - field.size());
                cli.publish(reflect_topic, "{\"cmd\":\"baseline\",\"component\":\"" + rollout + "\"}", 1, false);
            }
            if (skip_retained && m->is_retained()) continue;
            if (n == 0) first = now_ms();
            ++n;
            last = now_ms();
        }
        const double secs = n > 1 ? static_cast<double>(last - first) / 1000.0 : 0.0;
        rusage ru{};
        getrusage(RUSAGE_SELF, &ru);
        const long long cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000LL + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
        std::printf("{\"count\":%lld,\"first_ms\":%lld,\"last_ms\":%lld,\"seconds\":%.3f,\"rate\":%.0f,\"cpu_ms\":%lld}\n", n,
                    first, last, secs, secs > 0 ? static_cast<double>(n) / secs : 0.0, cpu_ms);
        cli.disconnect()->wait();
        return n >= count ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ota-bench-count: %s\n", e.what());
        return 1;
    }
}
