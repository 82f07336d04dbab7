#include "keyset_cli.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "ota/files.hpp"
#include "ota/keyset.hpp"
#include "ota/topics.hpp"
#include "publisher.hpp"

namespace ota::publisher {
namespace {

int failed(const Error& e) {
    std::fprintf(stderr, "ota-publish: %s\n", e.describe().c_str());
    return 1;
}

Expected<SignedKeyset> read_keyset(const std::string& file) {
    auto text = read_file(file, 1 << 20);
    if (!text) return std::unexpected(text.error());
    return parse_keyset(*text, file);
}

// Every edit makes a new version, unsigned: what the root signed before no longer covers it.
Expected<void> write_draft(const std::string& file, Keyset k) {
    return write_file_atomic(file, keyset_document(k, {}) + "\n", 0644);
}

Keyset edited(Keyset k) {
    ++k.version;
    k.created = std::max(now_utc(), k.created);
    return k;
}

void print_summary(const Keyset& k, std::size_t signatures) {
    std::printf("keyset version %llu, root %s, %zu key(s)", static_cast<unsigned long long>(k.version),
                k.root.key_id().c_str(), k.keys.size());
    for (const auto& key : k.keys)
        std::printf(" %s%s", key.key.key_id().c_str(), key.expires ? (" (until " + format_utc(*key.expires) + ")").c_str() : "");
    std::printf(", %zu revoked, expires %s, %zu signature(s)\n", k.revoked.size(), format_utc(k.expires).c_str(), signatures);
}

}  // namespace

void add_keyset_commands(CLI::App& app, KeysetCli& k) {
    k.cmd = app.add_subcommand("keyset", "Keep, sign and publish the keyset: the release keys the root key vouches for");
    k.cmd->require_subcommand(1);
    k.create = k.cmd->add_subcommand("create", "Start a keyset file (unsigned) for a root public key");
    k.create->add_option("--out", k.file, "Keyset file to write")->required();
    k.create->add_option("--root-pub", k.root_pub, "The root's public key (PEM)")->required();
    k.create->add_option("--key", k.keys, "A release public key to trust (PEM, repeatable)");
    k.create->add_option("--version", k.version, "First version")->capture_default_str()->check(CLI::PositiveNumber);
    k.create->add_option("--expires-in-days", k.expires_in_days, "Days until the keyset expires")
        ->capture_default_str()->check(CLI::Range(1, 3650));

    k.add = k.cmd->add_subcommand("add", "Trust one more release key (a new, unsigned version)");
    k.add->add_option("file", k.file, "Keyset file")->required();
    k.add->add_option("--pubkey", k.pubkey, "Release public key (PEM)")->required();
    k.add->add_option("--expires", k.expires, "This key's own expiry, e.g. 2027-06-01T00:00:00Z");

    k.revoke = k.cmd->add_subcommand("revoke", "Stop trusting a release key (a new, unsigned version)");
    k.revoke->add_option("file", k.file, "Keyset file")->required();
    k.revoke->add_option("--key-id", k.key_id, "Key id (16 hex characters)")->required();

    k.rotate_root = k.cmd->add_subcommand("rotate-root",
                                          "Hand the root over to a new key (a new, unsigned version: sign it with both roots)");
    k.rotate_root->add_option("file", k.file, "Keyset file")->required();
    k.rotate_root->add_option("--new-root-pub", k.root_pub, "The new root's public key (PEM)")->required();

    k.renew = k.cmd->add_subcommand("renew", "Extend the expiry (a new, unsigned version)");
    k.renew->add_option("file", k.file, "Keyset file")->required();
    k.renew->add_option("--expires-in-days", k.expires_in_days, "Days from now")->capture_default_str()->check(CLI::Range(1, 3650));

    k.sign = k.cmd->add_subcommand("sign", "Sign the keyset with the root key (both roots when it rotates the root)");
    k.sign->add_option("file", k.file, "Keyset file")->required();
    k.sign->add_option("--root-key", k.root_keys, "Root private key (PEM, repeatable)")->required();

    k.verify = k.cmd->add_subcommand("verify", "Check a keyset file against a trusted root public key");
    k.verify->add_option("file", k.file, "Keyset file")->required();
    k.verify->add_option("--root-pub", k.root_pub, "The root public key devices hold")->required();

    k.show = k.cmd->add_subcommand("show", "Print what a keyset file holds");
    k.show->add_option("file", k.file, "Keyset file")->required();

    k.publish = k.cmd->add_subcommand("publish", "Publish a signed keyset retained to <prefix>/keyset");
    k.publish->add_option("file", k.file, "Keyset file")->required();
    k.publish->add_option("--broker", k.mq.broker, "Broker URL, mqtts://host:port")->envname("OTA_BROKER")->required();
    k.publish->add_option("--cafile", k.mq.cafile, "CA certificate of the broker")->envname("OTA_CAFILE");
    k.publish->add_option("--cert", k.mq.certfile, "CI's client certificate")->envname("OTA_CERT");
    k.publish->add_option("--key", k.mq.keyfile, "CI's TLS private key")->envname("OTA_KEY");
    k.publish->add_option("--topic-prefix", k.prefix, "Topic prefix")->envname("OTA_TOPIC_PREFIX");
    k.publish->add_option("--timeout", k.timeout_s, "Seconds to wait for the broker")->check(CLI::Range(1, 600));
}

int run_keyset(KeysetCli& k) {
    if (*k.create) {
        auto root = crypto::PublicKey::load(k.root_pub);
        if (!root) return failed(root.error());
        Keyset ks;
        ks.version = k.version;
        ks.created = now_utc();
        ks.expires = ks.created + std::chrono::days(k.expires_in_days);
        ks.root = *root;
        for (const auto& f : k.keys) {
            auto key = crypto::PublicKey::load(f);
            if (!key) return failed(key.error());
            if (ks.find(key->key_id())) return failed({ErrorCode::keyset_invalid, f + ": key " + key->key_id() + " given twice"});
            ks.keys.push_back({*key, std::nullopt});
        }
        if (auto w = write_draft(k.file, ks); !w) return failed(w.error());
        print_summary(ks, 0);
        return 0;
    }
    auto doc = read_keyset(k.file);
    if (!doc) return failed(doc.error());
    auto& ks = doc->keyset;

    if (*k.add || *k.revoke || *k.rotate_root || *k.renew) {
        auto next = edited(ks);
        if (*k.add) {
            auto key = crypto::PublicKey::load(k.pubkey);
            if (!key) return failed(key.error());
            if (next.find(key->key_id())) return failed({ErrorCode::keyset_invalid, "key " + key->key_id() + " is already trusted"});
            std::optional<Timestamp> until;
            if (!k.expires.empty()) {
                auto t = parse_utc(k.expires);
                if (!t) return failed(t.error().with_context("--expires"));
                until = *t;
            }
            std::erase(next.revoked, key->key_id());
            next.keys.push_back({*key, until});
        } else if (*k.revoke) {
            const auto before = next.keys.size();
            std::erase_if(next.keys, [&](const KeysetKey& e) { return e.key.key_id() == k.key_id; });
            if (next.keys.size() == before) return failed({ErrorCode::not_found, k.file + ": no trusted key " + k.key_id});
            next.revoked.push_back(k.key_id);
        } else if (*k.rotate_root) {
            auto root = crypto::PublicKey::load(k.root_pub);
            if (!root) return failed(root.error());
            next.root = *root;
        } else {
            next.expires = now_utc() + std::chrono::days(k.expires_in_days);
        }
        if (next.expires <= next.created) return failed({ErrorCode::keyset_invalid, k.file + ": expired; use renew"});
        if (auto w = write_draft(k.file, next); !w) return failed(w.error());
        print_summary(next, 0);
        std::printf("unsigned: sign it with `ota-publish keyset sign %s --root-key ROOT.key`%s\n", k.file.c_str(),
                    *k.rotate_root ? " with the old and the new root key" : "");
        return 0;
    }
    if (*k.sign) {
        std::vector<crypto::PrivateKey> keys;
        for (const auto& f : k.root_keys) {
            auto key = crypto::PrivateKey::load(f);
            if (!key) return failed(key.error());
            keys.push_back(std::move(*key));
        }
        std::vector<const crypto::PrivateKey*> signers;
        bool by_root = false;
        for (const auto& key : keys) {
            signers.push_back(&key);
            by_root = by_root || key.public_key().key_id() == ks.root.key_id();
        }
        if (!by_root)
            return failed({ErrorCode::unknown_key, k.file + ": none of the keys given is the keyset's root " + ks.root.key_id()});
        if (auto w = write_file_atomic(k.file, keyset_document(ks, signers) + "\n", 0644); !w) return failed(w.error());
        print_summary(ks, signers.size());
        return 0;
    }
    if (*k.show) {
        print_summary(ks, doc->signatures.size());
        return 0;
    }
    if (*k.verify) {
        auto root = crypto::PublicKey::load(k.root_pub);
        if (!root) return failed(root.error());
        if (auto ok = verify_keyset(*doc, *root, k.file); !ok) return failed(ok.error());
        if (now_utc() >= ks.expires)
            return failed({ErrorCode::keyset_expired, k.file + ": expired at " + format_utc(ks.expires)});
        std::printf("OK: ");
        print_summary(ks, doc->signatures.size());
        return 0;
    }
    // publish: only what a device would accept from its own root
    if (auto ok = verify_keyset(*doc, ks.root, k.file); !ok) return failed(ok.error());
    if (now_utc() >= ks.expires) return failed({ErrorCode::keyset_expired, k.file + ": expired at " + format_utc(ks.expires)});
    k.mq.connect_timeout = std::chrono::seconds(k.timeout_s);
    if (k.mq.client_id.empty()) k.mq.client_id = "ota-publish-keyset-" + std::to_string(::getpid());
    const auto topic = Topics(k.prefix.empty() ? std::string(Topics::default_prefix) : k.prefix).keyset();
    if (auto p = publish_retained(k.mq, topic, doc->text); !p) return failed(p.error());
    std::printf("published to %s: ", topic.c_str());
    print_summary(ks, doc->signatures.size());
    return 0;
}

}  // namespace ota::publisher
