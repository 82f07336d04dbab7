#include "store.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace ota::controller {
namespace {

// Numbered migrations: migration N brings user_version from N-1 to N. Never edit one that has
// shipped; add the next.
const char* const migrations[] = {
    // 1
    "CREATE TABLE devices (id TEXT PRIMARY KEY, fleet TEXT NOT NULL, wave TEXT NOT NULL, platform TEXT NOT NULL,"
    "  agent_version TEXT NOT NULL, labels TEXT NOT NULL, components TEXT NOT NULL, online INTEGER NOT NULL,"
    "  has_inventory INTEGER NOT NULL, assigned TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL);"
    "CREATE TABLE rollouts (id TEXT PRIMARY KEY, fleet TEXT NOT NULL, component TEXT NOT NULL, version TEXT NOT NULL,"
    "  scheme TEXT NOT NULL, channel TEXT NOT NULL, envelope TEXT NOT NULL, state TEXT NOT NULL, wave INTEGER NOT NULL,"
    "  reason TEXT NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL);"
    "CREATE TABLE waves (rollout TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,"
    "  approved INTEGER NOT NULL, opened_at INTEGER, soak_until INTEGER, done_at INTEGER,"
    "  base_failed INTEGER NOT NULL, base_finished INTEGER NOT NULL, PRIMARY KEY (rollout, idx));"
    "CREATE TABLE members (rollout TEXT NOT NULL, device TEXT NOT NULL, wave INTEGER NOT NULL, state TEXT NOT NULL,"
    "  stage TEXT NOT NULL, progress INTEGER NOT NULL, error TEXT NOT NULL, updated INTEGER NOT NULL,"
    "  PRIMARY KEY (rollout, device));"
    "CREATE TABLE status_seq (device TEXT NOT NULL, component TEXT NOT NULL, seq INTEGER NOT NULL,"
    "  PRIMARY KEY (device, component));"
    "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, actor TEXT NOT NULL,"
    "  action TEXT NOT NULL, rollout TEXT NOT NULL, detail TEXT NOT NULL);"
    "CREATE INDEX audit_rollout ON audit (rollout, id);"
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    // 2: operators' policy overrides (maintenance windows, strategy), over the config file
    "CREATE TABLE policy_overrides (fleet TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    "  actor TEXT NOT NULL, ts INTEGER NOT NULL, PRIMARY KEY (fleet, key));",
};

std::optional<TimePoint> opt_time(const SQLite::Column& c) {
    if (c.isNull()) return std::nullopt;
    return from_ms(c.getInt64());
}

void bind_opt(SQLite::Statement& q, int i, const std::optional<TimePoint>& t) {
    if (t) q.bind(i, to_ms(*t));
    else q.bind(i);
}

nlohmann::json parse_or(const std::string& text, nlohmann::json fallback) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    return j.is_discarded() ? fallback : j;
}

// A state read back from the database; a name this build does not know is a damaged (or newer)
// database: the controller stops with a clear error rather than guess.
template <class Parse>
auto stored(Parse parse, const std::string& name, const std::string& what) {
    if (auto s = parse(name)) return *s;
    throw std::runtime_error("controller state: " + what + " has the unknown state \"" + name + "\"");
}

// One controller per database: `<db>.lock`, held with flock for the life of the Store (released by
// the kernel when the process dies, so a kill -9 leaves no stale lock). It holds the owner's pid.
Expected<int> lock_database(const std::filesystem::path& db) {
    const auto lock = db.string() + ".lock";
    const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return fail(ErrorCode::io_error, "controller state " + lock + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        char pid[32] = {};
        (void)!::pread(fd, pid, sizeof pid - 1, 0);
        ::close(fd);
        if (err == EWOULDBLOCK)
            return fail(ErrorCode::io_error, "controller state " + db.string() + " is in use by another ota-controller" +
                                                 (pid[0] ? " (pid " + std::string(pid, std::strcspn(pid, "\n")) + ")" : std::string()) +
                                                 "; two controllers on one database would both steer its rollouts");
        return fail(ErrorCode::io_error, "controller state " + lock + ": " + std::strerror(err));
    }
    const auto mine = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, mine.data(), mine.size(), 0) != static_cast<ssize_t>(mine.size())) {
        const int err = errno;
        ::close(fd);
        return fail(ErrorCode::io_error, "controller state " + lock + ": " + std::strerror(err));
    }
    return fd;
}

}  // namespace

std::int64_t to_ms(TimePoint t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
TimePoint from_ms(std::int64_t ms) { return TimePoint(std::chrono::milliseconds(ms)); }

struct Store::Impl {
    struct Lock {
        int fd{-1};
        ~Lock() {
            if (fd >= 0) ::close(fd);
        }
    } lock;  // first member: held until after the database is closed
    SQLite::Database db;
    SQLite::Statement put_device, put_rollout, put_wave, put_member, put_seq, audit, count;
    explicit Impl(const std::filesystem::path& f)
        : db(f.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE),
          put_device(db, "SELECT 1"), put_rollout(db, "SELECT 1"), put_wave(db, "SELECT 1"),
          put_member(db, "SELECT 1"), put_seq(db, "SELECT 1"), audit(db, "SELECT 1"), count(db, "SELECT 1") {}
    void prepare() {
        put_device = SQLite::Statement(
            db, "INSERT OR REPLACE INTO devices (id, fleet, wave, platform, agent_version, labels, components, online,"
                " has_inventory, assigned, first_seen, last_seen) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)");
        put_rollout = SQLite::Statement(
            db, "INSERT OR REPLACE INTO rollouts (id, fleet, component, version, scheme, channel, envelope, state,"
                " wave, reason, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)");
        put_wave = SQLite::Statement(
            db, "INSERT OR REPLACE INTO waves (rollout, idx, name, state, approved, opened_at, soak_until, done_at,"
                " base_failed, base_finished) VALUES (?,?,?,?,?,?,?,?,?,?)");
        // Upserts, not INSERT OR REPLACE: a replace deletes and re-inserts the row and its key in the
        // primary-key index; an update in place leaves the index alone (one write per status message).
        put_member = SQLite::Statement(
            db, "INSERT INTO members (rollout, device, wave, state, stage, progress, error, updated)"
                " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (rollout, device) DO UPDATE SET wave = excluded.wave,"
                " state = excluded.state, stage = excluded.stage, progress = excluded.progress,"
                " error = excluded.error, updated = excluded.updated");
        put_seq = SQLite::Statement(db, "INSERT INTO status_seq (device, component, seq) VALUES (?,?,?)"
                                        " ON CONFLICT (device, component) DO UPDATE SET seq = excluded.seq");
        audit = SQLite::Statement(db, "INSERT INTO audit (ts, actor, action, rollout, detail) VALUES (?,?,?,?,?)");
        count = SQLite::Statement(db, "INSERT INTO counters (name, value) VALUES (?, ?) "
                                      "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value");
    }
};

Store::~Store() = default;

Expected<std::unique_ptr<Store>> Store::open(const std::filesystem::path& path) {
    try {
        std::error_code ec;
        if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
        auto lock = lock_database(path);
        if (!lock) return std::unexpected(lock.error());
        Impl::Lock held{*lock};
        std::unique_ptr<Store> store(new Store());
        store->impl_ = std::make_unique<Impl>(path);
        store->impl_->lock.fd = std::exchange(held.fd, -1);
        auto& db = store->impl_->db;
        db.exec("PRAGMA journal_mode=WAL");
        // NORMAL in WAL mode: a commit survives a crash of the process (kill -9); a power cut may
        // lose the last commits, which the retained topics rebuild on the next start.
        db.exec("PRAGMA synchronous=NORMAL");
        db.exec("PRAGMA busy_timeout=5000");
        const int have = db.execAndGet("PRAGMA user_version").getInt();
        const int want = static_cast<int>(std::size(migrations));
        if (have > want)
            return fail(ErrorCode::io_error, "controller state " + path.string() + ": schema version " +
                                                 std::to_string(have) + " is newer than this controller knows (" +
                                                 std::to_string(want) + ")");
        for (int v = have; v < want; ++v) {
            SQLite::Transaction tx(db);
            db.exec(migrations[v]);
            db.exec("PRAGMA user_version=" + std::to_string(v + 1));
            tx.commit();
        }
        store->impl_->prepare();
        return store;
    } catch (const SQLite::Exception& e) {
        return fail(ErrorCode::io_error, "controller state " + path.string() + ": " + e.what());
    }
}

int Store::schema_version() const { return impl_->db.execAndGet("PRAGMA user_version").getInt(); }

Store::Batch::Batch(Store& store) : tx_(std::make_unique<SQLite::Transaction>(store.impl_->db)) {}
Store::Batch::~Batch() = default;
Expected<void> Store::Batch::commit() {
    try {
        tx_->commit();
        return {};
    } catch (const SQLite::Exception& e) {
        return fail(ErrorCode::io_error, std::string("controller state: commit: ") + e.what());
    }
}

void Store::put_device(const DeviceRow& d) {
    auto& q = impl_->put_device;
    q.reset();
    q.bind(1, d.id);
    q.bind(2, d.fleet);
    q.bind(3, d.wave);
    q.bind(4, d.platform);
    q.bind(5, d.agent_version);
    q.bind(6, d.labels.dump());
    q.bind(7, d.components.dump());
    q.bind(8, d.online ? 1 : 0);
    q.bind(9, d.has_inventory ? 1 : 0);
    q.bind(10, d.assigned);
    q.bind(11, to_ms(d.first_seen));
    q.bind(12, to_ms(d.last_seen));
    q.exec();
}

void Store::put_rollout(const RolloutRow& r) {
    auto& q = impl_->put_rollout;
    q.reset();
    q.bind(1, r.id);
    q.bind(2, r.fleet);
    q.bind(3, r.component);
    q.bind(4, r.version);
    q.bind(5, r.scheme);
    q.bind(6, r.channel);
    q.bind(7, r.envelope);
    q.bind(8, std::string(to_string(r.state)));
    q.bind(9, static_cast<std::int64_t>(r.wave));
    q.bind(10, r.reason);
    q.bind(11, to_ms(r.created));
    q.bind(12, to_ms(r.updated));
    q.exec();
    for (std::size_t i = 0; i < r.waves.size(); ++i) {
        const auto& w = r.waves[i];
        auto& wq = impl_->put_wave;
        wq.reset();
        wq.bind(1, r.id);
        wq.bind(2, static_cast<std::int64_t>(i));
        wq.bind(3, w.name);
        wq.bind(4, std::string(to_string(w.state)));
        wq.bind(5, w.approved ? 1 : 0);
        bind_opt(wq, 6, w.opened_at);
        bind_opt(wq, 7, w.soak_until);
        bind_opt(wq, 8, w.done_at);
        wq.bind(9, static_cast<std::int64_t>(w.base_failed));
        wq.bind(10, static_cast<std::int64_t>(w.base_finished));
        wq.exec();
    }
}

void Store::put_member(const MemberRow& m) {
    auto& q = impl_->put_member;
    q.reset();
    q.bind(1, m.rollout);
    q.bind(2, m.device);
    q.bind(3, static_cast<std::int64_t>(m.wave));
    q.bind(4, std::string(to_string(m.state)));
    q.bind(5, m.stage);
    q.bind(6, m.progress);
    q.bind(7, m.error);
    q.bind(8, to_ms(m.updated));
    q.exec();
}

void Store::put_seq(const std::string& device, const std::string& component, std::int64_t seq) {
    auto& q = impl_->put_seq;
    q.reset();
    q.bind(1, device);
    q.bind(2, component);
    q.bind(3, seq);
    q.exec();
}

void Store::audit(TimePoint ts, const std::string& actor, const std::string& action, const std::string& rollout,
                  const std::string& detail) {
    auto& q = impl_->audit;
    q.reset();
    q.bind(1, to_ms(ts));
    q.bind(2, actor);
    q.bind(3, action);
    q.bind(4, rollout);
    q.bind(5, detail);
    q.exec();
}

void Store::count(const std::string& name, std::int64_t delta) {
    auto& q = impl_->count;
    q.reset();
    q.bind(1, name);
    q.bind(2, delta);
    q.exec();
}

std::vector<DeviceRow> Store::devices() {
    std::vector<DeviceRow> out;
    SQLite::Statement q(impl_->db, "SELECT id, fleet, wave, platform, agent_version, labels, components, online,"
                                   " has_inventory, assigned, first_seen, last_seen FROM devices ORDER BY id");
    while (q.executeStep()) {
        DeviceRow d;
        d.id = q.getColumn(0).getString();
        d.fleet = q.getColumn(1).getString();
        d.wave = q.getColumn(2).getString();
        d.platform = q.getColumn(3).getString();
        d.agent_version = q.getColumn(4).getString();
        d.labels = parse_or(q.getColumn(5).getString(), nlohmann::json::object());
        d.components = parse_or(q.getColumn(6).getString(), nlohmann::json::object());
        d.online = q.getColumn(7).getInt() != 0;
        d.has_inventory = q.getColumn(8).getInt() != 0;
        d.assigned = q.getColumn(9).getString();
        d.first_seen = from_ms(q.getColumn(10).getInt64());
        d.last_seen = from_ms(q.getColumn(11).getInt64());
        out.push_back(std::move(d));
    }
    return out;
}

std::vector<RolloutRow> Store::rollouts() {
    std::vector<RolloutRow> out;
    SQLite::Statement q(impl_->db, "SELECT id, fleet, component, version, scheme, channel, envelope, state, wave,"
                                   " reason, created, updated FROM rollouts ORDER BY created, id");
    while (q.executeStep()) {
        RolloutRow r;
        r.id = q.getColumn(0).getString();
        r.fleet = q.getColumn(1).getString();
        r.component = q.getColumn(2).getString();
        r.version = q.getColumn(3).getString();
        r.scheme = q.getColumn(4).getString();
        r.channel = q.getColumn(5).getString();
        r.envelope = q.getColumn(6).getString();
        r.state = stored(parse_rollout_state, q.getColumn(7).getString(), "rollout " + r.id);
        r.wave = static_cast<std::size_t>(q.getColumn(8).getInt64());
        r.reason = q.getColumn(9).getString();
        r.created = from_ms(q.getColumn(10).getInt64());
        r.updated = from_ms(q.getColumn(11).getInt64());
        SQLite::Statement wq(impl_->db, "SELECT name, state, approved, opened_at, soak_until, done_at, base_failed,"
                                        " base_finished FROM waves WHERE rollout = ? ORDER BY idx");
        wq.bind(1, r.id);
        while (wq.executeStep()) {
            WaveRow w;
            w.name = wq.getColumn(0).getString();
            w.state = stored(parse_wave_state, wq.getColumn(1).getString(), "wave of rollout " + r.id);
            w.approved = wq.getColumn(2).getInt() != 0;
            w.opened_at = opt_time(wq.getColumn(3));
            w.soak_until = opt_time(wq.getColumn(4));
            w.done_at = opt_time(wq.getColumn(5));
            w.base_failed = static_cast<std::uint64_t>(wq.getColumn(6).getInt64());
            w.base_finished = static_cast<std::uint64_t>(wq.getColumn(7).getInt64());
            r.waves.push_back(std::move(w));
        }
        out.push_back(std::move(r));
    }
    return out;
}

namespace {
const char* const member_columns = "SELECT rollout, device, wave, state, stage, progress, error, updated FROM members";

MemberRow read_member(SQLite::Statement& q) {
    MemberRow m;
    m.rollout = q.getColumn(0).getString();
    m.device = q.getColumn(1).getString();
    m.wave = static_cast<std::size_t>(q.getColumn(2).getInt64());
    m.state = stored(parse_member_state, q.getColumn(3).getString(), "member " + m.device + " of " + m.rollout);
    m.stage = q.getColumn(4).getString();
    m.progress = q.getColumn(5).getInt();
    m.error = q.getColumn(6).getString();
    m.updated = from_ms(q.getColumn(7).getInt64());
    return m;
}
}  // namespace

std::optional<MemberRow> Store::member(const std::string& rollout, const std::string& device) {
    SQLite::Statement q(impl_->db, std::string(member_columns) + " WHERE rollout = ? AND device = ?");
    q.bind(1, rollout);
    q.bind(2, device);
    if (!q.executeStep()) return std::nullopt;
    return read_member(q);
}

std::vector<MemberRow> Store::members(const std::optional<std::string>& rollout) {
    std::vector<MemberRow> out;
    SQLite::Statement q(impl_->db, rollout ? std::string(member_columns) + " WHERE rollout = ?" : std::string(member_columns));
    if (rollout) q.bind(1, *rollout);
    while (q.executeStep()) out.push_back(read_member(q));
    return out;
}

std::map<std::pair<std::string, std::string>, std::int64_t> Store::seqs() {
    std::map<std::pair<std::string, std::string>, std::int64_t> out;
    SQLite::Statement q(impl_->db, "SELECT device, component, seq FROM status_seq");
    while (q.executeStep()) out[{q.getColumn(0).getString(), q.getColumn(1).getString()}] = q.getColumn(2).getInt64();
    return out;
}

std::vector<AuditRow> Store::audit_log(const std::string& rollout, std::size_t limit) {
    std::vector<AuditRow> out;
    SQLite::Statement q(impl_->db, rollout.empty()
                                       ? "SELECT id, ts, actor, action, rollout, detail FROM audit ORDER BY id DESC LIMIT ?"
                                       : "SELECT id, ts, actor, action, rollout, detail FROM audit WHERE rollout = ?"
                                         " ORDER BY id DESC LIMIT ?");
    int i = 1;
    if (!rollout.empty()) q.bind(i++, rollout);
    q.bind(i, static_cast<std::int64_t>(limit));
    while (q.executeStep()) {
        AuditRow a;
        a.id = q.getColumn(0).getInt64();
        a.ts = from_ms(q.getColumn(1).getInt64());
        a.actor = q.getColumn(2).getString();
        a.action = q.getColumn(3).getString();
        a.rollout = q.getColumn(4).getString();
        a.detail = q.getColumn(5).getString();
        out.push_back(std::move(a));
    }
    std::reverse(out.begin(), out.end());
    return out;
}

std::map<std::string, std::int64_t> Store::counters() {
    std::map<std::string, std::int64_t> out;
    SQLite::Statement q(impl_->db, "SELECT name, value FROM counters");
    while (q.executeStep()) out[q.getColumn(0).getString()] = q.getColumn(1).getInt64();
    return out;
}

void Store::put_override(const OverrideRow& o) {
    SQLite::Statement q(impl_->db, "INSERT INTO policy_overrides (fleet, key, value, actor, ts) VALUES (?,?,?,?,?)"
                                   " ON CONFLICT (fleet, key) DO UPDATE SET value = excluded.value,"
                                   " actor = excluded.actor, ts = excluded.ts");
    q.bind(1, o.fleet);
    q.bind(2, o.key);
    q.bind(3, o.value.dump());
    q.bind(4, o.actor);
    q.bind(5, to_ms(o.ts));
    q.exec();
}

void Store::delete_override(const std::string& fleet, const std::string& key) {
    SQLite::Statement q(impl_->db, key.empty() ? "DELETE FROM policy_overrides WHERE fleet = ?"
                                               : "DELETE FROM policy_overrides WHERE fleet = ? AND key = ?");
    q.bind(1, fleet);
    if (!key.empty()) q.bind(2, key);
    q.exec();
}

std::vector<OverrideRow> Store::overrides() {
    std::vector<OverrideRow> out;
    SQLite::Statement q(impl_->db, "SELECT fleet, key, value, actor, ts FROM policy_overrides ORDER BY fleet, key");
    while (q.executeStep()) {
        OverrideRow o;
        o.fleet = q.getColumn(0).getString();
        o.key = q.getColumn(1).getString();
        o.value = parse_or(q.getColumn(2).getString(), nullptr);
        o.actor = q.getColumn(3).getString();
        o.ts = from_ms(q.getColumn(4).getInt64());
        out.push_back(std::move(o));
    }
    return out;
}

}  // namespace ota::controller
