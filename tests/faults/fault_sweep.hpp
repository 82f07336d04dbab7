// Helpers of the fault sweeps: the iofault shim's call log (one line per counted call:
// "<index> <op> <ok|fail> <pid> <function> <path>"), which N to fail, and a tally of outcomes.
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace faults {

// The environment that puts the iofault shim (`lib`) in front of a program. In a sanitized build
// (OTA_SANITIZE=address,...) the programs link the ASan runtime, which by default refuses to run
// unless it comes first among the libraries; interposing write/fsync/rename ahead of it is what
// the shim is for (its calls go on to ASan's interceptors, then libc), so that check is off.
inline std::map<std::string, std::string> preload_env(const std::string& lib, std::map<std::string, std::string> env = {}) {
    env["LD_PRELOAD"] = lib;
    env["ASAN_OPTIONS"] = "verify_asan_link_order=0";
    return env;
}

struct Call {
    long index{0};
    std::string op, result, fn, path;
    int pid{0};
    [[nodiscard]] std::string where() const {
        return fn + " " + std::filesystem::path(path).filename().string();
    }
};

inline std::vector<Call> read_calls(const std::filesystem::path& log) {
    std::vector<Call> out;
    std::ifstream in(log);
    for (std::string line; std::getline(in, line);) {
        std::istringstream f(line);
        Call c;
        f >> c.index >> c.op >> c.result >> c.pid >> c.fn;
        std::getline(f >> std::ws, c.path);
        if (f.fail() && c.fn.empty()) continue;
        out.push_back(std::move(c));
    }
    std::sort(out.begin(), out.end(), [](const Call& a, const Call& b) { return a.index < b.index; });
    return out;
}

// True if the log shows call n failing (the fault was injected where the sweep meant it).
inline bool failed_at(const std::vector<Call>& calls, long n) {
    return std::any_of(calls.begin(), calls.end(), [n](const Call& c) { return c.index == n && c.result == "fail"; });
}

// Calls grouped by function and file: "  12 x pwrite agent.db-wal" lines, in order of first use.
inline std::string describe(const std::vector<Call>& calls) {
    std::vector<std::string> order;
    std::map<std::string, std::pair<long, long>> seen;  // where -> (count, first index)
    for (const auto& c : calls) {
        auto w = c.op + " " + c.where();
        auto [it, fresh] = seen.try_emplace(w, 0, c.index);
        if (fresh) order.push_back(w);
        ++it->second.first;
    }
    std::ostringstream o;
    for (const auto& w : order)
        o << "    " << seen[w].first << " x " << w << " (first #" << seen[w].second << ")\n";
    return o.str();
}

// The file a call is on, with a temp file's ".tmp.<pid>" suffix dropped (one name across runs).
inline std::string file_of(const Call& c) {
    auto name = std::filesystem::path(c.path).filename().string();
    if (auto t = name.find(".tmp."); t != std::string::npos) name.erase(t);
    return name;
}

// Which N to fail among `calls` (those the predicate keeps): the first and last call on each
// file, then calls spread evenly over the rest, `limit` in all (or every kept call if fewer).
template <typename Keep>
std::vector<long> sample_calls(const std::vector<Call>& calls, std::size_t limit, Keep keep) {
    std::vector<long> kept;
    std::map<std::string, std::pair<long, long>> ends;  // file -> (first, last)
    for (const auto& c : calls) {
        if (!keep(c)) continue;
        kept.push_back(c.index);
        auto [it, fresh] = ends.try_emplace(file_of(c), c.index, c.index);
        if (!fresh) it->second.second = c.index;
    }
    if (kept.size() <= limit) return kept;
    std::set<long> picks;
    for (const auto& [file, fl] : ends) {
        picks.insert(fl.first);
        picks.insert(fl.second);
    }
    const std::size_t spread = limit > picks.size() ? limit - picks.size() : 0;
    for (std::size_t i = 0; i < spread; ++i) picks.insert(kept[(kept.size() - 1) * (i + 1) / (spread + 1)]);
    return {picks.begin(), picks.end()};
}

// Outcome -> the N that ended so, for the test's output and docs/testing-faults.md.
struct Tally {
    std::map<std::string, std::vector<long>> by_outcome;
    void add(const std::string& outcome, long n) { by_outcome[outcome].push_back(n); }
    [[nodiscard]] std::string describe() const {
        std::ostringstream o;
        bool first = true;
        for (const auto& [outcome, ns] : by_outcome) {
            o << (first ? "" : "; ") << outcome << " x" << ns.size() << " (N=";
            for (std::size_t i = 0; i < ns.size(); ++i) o << (i ? "," : "") << ns[i];
            o << ")";
            first = false;
        }
        return o.str();
    }
};

}  // namespace faults
