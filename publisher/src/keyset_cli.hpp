// `ota-publish keyset ...`: keep the keyset (the root-signed list of trusted release keys,
// shared/include/ota/keyset.hpp) in a file, sign it with the offline root key, publish it.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "ota/mqtt.hpp"

namespace ota::publisher {

struct KeysetCli {
    CLI::App* cmd{nullptr};
    CLI::App *create{nullptr}, *add{nullptr}, *revoke{nullptr}, *rotate_root{nullptr}, *renew{nullptr},
        *sign{nullptr}, *verify{nullptr}, *publish{nullptr}, *show{nullptr};
    std::string file, root_pub, pubkey, key_id, expires, prefix;
    std::vector<std::string> root_keys, keys;
    std::uint64_t version{1};
    int expires_in_days{365};
    int timeout_s{10};
    mqtt::Options mq;
};

// Register the subcommands on `app`.
void add_keyset_commands(CLI::App& app, KeysetCli& k);
// Run the chosen one: 0 done, 1 failed (one line on stderr).
int run_keyset(KeysetCli& k);

}  // namespace ota::publisher
