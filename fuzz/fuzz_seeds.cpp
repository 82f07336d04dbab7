// Writes the signed seeds of the fuzz corpora (fuzz/corpus/envelope/, the release lines of
// fuzz/corpus/controller_message/), signed with the fuzz test key. Deterministic (Ed25519 signs
// deterministically, times are fixed): re-running it rewrites the same files.
//   fuzz_seeds <fuzz-dir>      (scripts/fuzz --seeds)
//   fuzz_seeds --key-id
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "ota/manifest.hpp"

namespace fs = std::filesystem;

namespace {

ota::Manifest base(std::string component, std::string version, ota::VersionScheme scheme) {
    ota::Manifest m;
    m.component = std::move(component);
    m.version = std::move(version);
    m.version_scheme = scheme;
    m.channel = "stable";
    m.artifact.url = "https://artifacts.example/" + m.component + "/" + m.version;
    m.artifact.size = 52428800;
    m.artifact.sha256 = "8565a714dca840f8652c5bae9249ab05f5fb5a4f9f13fbe23304b10f68252da2";
    m.install.type = ota::InstallType::file;
    m.install.target = "/var/lib/models";
    m.created = *ota::parse_utc("2026-11-22T08:15:06Z");
    return m;
}

std::vector<std::pair<std::string, ota::Manifest>> manifests() {
    using S = ota::VersionScheme;
    std::vector<std::pair<std::string, ota::Manifest>> out;
    {  // the example of docs/protocol.md
        auto m = base("detection-model", "2026-03-10", S::date);
        m.compatibility.platforms = {"linux/arm64"};
        m.compatibility.min_agent_version = "0.1.0";
        m.expires = *ota::parse_utc("2027-02-20T08:15:06Z");
        out.emplace_back("protocol-example", m);
    }
    {
        auto m = base("app", "1.1.0", S::semver);
        m.install = {.type = ota::InstallType::archive, .target = "/opt/app", .service = ""};
        out.emplace_back("archive-semver", m);
    }
    {
        auto m = base("app", "v2.0.0-rc.1+build.5", S::semver);
        m.install = {.type = ota::InstallType::binary, .target = "/usr/local/bin/app", .service = "app.service"};
        m.rollback = true;
        out.emplace_back("binary-prerelease-rollback", m);
    }
    {
        auto m = base("annotations", "arm64_2026-03-01", S::tag);
        m.install = {.type = ota::InstallType::docker_image, .target = "", .service = "annotations"};
        m.compatibility.platforms = {"linux/arm64", "linux/arm/v7"};
        out.emplace_back("docker-tag", m);
    }
    {
        auto m = base("ota-agent", "42", S::integer);
        m.install = {.type = ota::InstallType::self, .target = "", .service = ""};
        out.emplace_back("self-integer", m);
    }
    {
        auto m = base("detection-model", "2026-03-10.2", S::date);
        m.artifact.encryption = ota::Encryption{.alg = "aes-256-gcm", .key_id = "model-2026",
                                                .iv = "AAECAwQFBgcICQoL", .tag = "AAECAwQFBgcICQoLDA0ODw=="};
        out.emplace_back("encrypted", m);
    }
    {
        auto m = base("detection-model", "2026-01-01", S::date);
        m.expires = *ota::parse_utc("2026-06-01T00:00:00Z");  // expired at the fuzzers' fixed now
        out.emplace_back("expired", m);
    }
    {
        auto m = base("app", "1.0.0", S::semver);  // strings JSON must escape, non-ASCII
        m.install.target = "/opt/\xc3\xa9t\xc3\xa9/\"q\"\\tab\t";
        out.emplace_back("escapes", m);
    }
    return out;
}

bool write(const fs::path& p, const std::string& text) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << text;
    return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && std::string(argv[1]) == "--key-id") {
        std::printf("%s\n", ota::fuzz::test_key().public_key().key_id().c_str());
        return 0;
    }
    if (argc != 2) {
        std::fprintf(stderr, "usage: fuzz_seeds <fuzz-dir> | --key-id\n");
        return 2;
    }
    const fs::path dir(argv[1]);
    fs::create_directories(dir / "corpus/envelope");
    fs::create_directories(dir / "corpus/controller_message");
    bool ok = true;
    for (const auto& [name, m] : manifests()) {
        const auto env = ota::make_envelope(m, ota::fuzz::test_key());
        ok = write(dir / "corpus/envelope" / ("signed-" + name + ".json"), env) && ok;
    }
    // controller_message: a release of app 1.1.0 for the fixed config, then devices report.
    {
        auto m = base("app", "1.1.0", ota::VersionScheme::semver);
        const auto env = ota::make_envelope(m, ota::fuzz::test_key());
        auto m2 = base("app", "1.2.0", ota::VersionScheme::semver);
        const auto env2 = ota::make_envelope(m2, ota::fuzz::test_key());
        const std::string inv = "{\"platform\":\"linux/amd64\",\"labels\":{},\"components\":{\"app\":\"1.0.0\"}}";
        auto status = [](int d, int seq, const char* stage) {
            return "s" + std::to_string(d) + " {\"seq\":" + std::to_string(seq) + ",\"stage\":\"" + stage +
                   "\",\"rollout\":\"plant-a.app.1.1.0\",\"version\":\"1.1.0\"}\n";
        };
        std::string rollout = "i0 " + inv + "\ni1 " + inv + "\ni2 " + inv + "\ni3 " + inv + "\nr0 " + env + "\n";
        rollout += "o0 {\"online\":true,\"agent_version\":\"0.1.0\"}\n";
        rollout += status(0, 1, "downloading") + status(0, 2, "succeeded") + "t0 61\n";
        rollout += status(1, 1, "failed") + status(2, 1, "succeeded") + status(3, 5, "rolled_back") + status(3, 4, "succeeded");
        rollout += "t0 3600\nL0\n" + status(4, 1, "succeeded") + "t0 86400\nL0\n";
        rollout += "x0 ota/v1/devices/device-5/status/app/extra {\"seq\":1}\n";
        {
            auto model = base("model", "2026-03-10", ota::VersionScheme::date);
            rollout += "i7 {\"platform\":\"linux/arm64\",\"labels\":{\"ring\":\"early\"},\"components\":{\"model\":\"2026-01-01\"}}\n";
            rollout += "R7 " + ota::make_envelope(model, ota::fuzz::test_key()) + "\n";
            rollout += "S7 {\"seq\":1,\"stage\":\"failed\",\"rollout\":\"plant-b.model.2026-03-10\",\"error\":{\"code\":\"hash_mismatch\",\"message\":\"x\"}}\n";
            rollout += "t7 600\nL7\n";
        }
        ok = write(dir / "corpus/controller_message/rollout-and-status.txt", rollout) && ok;
        std::string control = "i0 " + inv + "\nr0 " + env + "\n";
        control += "c0 {\"id\":\"1\",\"reply_to\":\"ota/v1/control/reply/x\",\"actor\":\"alice\",\"cmd\":\"pause\",\"rollout\":\"plant-a.app.1.1.0\"}\n";
        control += "c1 {\"id\":\"1b\",\"reply_to\":\"ota/v1/control/reply/x\",\"actor\":\"mallory\",\"cmd\":\"audit\",\"limit\":5}\n";
        control += "c  {\"id\":\"1c\",\"reply_to\":\"ota/v1/control/reply/x\",\"cmd\":\"rollouts\"}\n";  // actor "op- ": not a valid segment
        control += "x0 ota/v1/control/request {\"id\":\"1d\",\"reply_to\":\"ota/v1/control/reply/x\",\"cmd\":\"rollouts\"}\n";  // the old topic
        control += "x0 ota/v1/control/request/a/b {\"id\":\"1e\",\"reply_to\":\"ota/v1/control/reply/x\",\"cmd\":\"rollouts\"}\n";
        control += "c0 {\"id\":\"2\",\"reply_to\":\"ota/v1/control/reply/x\",\"actor\":\"alice\",\"cmd\":\"resume\",\"rollout\":\"plant-a.app.1.1.0\"}\n";
        control += "c0 {\"id\":\"3\",\"reply_to\":\"ota/v1/control/reply/x\",\"cmd\":\"approve\",\"rollout\":\"plant-a.app.1.1.0\"}\n";
        control += "c0 {\"id\":\"4\",\"cmd\":\"update\",\"device\":\"device-0\",\"component\":\"app\"}\n";
        control += "c0 {\"id\":\"5\",\"reply_to\":\"ota/v1/control/reply/x\",\"cmd\":\"devices\",\"outdated\":true}\n";
        control += "c0 {\"id\":\"6\",\"reply_to\":\"ota/v1/control/reply/x\",\"cmd\":\"audit\",\"limit\":5}\n";
        control += "r0 " + env2 + "\n";  // supersedes
        control += "c0 {\"id\":\"7\",\"reply_to\":\"ota/v1/control/reply/x\",\"cmd\":\"abort\",\"rollout\":\"plant-a.app.1.2.0\"}\n";
        control += "c0 {\"id\":\"8\",\"reply_to\":\"ota/v1/control/reply/x\",\"cmd\":\"rollouts\"}\n";
        control += "c0 {\"id\":\"9\",\"reply_to\":\"ota/v1/control/reply/x\",\"cmd\":\"retry\",\"rollout\":\"plant-a.app.1.2.0\"}\n";
        ok = write(dir / "corpus/controller_message/control.txt", control) && ok;
        // the fleet policy commands: windows, strategy, approval, reset, around restarts
        const std::string rt = "\"reply_to\":\"ota/v1/control/reply/x\",\"actor\":\"alice\",";
        std::string policy = "i0 " + inv + "\nr0 " + env + "\n";
        for (const char* req : {
                 R"("cmd":"policy","fleet":"plant-a"})", R"("cmd":"policy"})",
                 R"("cmd":"window_set","fleet":"plant-a","wave":"early","window":{"days":["sat","sun"],"start":"22:00","end":"04:00"}})",
                 R"("cmd":"window_set","fleet":"plant-a","wave":"early","window":{"start":"25:00","end":"04:00"}})",
                 R"("cmd":"window_set","fleet":"plant-a","wave":"nope","window":{"start":"01:00","end":"02:00"}})",
                 R"("cmd":"window_delete","fleet":"plant-b","wave":"broad"})",
                 R"("cmd":"window_delete","fleet":"plant-b","wave":"broad"})",
                 R"("cmd":"strategy_set","fleet":"plant-a","strategy":"all_at_once","approval":["all"]})",
                 R"("cmd":"strategy_set","fleet":"plant-b","strategy":"staggered","approval":["early"]})",
                 R"("cmd":"strategy_set","fleet":"plant-a","strategy":"sideways"})"})
            policy += "c0 {" + rt + req + "\n";
        policy += "L0\n" + status(0, 1, "succeeded") + "t0 3600\nr0 " + env2 + "\n";
        policy += "c0 {" + rt + R"("cmd":"approve","rollout":"plant-a.app.1.2.0"})" + "\n";
        policy += "c0 {" + rt + R"("cmd":"policy_reset","fleet":"plant-a"})" + "\nL0\n";
        ok = write(dir / "corpus/controller_message/policy.txt", policy) && ok;
    }
    if (!ok) {
        std::fprintf(stderr, "fuzz_seeds: writing under %s failed\n", dir.c_str());
        return 1;
    }
    return 0;
}
