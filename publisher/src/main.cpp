// ota-publish: sign a release manifest and publish it retained (docs/protocol.md, "Releases").
//   ota-publish publish ...   hash the artifact (encrypted first with --encrypt-key), sign, publish to
//                             <prefix>/releases/<component>/<channel>
//   ota-publish keygen ...    make an Ed25519 signing key pair
//   ota-publish verify ...    check an envelope against trusted public keys
//   ota-publish keyset ...    keep, sign (root key) and publish the keyset of trusted release keys
// Exit status: 0 done, 1 failed (one line on stderr says why), 2 usage error.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <iterator>

#include "ota/build_info.hpp"
#include "ota/files.hpp"
#include "ota/topics.hpp"
#include "keyset_cli.hpp"
#include "publisher.hpp"

namespace {

int failed(const ota::Error& e) {
    std::fprintf(stderr, "ota-publish: %s\n", e.describe().c_str());
    return 1;
}

std::string default_client_id() {
    char host[64] = {};
    ::gethostname(host, sizeof host - 1);
    return "ota-publish-" + std::string(host) + "-" + std::to_string(::getpid());
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ota-publish: sign a release manifest and publish it to the OTA broker"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("ota-publish ") + ota::build::version + " (commit " +
                                          ota::build::git_commit + ", built " + ota::build::date + ")");

    // publish
    ota::publisher::ReleaseRequest rq;
    ota::mqtt::Options mq;
    mq.client_id = default_client_id();
    std::string signing_key, prefix{ota::Topics::default_prefix}, copy_to, encrypt_key, encrypt_key_id;
    bool dry_run = false;
    int timeout_s = 10;
    auto* pub = app.add_subcommand("publish", "Hash an artifact, sign its manifest and publish it retained");
    pub->add_option("--broker", mq.broker, "Broker URL, mqtts://host:port")->envname("OTA_BROKER");
    pub->add_option("--cafile", mq.cafile, "CA certificate of the broker")->envname("OTA_CAFILE");
    pub->add_option("--cert", mq.certfile, "CI's client certificate")->envname("OTA_CERT");
    pub->add_option("--key", mq.keyfile, "CI's TLS private key")->envname("OTA_KEY");
    pub->add_option("--client-id", mq.client_id, "MQTT client id");
    pub->add_option("--topic-prefix", prefix, "Topic prefix")->envname("OTA_TOPIC_PREFIX");
    pub->add_option("--timeout", timeout_s, "Seconds to wait for the broker")->check(CLI::Range(1, 600));
    pub->add_option("--signing-key", signing_key, "Ed25519 private key (PEM) that signs the manifest")
        ->required()->envname("OTA_SIGNING_KEY");
    pub->add_option("--component", rq.component, "Component name, e.g. detection-model")->required();
    pub->add_option("--version", rq.version, "Version, e.g. 2026-03-10, 1.4.2, arm64_2026-03-01, 42")->required();
    pub->add_option("--version-scheme", rq.version_scheme, "semver|date|tag|integer (default: detected)");
    pub->add_option("--channel", rq.channel, "Release channel")->capture_default_str();
    pub->add_option("--artifact", rq.artifact, "The artifact file to hash")->required();
    pub->add_option("--url", rq.url, "https:// URL devices download the artifact from")->required();
    pub->add_option("--install", rq.install_type, "file|archive|docker-image|binary|self")->capture_default_str();
    pub->add_option("--target", rq.target, "Install target (directory for file/archive, path for binary)");
    pub->add_option("--service", rq.service, "Compose service (docker-image) or service to restart");
    pub->add_option("--platform", rq.platforms, "Compatible platform, e.g. linux/arm64 (repeatable)");
    pub->add_option("--min-agent-version", rq.min_agent_version, "Oldest agent version that may install it");
    pub->add_option("--expires-in-days", rq.expires_in_days, "Days until the manifest expires (0: never)")
        ->capture_default_str();
    pub->add_flag("--rollback", rq.rollback, "Signed rollback: may be installed over a newer version");
    auto* copy_opt = pub->add_option("--copy-to", copy_to, "Also copy the artifact under DIR at the URL's path");
    auto* key_opt = pub->add_option("--encrypt-key", encrypt_key,
                                    "Encrypt the artifact (AES-256-GCM) with this key file (32 raw bytes or 64 hex "
                                    "characters); the ciphertext goes to --copy-to and the manifest describes it");
    auto* key_id_opt = pub->add_option("--encrypt-key-id", encrypt_key_id,
                                       "The key's id on the devices (<decrypt_keys_dir>/<id>.key), put in the manifest");
    key_opt->needs(key_id_opt)->needs(copy_opt);
    key_id_opt->needs(key_opt);
    pub->add_flag("--dry-run", dry_run, "Print the signed envelope instead of publishing it (--copy-to still copies)");

    // keygen
    std::string out_prefix;
    bool force = false;
    auto* keygen = app.add_subcommand("keygen", "Make an Ed25519 signing key pair: PREFIX.key and PREFIX.pub");
    keygen->add_option("--out", out_prefix, "Path prefix of the key files")->required();
    keygen->add_flag("--force", force, "Overwrite existing files");

    // verify
    std::vector<std::string> pubkeys;
    std::string envelope_file;
    auto* verify = app.add_subcommand("verify", "Check a signed envelope (a file or - for stdin)");
    verify->add_option("--pubkey", pubkeys, "Trusted public key file or directory (repeatable)")->required();
    verify->add_option("envelope", envelope_file, "Envelope file, or - for standard input")->required();

    // keyset
    ota::publisher::KeysetCli keyset;
    ota::publisher::add_keyset_commands(app, keyset);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }

    if (*keyset.cmd) return ota::publisher::run_keyset(keyset);

    if (*keygen) {
        const std::string key_path = out_prefix + ".key", pub_path = out_prefix + ".pub";
        if (!force && (access(key_path.c_str(), F_OK) == 0 || access(pub_path.c_str(), F_OK) == 0))
            return failed({ota::ErrorCode::io_error, key_path + " or " + pub_path + " exists; use --force to replace"});
        const auto key = ota::crypto::PrivateKey::generate();
        if (auto w = ota::write_file_atomic(key_path, key.to_pem(), 0600); !w) return failed(w.error());
        if (auto w = ota::write_file_atomic(pub_path, key.public_key().to_pem(), 0644); !w) return failed(w.error());
        std::printf("wrote %s and %s (key id %s)\n", key_path.c_str(), pub_path.c_str(), key.public_key().key_id().c_str());
        return 0;
    }

    if (*verify) {
        ota::crypto::TrustStore trusted;
        for (const auto& p : pubkeys)
            if (auto ok = trusted.load(p); !ok) return failed(ok.error());
        std::string text;
        if (envelope_file == "-") {
            text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
        } else {
            auto read = ota::read_file(envelope_file, 1 << 20);
            if (!read) return failed(read.error());
            text = std::move(*read);
        }
        const auto name = envelope_file == "-" ? std::string("stdin") : envelope_file;
        auto release = ota::open_envelope(text, trusted, ota::now_utc(), name);
        if (!release) return failed(release.error());
        const auto& m = release->manifest;
        std::printf("OK: %s %s (%s) signed by key %s, %llu bytes, sha256 %s%s\n", m.component.c_str(), m.version.c_str(),
                    m.channel.c_str(), m.key_id.c_str(), static_cast<unsigned long long>(m.artifact.size),
                    m.artifact.sha256.c_str(), m.expires ? (", expires " + ota::format_utc(*m.expires)).c_str() : "");
        return 0;
    }

    // publish: everything that can fail locally is checked before connecting.
    auto key = ota::crypto::PrivateKey::load(signing_key);
    if (!key) return failed(key.error());
    if (!dry_run && mq.broker.empty())
        return failed({ota::ErrorCode::config_invalid, "--broker is required unless --dry-run"});
    if (!encrypt_key.empty()) {
        auto k = ota::publisher::load_encryption_key(encrypt_key, encrypt_key_id);
        if (!k) return failed(k.error());
        rq.encrypt = std::move(*k);
    }
    // The artifact (or its ciphertext) is in place before any device can learn of the release
    // (also with --dry-run, which only leaves out the publish).
    auto manifest = ota::publisher::prepare_release(rq, copy_to, ota::now_utc());
    if (!manifest) return failed(manifest.error());
    const auto envelope = ota::make_envelope(*manifest, *key);
    if (dry_run) {
        std::printf("%s\n", nlohmann::ordered_json::parse(envelope).dump(2).c_str());
        return 0;
    }
    mq.connect_timeout = std::chrono::seconds(timeout_s);
    const auto topic = ota::Topics(prefix).release(rq.component, rq.channel);
    if (auto p = ota::publisher::publish_retained(mq, topic, envelope); !p) return failed(p.error());
    const auto& enc = manifest->artifact.encryption;
    std::printf("published %s %s (%s) to %s: %llu bytes, sha256 %s, key %s%s\n", rq.component.c_str(), rq.version.c_str(),
                rq.channel.c_str(), topic.c_str(), static_cast<unsigned long long>(manifest->artifact.size),
                manifest->artifact.sha256.c_str(), key->public_key().key_id().c_str(),
                enc ? (", encrypted for device key " + enc->key_id).c_str() : "");
    return 0;
}
