// The fixture of the NAT tests: three ota-agent daemons in a site network behind a NAT router
// (kit::NatSite), the real broker, nginx, ota-controller and ota-publish in the root namespace
// bound to the cloud address (their certificates name it: make-dev-certs --san). A rollout of
// detection-model in two waves (canary device-001, then everyone); the test applies network
// faults at the router while it runs and checks the end state with expect_rollout_complete().
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <regex>
#include <sstream>
#include <thread>

#include "kit.hpp"
#include "kit_net.hpp"

namespace nat {

namespace kit = ota::testkit;
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

inline const std::vector<std::string> kDevices{"device-001", "device-002", "device-003"};
constexpr std::uint64_t kMiB = 1024 * 1024;
// The agents run with the shipped defaults (docs/agent.md): MQTT keepalive 30 s, a transfer below
// 1 KiB/s for 30 s is abandoned, 5 attempts per download with jittered backoff from 0.5 s.
constexpr int kKeepaliveS = 30;

class NatRollout : public ::testing::Test {
protected:
    // Declared first: destroyed last, after every process that runs in or talks through it.
    std::unique_ptr<kit::NatSite> site;
    kit::TempDir dir{"ota-nat"};
    kit::TempDir pki_dir{"ota-nat-pki"};
    kit::Pki pki;
    std::unique_ptr<kit::Broker> broker;
    std::unique_ptr<kit::ArtifactServer> server;
    std::unique_ptr<kit::Process> controller;
    std::vector<std::unique_ptr<kit::Process>> agents;

    void SetUp() override {
        if (auto why = kit::netns_unavailable()) GTEST_SKIP() << "skipped: " << *why;
        site = std::make_unique<kit::NatSite>();
        kit::PkiOptions po;
        po.devices = static_cast<int>(kDevices.size());
        po.sans = {"IP:" + site->cloud_address()};
        pki = kit::make_pki(pki_dir.path(), po);
        kit::BrokerOptions bo;
        bo.bind_address = site->cloud_address();
        broker = std::make_unique<kit::Broker>(pki, bo);
        kit::ArtifactServer::Options so;
        so.listen_address = site->cloud_address();
        // A small socket send buffer: what nginx logs as sent is then about what reached the
        // device (with Linux's default of up to 4 MiB it counts bytes still queued in the kernel
        // when the link went down, which no agent could have received).
        so.listen_params = "sndbuf=32k";
        server = std::make_unique<kit::ArtifactServer>(pki, so);
        auto k = kit::run({OTA_PUBLISH_BIN, "keygen", "--out", (dir / "release").string()});
        ASSERT_EQ(k.exit_code, 0) << k.err;
        json cfg{{"mqtt", {{"broker", broker->url()}, {"cafile", pki.ca()}, {"cert", pki.cert("controller")},
                           {"key", pki.key("controller")}}},
                 {"trusted_keys", (dir / "release.pub").string()},
                 {"database", (dir / "controller.db").string()},
                 {"tick_ms", 50},
                 {"state_interval_ms", 100},
                 {"fleets", json::array({{{"name", "site"},
                                          {"defaults", {{"max_failures", 1}, {"soak_s", 1}, {"device_timeout_s", 300}}},
                                          {"waves", json::array({{{"name", "canary"}, {"devices", {"device-001"}}},
                                                                 {{"name", "broad"}, {"percent", 100}}})}}})}};
        kit::write_file(dir / "controller.json", cfg.dump(2));
        controller = std::make_unique<kit::Process>(
            std::vector<std::string>{OTA_CONTROLLER_BIN, "--config", (dir / "controller.json").string()}, dir / "controller.log");
        for (const auto& d : kDevices) {
            const auto root = dir / d / "root";
            fs::create_directories(root / "var/lib/models");
            kit::write_file(root / "var/lib/models/model-2026-01-01.trt", "GOOD working version");
            json a{{"device_id", d},
                   {"mqtt", {{"broker", broker->url()}, {"cafile", pki.ca()}, {"cert", pki.cert(d)}, {"key", pki.key(d)}}},
                   {"trusted_keys", (dir / "release.pub").string()},
                   {"state_dir", (dir / d / "state").string()},
                   {"install_root", root.string()},
                   {"download", {{"cafile", pki.ca().string()}}},
                   {"components",
                    {{"detection-model",
                      {{"version_source",
                        {{"type", "files"}, {"dir", (root / "var/lib/models").string()}, {"pattern", "model-(.*)\\.trt"}}}}}}}};
            kit::write_file(dir / d / "agent.json", a.dump(2));
            agents.push_back(std::make_unique<kit::Process>(
                site->in_site({OTA_AGENT_BIN, "--config", (dir / d / "agent.json").string()}), dir / d / "agent.log"));
        }
        ASSERT_TRUE(kit::wait_until([&] {
            for (const auto& d : kDevices)
                if (!retained("ota/v1/devices/" + d + "/assignment") || !online(d)) return false;
            return true;
        }, 60s, 250ms)) << logs();
    }

    void TearDown() override {
        if (HasFailure() && site) std::cerr << logs();
        agents.clear();  // before the site goes away
        controller.reset();
    }

    std::string logs() const {
        std::string out;
        if (controller) out += "controller log:\n" + controller->log() + "\n";
        for (std::size_t i = 0; i < agents.size(); ++i) out += kDevices[i] + " log:\n" + agents[i]->log() + "\n";
        if (broker) out += "broker log:\n" + broker->log() + "\n";
        if (server) out += "access log:\n" + server->access_log() + "\n";
        return out;
    }

    std::optional<std::string> retained(const std::string& topic) const {
        auto got = kit::mosquitto_sub(*broker, pki, "operator", topic, 1, 1000ms);
        if (got.messages.empty() || got.messages.front().second.empty()) return std::nullopt;
        return got.messages.front().second;
    }
    json retained_json(const std::string& topic) const { return json::parse(retained(topic).value_or("{}")); }
    bool online(const std::string& d) const {
        return retained_json("ota/v1/devices/" + d + "/online").value("online", false);
    }

    static std::string rollout_id(const std::string& version) { return "site.detection-model." + version; }
    json rollout(const std::string& version) const { return retained_json("ota/v1/rollouts/" + rollout_id(version)); }

    // CI: an artifact of `size` bytes (not compressible), published with ota-publish.
    std::string publish(const std::string& version, std::size_t size) {
        std::string content = "GOOD model " + version + "\n";
        std::uint64_t x = 0x9E3779B97F4A7C15ull ^ size;
        while (content.size() < size) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            content.push_back(static_cast<char>(x & 0xff));
        }
        content.resize(size);
        const auto file = dir / ("model-" + version + ".trt");
        kit::write_file(file, content);
        auto r = kit::run({OTA_PUBLISH_BIN, "publish", "--broker", broker->url(), "--cafile", pki.ca().string(), "--cert",
                           pki.cert("ci").string(), "--key", pki.key("ci").string(), "--signing-key",
                           (dir / "release.key").string(), "--component", "detection-model", "--version", version,
                           "--channel", "stable", "--artifact", file.string(), "--url",
                           server->url("models/model-" + version + ".trt"), "--install", "file", "--target",
                           "/var/lib/models", "--copy-to", server->root().string()});
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return content;
    }

    // Bytes of `d`'s partial downloads on disk (the transfer is under way while this grows).
    std::uint64_t partial_bytes(const std::string& d) const {
        std::uint64_t n = 0;
        std::error_code ec;
        for (auto it = fs::recursive_directory_iterator(dir / d / "state", ec); !ec && it != fs::recursive_directory_iterator();
             it.increment(ec))
            if (it->is_regular_file(ec) && it->path().string().ends_with(".part")) n += it->file_size(ec);
        return n;
    }
    // Wait until `d` has at least `bytes` of the artifact on disk (the download is mid-way).
    bool wait_partial(const std::string& d, std::uint64_t bytes, std::chrono::milliseconds timeout = 60s) const {
        return kit::wait_until([&] { return partial_bytes(d) >= bytes; }, timeout, 20ms);
    }

    // Body bytes nginx sent for `path`, summed over every request (one line per request).
    std::uint64_t bytes_sent(const std::string& path, int* requests = nullptr, std::string* lines = nullptr) const {
        static const std::regex line("\"GET ([^ ]+) HTTP/[0-9.]+\" ([0-9]{3}) ([0-9]+)");
        const auto log = server->access_log();
        std::uint64_t total = 0;
        int n = 0;
        for (std::sregex_iterator it(log.begin(), log.end(), line), end; it != end; ++it) {
            if ((*it)[1] != path) continue;
            total += std::stoull((*it)[3]);
            ++n;
            if (lines) *lines += " " + (*it)[2].str() + ":" + (*it)[3].str();
        }
        if (requests) *requests = n;
        return total;
    }

    // The end of every scenario: the rollout completed with exact counts, every device runs
    // `version` (its bytes on disk), the retained state is complete (online, inventory, status
    // per device), and at most 1 MiB was fetched again per interruption.
    void expect_rollout_complete(const std::string& version, const std::string& content, int interruptions) {
        ASSERT_TRUE(kit::wait_until([&] { return rollout(version).value("state", "") == "completed"; }, 200s, 500ms))
            << rollout(version).dump() << "\n" << logs();
        auto s = rollout(version);
        EXPECT_EQ(s["totals"]["devices"], 3) << s.dump();
        EXPECT_EQ(s["totals"]["succeeded"], 3) << s.dump();
        EXPECT_EQ(s["totals"]["failed"], 0) << s.dump();
        ASSERT_EQ(s["waves"].size(), 2u) << s.dump();
        EXPECT_EQ(s["waves"][0]["succeeded"], 1) << s.dump();
        EXPECT_EQ(s["waves"][1]["succeeded"], 2) << s.dump();
        const std::string model = "model-" + version + ".trt";
        for (const auto& d : kDevices) {
            const auto file = dir / d / "root/var/lib/models" / model;
            EXPECT_TRUE(fs::exists(file) && kit::read_file(file) == content) << d << " has not got " << model;
            // Retained state: eventually complete (an agent republishes after reconnecting).
            EXPECT_TRUE(kit::wait_until([&] { return online(d); }, 30s, 250ms)) << d << " not retained online";
            EXPECT_TRUE(kit::wait_until([&] {
                return retained_json("ota/v1/devices/" + d + "/inventory")["components"].value("detection-model", "") == version;
            }, 30s, 250ms)) << d << ": " << retained_json("ota/v1/devices/" + d + "/inventory").dump();
            auto st = retained_json("ota/v1/devices/" + d + "/status/detection-model");
            EXPECT_EQ(st.value("stage", ""), "succeeded") << d << ": " << st.dump();
            EXPECT_EQ(st.value("version", ""), version) << d << ": " << st.dump();
        }
        int requests = 0;
        std::string lines;
        const auto sent = bytes_sent("/models/" + model, &requests, &lines);
        const std::uint64_t minimum = 3 * content.size();
        EXPECT_GE(sent, minimum);
        const auto again = sent > minimum ? sent - minimum : 0;
        std::cerr << "[nat] " << model << ": " << requests << " requests, " << sent << " bytes sent for 3 x "
                  << content.size() << " (fetched again: " << again << " bytes over " << interruptions
                  << " interruption(s)); status:bytes per request:" << lines << "\n";
        // What the canary went through (the -V output shows it): its warnings and errors.
        std::istringstream canary(agents[0]->log());
        int shown = 0;
        for (std::string l; std::getline(canary, l) && shown < 20;)
            if (l.find(" warn ") != std::string::npos || l.find(" error ") != std::string::npos) {
                std::cerr << "[nat] device-001: " << l.substr(0, 300) << "\n";
                ++shown;
            }
        EXPECT_LE(again, static_cast<std::uint64_t>(std::max(interruptions, 1)) * kMiB)
            << requests << " requests:\n" << server->access_log();
    }
};

}  // namespace nat
