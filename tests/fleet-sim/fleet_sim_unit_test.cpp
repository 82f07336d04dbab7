// ota-fleet-sim without sockets: the command line, the password file format, and the devices'
// behaviour (logic.hpp) driven through a recording Io.
#include <gtest/gtest.h>

#include <deque>

#include <nlohmann/json.hpp>

#include "logic.hpp"
#include "options.hpp"
#include "ota/crypto.hpp"
#include "ota/manifest.hpp"
#include "passwords.hpp"

namespace fs = ota::fleetsim;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

fs::Command parse(std::vector<std::string> args) {
    args.insert(args.begin(), "ota-fleet-sim");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    return fs::parse_command_line(static_cast<int>(argv.size()), argv.data());
}

// Records what the logic does; timers run when the test says so.
struct RecordingIo : fs::Io {
    struct Pub {
        std::string topic, payload;
        bool retain;
    };
    std::vector<Pub> published;
    std::vector<std::string> subscribed, unsubscribed, event_names;
    std::deque<std::tuple<fs::Device*, std::string, std::uint32_t>> timers;
    int downloads{0};

    void publish(fs::Device&, const std::string& t, const std::string& p, bool r) override { published.push_back({t, p, r}); }
    void subscribe(fs::Device&, const std::string& f) override { subscribed.push_back(f); }
    void unsubscribe(fs::Device&, const std::string& f) override { unsubscribed.push_back(f); }
    void schedule(fs::Device& d, std::chrono::milliseconds, const std::string& c, std::uint32_t gen) override {
        timers.emplace_back(&d, c, gen);
    }
    void start_download(fs::Device&, const std::string&, const fs::Job&) override { ++downloads; }
    void event(const fs::Device&, std::string_view name, const json&) override { event_names.emplace_back(name); }

    std::vector<json> statuses() const {
        std::vector<json> out;
        for (const auto& p : published)
            if (p.topic.find("/status/") != std::string::npos) out.push_back(json::parse(p.payload));
        return out;
    }
    // "stage" or "stage progress" of each status (of one device, or of all).
    std::vector<std::string> stages(const std::string& device = "") const {
        std::vector<std::string> out;
        for (const auto& s : statuses())
            if (device.empty() || s["device"] == device)
                out.push_back(s["stage"].get<std::string>() + (s.contains("progress") ? " " + std::to_string(s["progress"].get<int>()) : ""));
        return out;
    }
};

class LogicTest : public ::testing::Test {
protected:
    LogicTest() {
        o.secret = "s";
        o.trusted_keys = "/unused";
        o.seq_start = 100;
        o.progress_steps = 2;
    }
    fs::Logic& logic() {
        if (!logic_) {
            ota::crypto::TrustStore trusted;
            trusted.add(key.public_key());
            logic_ = std::make_unique<fs::Logic>(o, std::move(trusted), io);
        }
        return *logic_;
    }
    fs::Device& device(int index = 0) {
        devices.push_back(std::make_unique<fs::Device>(logic().make_device(index)));
        auto& d = *devices.back();
        logic().on_connected(d);
        logic().on_message(d, "ota/v1/devices/" + d.id + "/assignment", R"({"fleet":"plant","wave":"canary"})");
        return d;
    }
    std::string release(const std::string& version, const ota::crypto::PrivateKey& signer) const {
        ota::Manifest m;
        m.component = "app";
        m.version = version;
        m.channel = "stable";
        m.artifact = {"https://127.0.0.1:1/app", 10, std::string(64, 'b'), {}};
        m.install.target = "/var/lib/app";
        m.created = ota::now_utc();
        return ota::make_envelope(m, signer);
    }
    void offer(fs::Device& d, const std::string& version, const std::string& state = "open", const std::string& rollout = "r1") {
        offer_signed(d, version, key, state, rollout);
    }
    void offer_signed(fs::Device& d, const std::string& version, const ota::crypto::PrivateKey& signer, const std::string& state = "open",
                      const std::string& rollout = "r1") {
        const json wave{{"rollout", rollout}, {"state", state}, {"release", json::parse(release(version, signer))}};
        logic().on_message(d, "ota/v1/fleets/plant/waves/canary/app", wave.dump());
    }
    void run_timers() {
        for (int n = 0; n < 100 && !io.timers.empty(); ++n) {
            auto [d, c, gen] = io.timers.front();
            io.timers.pop_front();
            logic().on_timer(*d, c, gen);
        }
    }

    fs::SimOptions o;
    ota::crypto::PrivateKey key = ota::crypto::PrivateKey::generate();
    RecordingIo io;
    std::unique_ptr<fs::Logic> logic_;
    std::vector<std::unique_ptr<fs::Device>> devices;
};

// progress_steps 2: 0 % and 50 %, never 100 % (as the agent); no health check configured
const std::vector<std::string> success{"downloading 0", "downloading 50", "verifying", "installing", "succeeded"};

}  // namespace

TEST(FleetSimOptions, ParsesARunWithItsLists) {
    auto c = parse({"--devices", "10", "--secret", "x", "--trusted-keys", "k.pub", "--component", "app=1.0.0", "--component",
                    "model=", "--label", "site=a", "--fail-devices", "device-00001,device-00002", "--fail-devices",
                    "device-00003", "--exit-when", "version=1.1.0,halted", "--early-label", "ring=first"});
    ASSERT_TRUE(std::holds_alternative<fs::SimOptions>(c)) << std::get<fs::Exit>(c).text;
    const auto& o = std::get<fs::SimOptions>(c);
    EXPECT_EQ(o.devices, 10);
    ASSERT_EQ(o.components.size(), 2u);
    EXPECT_EQ(o.components[1], (std::pair<std::string, std::string>{"model", ""}));
    EXPECT_EQ(o.labels.at("site"), "a");
    EXPECT_EQ(o.fail_devices.size(), 3u);
    EXPECT_EQ(o.exit_when.version, "1.1.0");
    EXPECT_TRUE(o.exit_when.halted);
    EXPECT_FALSE(o.exit_when.connected);
    EXPECT_EQ(o.early_label.second, "first");
    EXPECT_EQ(o.flood_component, "app");
    EXPECT_EQ(o.device_id(0), "device-00001");
}

TEST(FleetSimOptions, RefusesWhatCannotWork) {
    auto code = [](std::vector<std::string> a) {
        auto c = parse(std::move(a));
        return std::holds_alternative<fs::Exit>(c) ? std::get<fs::Exit>(c).code : 0;
    };
    EXPECT_EQ(code({"--trusted-keys", "k"}), 2);                                     // no credentials
    EXPECT_EQ(code({"--secret", "x"}), 2);                                           // no trusted keys
    EXPECT_EQ(code({"--secret", "x", "--trusted-keys", "k", "--id-format", "d-%s"}), 2);
    EXPECT_EQ(code({"--secret", "x", "--trusted-keys", "k", "--id-format", "a/%d"}), 2);  // not a topic segment
    EXPECT_EQ(code({"--secret", "x", "--trusted-keys", "k", "--fail-rate", "1.5"}), 2);
    EXPECT_EQ(code({"--secret", "x", "--trusted-keys", "k", "--exit-when", "soon"}), 2);
    EXPECT_EQ(code({"--secret", "x", "--trusted-keys", "k", "--exit-when", "flood-done"}), 2);
    EXPECT_EQ(code({"--secret", "x", "--trusted-keys", "k", "--component", "app"}), 2);
    EXPECT_EQ(code({"--help"}), 0);
    EXPECT_EQ(code({"make-passwords", "--out", "f"}), 2);  // neither --secret nor --password
    // Flood mode needs no release key.
    EXPECT_TRUE(std::holds_alternative<fs::SimOptions>(parse({"--password", "p", "--flood", "5"})));
    EXPECT_TRUE(std::holds_alternative<fs::PasswordOptions>(parse({"make-passwords", "--out", "f", "--secret", "s"})));
}

TEST(FleetSimOptions, FormatsDeviceIds) {
    EXPECT_EQ(fs::format_id("device-%05d", 42), "device-00042");
    EXPECT_EQ(fs::format_id("device-%03d", 1234), "device-1234");
    EXPECT_EQ(fs::format_id("sim%d-x", 7), "sim7-x");
    EXPECT_TRUE(fs::check_id_format("device-%05d"));
    EXPECT_FALSE(fs::check_id_format("device"));
    EXPECT_FALSE(fs::check_id_format("%d-%d"));
    EXPECT_FALSE(fs::check_id_format("%n"));
}

TEST(FleetSimPasswords, DerivedPasswordsAndMosquittoHashLines) {
    const auto p = fs::derive_password("secret", "device-00001");
    EXPECT_EQ(p.size(), 32u);
    EXPECT_EQ(p, fs::derive_password("secret", "device-00001"));
    EXPECT_NE(p, fs::derive_password("secret", "device-00002"));
    EXPECT_NE(p, fs::derive_password("other", "device-00001"));
    for (auto kind : {fs::PasswordHash::pbkdf2_sha512, fs::PasswordHash::sha512}) {
        const auto line = fs::password_file_line("device-00001", p, kind);
        EXPECT_TRUE(line.starts_with(kind == fs::PasswordHash::sha512 ? "device-00001:$6$" : "device-00001:$7$101$")) << line;
        EXPECT_TRUE(fs::password_line_matches(line, p));
        EXPECT_FALSE(fs::password_line_matches(line, p + "x"));
        EXPECT_NE(line, fs::password_file_line("device-00001", p, kind));  // a fresh salt each time
    }
}

TEST_F(LogicTest, ConnectsLikeTheAgentAndFollowsItsAssignment) {
    auto& d = device();
    ASSERT_GE(io.published.size(), 2u);
    EXPECT_EQ(io.published[0].topic, "ota/v1/devices/device-00001/online");
    EXPECT_TRUE(io.published[0].retain);
    const auto inv = json::parse(io.published[1].payload);
    EXPECT_EQ(inv["components"]["app"], "1.0.0");
    EXPECT_EQ(inv["device"], "device-00001");
    EXPECT_EQ(io.subscribed, (std::vector<std::string>{"ota/v1/devices/device-00001/assignment", "ota/v1/devices/device-00001/cmd",
                                                        "ota/v1/fleets/plant/waves/canary/+"}));
    logic().on_message(d, "ota/v1/devices/device-00001/assignment", R"({"fleet":"plant","wave":"broad"})");
    EXPECT_EQ(io.unsubscribed, std::vector<std::string>{"ota/v1/fleets/plant/waves/canary/+"});
    EXPECT_EQ(io.subscribed.back(), "ota/v1/fleets/plant/waves/broad/+");
}

TEST_F(LogicTest, AnOpenWaveRunsEveryStageWithIncreasingSeqAndANewInventory) {
    auto& d = device();
    offer(d, "1.1.0");
    run_timers();
    EXPECT_EQ(io.stages(), success);
    std::int64_t seq = 100;
    for (const auto& s : io.statuses()) {
        EXPECT_EQ(s["seq"], ++seq);
        EXPECT_EQ(s["rollout"], "r1");
        EXPECT_EQ(s["version"], "1.1.0");
    }
    const auto inv = json::parse(io.published.back().payload);
    EXPECT_EQ(inv["components"]["app"], "1.1.0");
    // The same offer again (a retained re-delivery) and the same version: nothing more.
    const auto n = io.published.size();
    offer(d, "1.1.0");
    offer(d, "1.1.0", "open", "r2");
    EXPECT_EQ(io.published.size(), n);
}

TEST_F(LogicTest, OlderAndUntrustedReleasesAreRejectedOncePerOffer) {
    o.components = {{"app", "2.0.0"}};
    auto& d = device();
    offer(d, "1.5.0");
    offer(d, "1.5.0");
    ASSERT_EQ(io.statuses().size(), 1u);
    EXPECT_EQ(io.statuses()[0]["stage"], "rejected");
    EXPECT_EQ(io.statuses()[0]["error"]["code"], "version_not_newer");
    offer_signed(d, "3.0.0", ota::crypto::PrivateKey::generate());
    ASSERT_EQ(io.statuses().size(), 2u);
    EXPECT_EQ(io.statuses()[1]["error"]["code"], "unknown_key");
    EXPECT_EQ(logic().counters().jobs_started, 0u);
}

TEST_F(LogicTest, FailingSilentAndHaltedDevices) {
    o.fail_devices = {"device-00001"};
    o.silent_devices = {"device-00002"};
    auto& failing = device(0);
    auto& silent = device(1);
    auto& late = device(2);
    offer(failing, "1.1.0");
    offer(silent, "1.1.0");
    offer(late, "1.1.0", "halted");
    run_timers();
    // a failing health check: health_checking is reported, then rolled_back
    EXPECT_EQ(io.stages("device-00001"),
              (std::vector<std::string>{"downloading 0", "downloading 50", "verifying", "installing", "health_checking", "rolled_back"}));
    EXPECT_EQ(io.statuses().back()["error"]["code"], "health_check_failed");
    EXPECT_EQ(io.stages("device-00002"), std::vector<std::string>{"downloading 0"});
    EXPECT_TRUE(io.stages("device-00003").empty());
    EXPECT_EQ(logic().counters().devices_halted, 1u);
    EXPECT_EQ(*failing.components["app"].installed, "1.0.0");
}

TEST_F(LogicTest, ErrorsBeforeTheSwitchReportFailedAndRetryRunsTheOfferAgain) {
    o.fail_devices = {"device-00001"};
    o.fail_code = "hash_mismatch";
    auto& d = device();
    offer(d, "1.1.0");
    run_timers();
    EXPECT_EQ(io.stages(), (std::vector<std::string>{"downloading 0", "downloading 50", "verifying", "failed"}));
    offer(d, "1.1.0");  // handled once: not again by itself
    EXPECT_EQ(io.statuses().size(), 4u);
    logic().on_message(d, "ota/v1/devices/device-00001/cmd", R"({"cmd":"retry","component":"app"})");
    run_timers();
    EXPECT_EQ(io.statuses().size(), 8u);
}

TEST_F(LogicTest, CmdInstallIsCheckedLikeAWaveOffer) {
    auto& d = device();
    const json cmd{{"cmd", "install"}, {"component", "app"}, {"rollout", "r9"}, {"release", json::parse(release("1.2.0", key))}};
    logic().on_message(d, "ota/v1/devices/device-00001/cmd", cmd.dump());
    run_timers();
    EXPECT_EQ(io.stages(), success);
    EXPECT_EQ(io.statuses().back()["rollout"], "r9");
}

TEST_F(LogicTest, VersionRestrictedFailuresAndStableRates) {
    o.fail_versions = {"1.1.0"};  // alone: every device fails 1.1.0, and only 1.1.0
    auto& d = device();
    EXPECT_EQ(logic().outcome(d, "r", "1.1.0"), fs::Outcome::fail);
    EXPECT_EQ(logic().outcome(d, "r", "1.2.0"), fs::Outcome::succeed);
    o.fail_versions.clear();
    o.fail_rate = 0.25;
    int fails = 0;
    for (int i = 0; i < 2000; ++i) {
        auto dev = logic().make_device(i);
        if (logic().outcome(dev, "r", "1.1.0") == fs::Outcome::fail) ++fails;
        EXPECT_EQ(logic().outcome(dev, "r", "1.1.0"), logic().outcome(dev, "r", "1.1.0"));
    }
    EXPECT_NEAR(fails, 500, 80);
}

TEST_F(LogicTest, SampleDevicesDownloadInsteadOfSimulatedProgress) {
    o.download_sample = 1;
    auto& a = device(0);
    auto& b = device(1);
    offer(a, "1.1.0");
    offer(b, "1.1.0");
    EXPECT_EQ(io.downloads, 1);
    logic().on_download_done(a, "app", a.components["app"].job->gen, {});
    run_timers();
    EXPECT_EQ(io.stages("device-00001"), (std::vector<std::string>{"downloading 0", "verifying", "installing", "succeeded"}));
}

TEST_F(LogicTest, FloodStatusesAreValidWithIncreasingSeq) {
    o.flood_component = "app";
    auto& d = device();
    const auto a = json::parse(logic().flood_status(d, 0, 3));
    const auto b = json::parse(logic().flood_status(d, 2, 3));
    EXPECT_EQ(a["seq"], 101);
    EXPECT_EQ(b["seq"], 102);
    EXPECT_EQ(b["progress"], 100);
    EXPECT_EQ(b["rollout"], "flood");
    EXPECT_EQ(b["stage"], "downloading");
}

TEST_F(LogicTest, SeqStartsAtTheMicrosecondClockByDefault) {
    o.seq_start.reset();
    const auto before = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    auto& d = device();
    offer(d, "1.1.0");
    const auto seq = io.statuses().at(0)["seq"].get<std::int64_t>();
    EXPECT_GT(seq, before);
    EXPECT_LT(seq, before + 60'000'000);
}
