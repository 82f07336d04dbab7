// The simulator's event loop: every simulated device is one libmosquitto client, and all of them
// are driven from this one thread with epoll (mosquitto_socket + mosquitto_loop_read/_write/
// _misc, mosquitto_want_write for write interest): no thread per client. Connections are paced
// (at most --connect-window in progress, Mosquitto's listen backlog being 100), timed out and
// retried; lost connections come back after a jittered second. Timers (a min-heap) drive the
// devices' status steps; sample downloads run on a worker thread (downloads.hpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "downloads.hpp"
#include "events.hpp"
#include "logic.hpp"
#include "options.hpp"

struct mosquitto;
struct epoll_event;

namespace ota::fleetsim {

class Fleet final : public Io {
public:
    explicit Fleet(const SimOptions& options);
    ~Fleet() override;
    Fleet(const Fleet&) = delete;
    Fleet& operator=(const Fleet&) = delete;

    // Trusted keys, the events file, the file-descriptor limit, epoll, the devices.
    [[nodiscard]] Expected<void> init();
    // Run until `stop`, --duration or --exit-when; then flush and disconnect every device.
    void run(const std::atomic<bool>& stop);
    [[nodiscard]] nlohmann::ordered_json summary() const;

    // Io
    void publish(Device& d, const std::string& topic, const std::string& payload, bool retain) override;
    void subscribe(Device& d, const std::string& filter) override;
    void unsubscribe(Device& d, const std::string& filter) override;
    void schedule(Device& d, std::chrono::milliseconds delay, const std::string& component, std::uint32_t gen) override;
    void start_download(Device& d, const std::string& component, const Job& job) override;
    void event(const Device& d, std::string_view name, const nlohmann::json& fields) override;

    // mosquitto callbacks (public for the C trampolines)
    struct Conn;
    void on_connack(Conn& c, int rc);
    void on_disconnect(Conn& c, int rc);
    void on_message(Conn& c, const char* topic, const void* payload, int len);
    void on_publish(Conn& c, int reason_code);

    enum class State : std::uint8_t { waiting, connecting, connected, backoff, refused };
    struct Conn {
        Fleet* fleet{nullptr};
        std::uint32_t index{0};
        mosquitto* m{nullptr};
        int fd{-1};
        std::uint32_t interest{0};
        State state{State::waiting};
        bool dirty{false};
        bool ever_connected{false};
        bool attempted{false};  // connect_async done once: later attempts reconnect
        std::int64_t started_us{0};
        std::uint32_t unacked{0};
        std::uint64_t flood_sent{0}, flood_acked{0};
    };

private:
    struct Timer {
        std::int64_t at_us;
        std::uint32_t device;
        std::uint32_t gen;
        std::uint16_t component;  // index into options.components; reconnect_timer: reconnect
        bool operator>(const Timer& o) const { return at_us > o.at_us; }
    };
    static constexpr std::uint16_t reconnect_timer = 0xffff;

    [[nodiscard]] Expected<void> make_client(Conn& c);
    [[nodiscard]] mosquitto* new_client(const char* id, void* userdata);
    void restore_reserved();
    void start_connect(Conn& c);
    void retry_later(Conn& c, std::int64_t in_us);
    void mark(Conn& c);
    void sync(Conn& c);
    void sync_dirty();
    void serve(const std::vector<epoll_event>& ready, int n);
    void run_timers(std::int64_t now);
    void sweep(std::int64_t now);  // keepalive, connect timeouts
    void flood_top_up(Conn& c);
    void handle_downloads();
    [[nodiscard]] std::string exit_reason(const std::atomic<bool>& stop, std::int64_t now) const;
    void shutdown();
    void progress_line(std::int64_t now) const;
    [[nodiscard]] std::uint16_t component_index(const std::string& name) const;

    const SimOptions& o_;
    std::unique_ptr<Logic> logic_;
    std::vector<Device> devices_;
    std::vector<Conn> conns_;
    std::vector<std::uint32_t> dirty_;
    std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
    EventLog events_;
    std::unique_ptr<Downloader> downloader_;
    std::filesystem::path temp_download_dir_;
    int epfd_{-1};
    int devnull_{-1};
    int reserved_[2]{-1, -1};
    std::uint64_t pair_fallbacks_{0};

    // counters
    int next_connect_{0};
    int connecting_{0};
    std::uint64_t connected_{0}, ever_connected_{0}, connect_attempts_{0}, connect_failures_{0}, refused_{0},
        disconnects_{0}, published_{0}, acked_{0}, denied_{0}, dropped_{0};
    std::int64_t start_us_{0}, first_connect_us_{0}, all_connected_us_{0}, end_us_{0};
    bool flood_started_{false};
    std::int64_t flood_start_us_{0}, flood_done_us_{0};
    std::uint64_t flood_acked_{0};
    std::uint64_t nofile_limit_{0};
    std::string exit_reason_;
};

}  // namespace ota::fleetsim
