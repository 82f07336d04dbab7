#include "store.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <cerrno>
#include <mutex>
#include <system_error>

#include "ota/download_headers.hpp"
#include "ota/json.hpp"
#include "ota/time.hpp"

namespace ota::agent {
namespace {

// Numbered migrations: migration N brings user_version from N-1 to N. Never edit one that has
// shipped; add the next.
const char* const migrations[] = {
    // 1
    "CREATE TABLE journal (component TEXT PRIMARY KEY, entry TEXT NOT NULL);"
    "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload TEXT NOT NULL,"
    "                     retain INTEGER NOT NULL);"
    "CREATE TABLE applied (component TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL,"
    "                      result TEXT NOT NULL, ts TEXT NOT NULL, PRIMARY KEY (component, version, sha256));"
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
};

void insert_outbox(SQLite::Database& db, const std::string& topic, const std::string& payload, bool retain) {
    SQLite::Statement q(db, "INSERT INTO outbox (topic, payload, retain) VALUES (?, ?, ?)");
    q.bind(1, topic);
    q.bind(2, payload);
    q.bind(3, retain ? 1 : 0);
    q.exec();
}

void insert_applied(SQLite::Database& db, const std::string& component, const std::string& version,
                    const std::string& sha256, const std::string& result) {
    SQLite::Statement q(db, "INSERT OR REPLACE INTO applied (component, version, sha256, result, ts) "
                            "VALUES (?, ?, ?, ?, ?)");
    q.bind(1, component);
    q.bind(2, version);
    q.bind(3, sha256);
    q.bind(4, result);
    q.bind(5, format_utc(now_utc()));
    q.exec();
}

void upsert_kv(SQLite::Database& db, const std::string& key, const std::string& value) {
    SQLite::Statement q(db, "INSERT INTO kv (key, value) VALUES (?, ?) "
                            "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    q.bind(1, key);
    q.bind(2, value);
    q.exec();
}

// SQLite names a full disk SQLITE_FULL only where it knows; ENOSPC on a write or fsync of its
// -shm, -wal or -journal files comes as SQLITE_IOERR_* ("disk I/O error"). The errno of the
// failed call tells: sqlite3_system_errno() where SQLite kept it, else `caught_errno`, errno as
// the exception was caught (SQLite keeps none for a failed fsync; nothing between its failing
// call and the catch sets errno). The message gets the extended code and the system error:
// "<context>: disk I/O error (SQLite 1034, No space left on device)".
Error storage_error(const SQLite::Exception& e, SQLite::Database* db, int caught_errno, const std::string& context) {
    if (e.getErrorCode() == SQLITE_FULL) return {ErrorCode::disk_full, context + ": " + e.what()};
    if (e.getErrorCode() != SQLITE_IOERR) return {ErrorCode::io_error, context + ": " + e.what()};
    int err = db ? sqlite3_system_errno(db->getHandle()) : 0;
    if (err == 0) err = caught_errno;
    std::string m = context + ": " + e.what() + " (SQLite " + std::to_string(e.getExtendedErrorCode());
    if (err != 0) m += ", " + std::generic_category().message(err);
    return {err == ENOSPC || err == EDQUOT ? ErrorCode::disk_full : ErrorCode::io_error, m + ")"};
}

}  // namespace

struct Store::Impl {
    std::filesystem::path file;
    SQLite::Database db;
    std::mutex mu;
    // Status sequence numbers (next_seq): the next one to hand out and the highest reserved on
    // disk; both 0 until the first call reads the reservation.
    std::mutex seq_mu;
    std::uint64_t seq_next{0}, seq_reserved{0};
    explicit Impl(const std::filesystem::path& f)
        : file(f), db(f.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_FULLMUTEX) {}

    template <typename F>
    auto guarded(const char* what, F&& f) -> Expected<decltype(f())> {
        std::lock_guard lock(mu);
        try {
            if constexpr (std::is_void_v<decltype(f())>) {
                f();
                return {};
            } else {
                return f();
            }
        } catch (const SQLite::Exception& e) {
            const int caught = errno;
            auto err = storage_error(e, &db, caught, "agent state " + file.string() + ": " + what);
            return fail(err.code, std::move(err.message));
        }
    }
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

Expected<std::unique_ptr<Store>> Store::open(const std::filesystem::path& file) {
    std::unique_ptr<Impl> impl;
    try {
        std::error_code ec;
        std::filesystem::create_directories(file.parent_path(), ec);
        impl = std::make_unique<Impl>(file);
        impl->db.exec("PRAGMA journal_mode=WAL");
        impl->db.exec("PRAGMA synchronous=FULL");
        impl->db.exec("PRAGMA busy_timeout=5000");
        const int have = impl->db.execAndGet("PRAGMA user_version").getInt();
        const int want = static_cast<int>(std::size(migrations));
        if (have > want)
            return fail(ErrorCode::io_error, "agent state " + file.string() + ": schema version " + std::to_string(have) +
                                                 " is newer than this agent knows (" + std::to_string(want) + ")");
        for (int v = have; v < want; ++v) {
            SQLite::Transaction tx(impl->db);
            impl->db.exec(migrations[v]);
            impl->db.exec("PRAGMA user_version=" + std::to_string(v + 1));
            tx.commit();
        }
        return std::unique_ptr<Store>(new Store(std::move(impl)));
    } catch (const SQLite::Exception& e) {
        const int caught = errno;
        auto err = storage_error(e, impl ? &impl->db : nullptr, caught, "agent state " + file.string());
        return fail(err.code, std::move(err.message));
    }
}

Expected<std::optional<nlohmann::json>> Store::journal(const std::string& component) {
    return impl_->guarded("reading the journal", [&]() -> std::optional<nlohmann::json> {
        SQLite::Statement q(impl_->db, "SELECT entry FROM journal WHERE component = ?");
        q.bind(1, component);
        if (!q.executeStep()) return std::nullopt;
        auto j = nlohmann::json::parse(q.getColumn(0).getString(), nullptr, false);
        if (j.is_discarded()) return std::nullopt;
        return j;
    });
}

Expected<std::vector<std::string>> Store::journal_components() {
    return impl_->guarded("listing the journal", [&] {
        std::vector<std::string> out;
        SQLite::Statement q(impl_->db, "SELECT component FROM journal ORDER BY component");
        while (q.executeStep()) out.push_back(q.getColumn(0).getString());
        return out;
    });
}

Expected<void> Store::put_journal(const std::string& component, const nlohmann::json& entry) {
    return impl_->guarded("writing the journal", [&] {
        SQLite::Statement q(impl_->db, "INSERT INTO journal (component, entry) VALUES (?, ?) "
                                       "ON CONFLICT(component) DO UPDATE SET entry = excluded.entry");
        q.bind(1, component);
        q.bind(2, entry.dump());
        q.exec();
    });
}

Expected<void> Store::clear_journal(const std::string& component) {
    return impl_->guarded("clearing the journal", [&] {
        SQLite::Statement q(impl_->db, "DELETE FROM journal WHERE component = ?");
        q.bind(1, component);
        q.exec();
    });
}

Store::Seq Store::next_seq() {
    std::lock_guard lock(impl_->seq_mu);
    Seq out;
    if (impl_->seq_next == 0) {
        // The first number of this run: above anything a previous run may have handed out.
        auto stored = get("seq");
        std::uint64_t last = 0;
        if (!stored) out.unreserved = stored.error();
        else if (*stored && !(**stored).empty()) {
            if (auto v = download::parse_u64(**stored)) last = *v;
            else out.unreserved = Error{ErrorCode::io_error, "agent state " + impl_->file.string() + ": the status sequence '" +
                                                                 printable(**stored, 40) + "' is not a number; starting at 1"};
        }
        impl_->seq_next = last + 1;
        impl_->seq_reserved = last;
    }
    out.value = impl_->seq_next++;
    if (out.value > impl_->seq_reserved) {
        const auto reserve = out.value - 1 + seq_block;
        if (auto w = put("seq", std::to_string(reserve)); w) impl_->seq_reserved = reserve;
        else out.unreserved = w.error();
    }
    return out;
}

Expected<std::int64_t> Store::enqueue(const std::string& topic, const std::string& payload, bool retain) {
    return impl_->guarded("queueing a status report", [&] {
        insert_outbox(impl_->db, topic, payload, retain);
        return impl_->db.getLastInsertRowid();
    });
}

Expected<std::vector<OutboxItem>> Store::pending(int limit) {
    return impl_->guarded("reading the outbox", [&] {
        std::vector<OutboxItem> out;
        SQLite::Statement q(impl_->db, "SELECT id, topic, payload, retain FROM outbox ORDER BY id LIMIT ?");
        q.bind(1, limit);
        while (q.executeStep())
            out.push_back({q.getColumn(0).getInt64(), q.getColumn(1).getString(), q.getColumn(2).getString(),
                           q.getColumn(3).getInt() != 0});
        return out;
    });
}

Expected<void> Store::remove(std::int64_t id) {
    return impl_->guarded("removing a sent report", [&] {
        SQLite::Statement q(impl_->db, "DELETE FROM outbox WHERE id = ?");
        q.bind(1, id);
        q.exec();
    });
}

Expected<bool> Store::applied(const std::string& component, const std::string& version, const std::string& sha256) {
    return impl_->guarded("reading applied releases", [&] {
        SQLite::Statement q(impl_->db, "SELECT 1 FROM applied WHERE component = ? AND version = ? AND sha256 = ?");
        q.bind(1, component);
        q.bind(2, version);
        q.bind(3, sha256);
        return q.executeStep();
    });
}

Expected<void> Store::mark_applied(const std::string& component, const std::string& version, const std::string& sha256,
                                   const std::string& result) {
    return impl_->guarded("recording an applied release", [&] { insert_applied(impl_->db, component, version, sha256, result); });
}

Expected<void> Store::complete(const std::string& component, const OutboxItem& report, const std::string& version,
                               const std::string& sha256, const std::string& result,
                               const std::optional<std::string>& installed_version) {
    return impl_->guarded("completing an update", [&] {
        SQLite::Transaction tx(impl_->db);
        insert_outbox(impl_->db, report.topic, report.payload, report.retain);
        insert_applied(impl_->db, component, version, sha256, result);
        if (installed_version) upsert_kv(impl_->db, "installed/" + component, *installed_version);
        SQLite::Statement j(impl_->db, "DELETE FROM journal WHERE component = ?");
        j.bind(1, component);
        j.exec();
        tx.commit();
    });
}

Expected<void> Store::forget_applied(const std::string& component) {
    return impl_->guarded("forgetting applied releases", [&] {
        SQLite::Statement q(impl_->db, "DELETE FROM applied WHERE component = ?");
        q.bind(1, component);
        q.exec();
    });
}

Expected<std::optional<std::string>> Store::get(const std::string& key) {
    return impl_->guarded("reading a value", [&]() -> std::optional<std::string> {
        SQLite::Statement q(impl_->db, "SELECT value FROM kv WHERE key = ?");
        q.bind(1, key);
        if (!q.executeStep()) return std::nullopt;
        return q.getColumn(0).getString();
    });
}

Expected<void> Store::put(const std::string& key, const std::string& value) {
    return impl_->guarded("writing a value", [&] { upsert_kv(impl_->db, key, value); });
}

}  // namespace ota::agent
