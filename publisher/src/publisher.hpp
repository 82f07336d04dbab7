// The publisher's logic, separate from its command line so tests can drive it.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ota/crypto.hpp"
#include "ota/manifest.hpp"
#include "ota/mqtt.hpp"

namespace ota::publisher {

// --encrypt-key / --encrypt-key-id: the AES-256-GCM key (32 bytes) and the name devices keep it
// under (<decrypt_keys_dir>/<key_id>.key, docs/agent.md).
struct EncryptionKey {
    std::string key;
    std::string key_id;
};

struct ReleaseRequest {
    std::string component;
    std::string version;
    std::string version_scheme;  // empty = detect from the version text
    std::string channel{"stable"};
    std::filesystem::path artifact;
    std::string url;
    std::string install_type{"file"};
    std::string target;
    std::string service;
    std::vector<std::string> platforms;
    std::string min_agent_version;
    int expires_in_days{90};  // 0 = never expires
    bool rollback{false};
    std::optional<EncryptionKey> encrypt;  // set: devices get the artifact encrypted (prepare_release)
};

// Read --encrypt-key (32 raw bytes or 64 hex characters, the format of the devices' key files)
// and check --encrypt-key-id (1-64 of A-Z a-z 0-9 . _ -, not starting with '.').
[[nodiscard]] Expected<EncryptionKey> load_encryption_key(const std::filesystem::path& file, const std::string& key_id);

// Hash the artifact and build the manifest (not yet signed). Every check that can fail without
// a broker happens here, so a bad request publishes nothing.
[[nodiscard]] Expected<Manifest> build_manifest(const ReleaseRequest& request, Timestamp now);

// What `publish` does before signing: build the manifest and put what devices download under
// `copy_to` (empty: nowhere) at the URL's path. Without `rq.encrypt` that is a copy of the
// artifact. With it, the artifact is encrypted (AES-256-GCM, fresh IV) and the ciphertext is
// what is placed, hashed and sized; the manifest carries artifact.encryption {alg, key_id, iv,
// tag}. Encryption needs `copy_to` (the ciphertext exists nowhere else). On failure nothing is
// placed.
[[nodiscard]] Expected<Manifest> prepare_release(const ReleaseRequest& request, const std::filesystem::path& copy_to,
                                                 Timestamp now);

// Where --copy-to places the artifact: DIR + the URL's path ("https://h/models/m.trt" ->
// DIR/models/m.trt). Refuses paths with "..".
[[nodiscard]] Expected<std::filesystem::path> copy_destination(const std::filesystem::path& dir, const std::string& url);

// Connect, publish the envelope retained with QoS 1, wait for the acknowledgement, disconnect.
// For the command line: the MQTT client's network threads are left to the process's exit
// (mqtt::Client::leave_network_threads_to_exit), so call it in a process that then ends.
[[nodiscard]] Expected<void> publish_retained(const mqtt::Options& options, const std::string& topic,
                                              const std::string& payload);

}  // namespace ota::publisher
