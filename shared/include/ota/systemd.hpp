// The service manager's side of a daemon (sd_notify(3), libsystemd behind this header): READY once
// the daemon does its job, a one-line STATUS, and watchdog pings. Everything is a no-op when the
// process was not started by systemd with Type=notify (no NOTIFY_SOCKET), so the daemons run the
// same by hand, in tests and in containers.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace ota::systemd {

// READY=1 (and STATUS=<status>): the daemon is connected and subscribed.
void ready(std::string_view status);
// STATUS=<status>, sent only when it differs from the last one sent.
void status(std::string_view status);
// STOPPING=1: shutdown began.
void stopping();

// The watchdog interval systemd asked for (WatchdogSec= in the unit), if any.
[[nodiscard]] std::optional<std::chrono::microseconds> watchdog_interval();
// Called by whatever proves the process makes progress (a main loop's turn, a download's
// progress, a step's wait): sends WATCHDOG=1 when a quarter of the interval has passed since the
// last ping; cheap otherwise (one clock read). Thread-safe.
void alive();

// True when stderr is the journal (JOURNAL_STREAM names its device and inode): log lines then
// need no timestamp of their own, the journal has one.
[[nodiscard]] bool stderr_is_journal();

}  // namespace ota::systemd
