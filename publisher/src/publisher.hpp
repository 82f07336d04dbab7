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
};

// Hash the artifact and build the manifest (not yet signed). Every check that can fail without
// a broker happens here, so a bad request publishes nothing.
[[nodiscard]] Expected<Manifest> build_manifest(const ReleaseRequest& request, Timestamp now);

// Where --copy-to places the artifact: DIR + the URL's path ("https://h/models/m.trt" ->
// DIR/models/m.trt). Refuses paths with "..".
[[nodiscard]] Expected<std::filesystem::path> copy_destination(const std::filesystem::path& dir, const std::string& url);

// Connect, publish the envelope retained with QoS 1, wait for the acknowledgement, disconnect.
[[nodiscard]] Expected<void> publish_retained(const mqtt::Options& options, const std::string& topic,
                                              const std::string& payload);

}  // namespace ota::publisher
