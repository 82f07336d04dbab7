#include "events.hpp"

#include <time.h>

#include <cerrno>
#include <cstring>

namespace ota::fleetsim {
namespace {
std::int64_t clock_us(clockid_t id) {
    timespec ts{};
    ::clock_gettime(id, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}
}  // namespace

std::int64_t mono_us() { return clock_us(CLOCK_MONOTONIC); }
std::int64_t wall_us() { return clock_us(CLOCK_REALTIME); }

EventLog::~EventLog() {
    if (file_) std::fclose(file_);
}

Expected<void> EventLog::open(const std::filesystem::path& path) {
    file_ = std::fopen(path.c_str(), "w");
    if (!file_) return fail(ErrorCode::io_error, "--events " + path.string() + ": " + std::strerror(errno));
    // Events are written from the event loop: a large buffer keeps that to a few syscalls a second.
    std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
    return {};
}

void EventLog::write(std::string_view device, std::string_view event, const nlohmann::json& fields) {
    if (!file_) return;
    nlohmann::ordered_json line{{"mono_us", mono_us()}, {"wall_us", wall_us()}};
    if (!device.empty()) line["device"] = device;
    line["event"] = event;
    for (const auto& [k, v] : fields.items()) line[k] = v;
    const auto text = line.dump();
    std::fwrite(text.data(), 1, text.size(), file_);
    std::fputc('\n', file_);
    ++lines_;
}

void EventLog::flush() {
    if (file_) std::fflush(file_);
}

}  // namespace ota::fleetsim
