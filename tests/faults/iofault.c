/* iofault: an LD_PRELOAD shim that plays a failing disk, for tests only (docs/testing-faults.md).
 *
 * It wraps write, pwrite, pwrite64, writev, pwritev (op "write"), fsync, fdatasync (op "fsync"),
 * rename, renameat, renameat2 (op "rename"). A call is *counted* when its op is in
 * OTA_IOFAULT_OPS and, if OTA_IOFAULT_PATH is set, its file (the fd's /proc/self/fd link, or
 * either path of a rename) is that directory or under it. Counted calls are numbered from 1 in
 * this process; the OTA_IOFAULT_NTH-th fails with OTA_IOFAULT_ERRNO (OTA_IOFAULT_MODE=once), or
 * it and every later counted one do (sticky: a disk that stays full). OTA_IOFAULT_LOG=<file>
 * appends one line per counted call: "<index> <op> <ok|fail> <pid> <function> <path>".
 *
 * Environment (read once, at load):
 *   OTA_IOFAULT_OPS    comma list of write,fsync,rename (default: all three)
 *   OTA_IOFAULT_PATH   directory; unset: every call of the ops counts (sockets and pipes too)
 *   OTA_IOFAULT_NTH    1-based index of the counted call that fails; unset or 0: none fails
 *   OTA_IOFAULT_MODE   once (default) | sticky
 *   OTA_IOFAULT_ERRNO  ENOSPC (default) | EIO | EDQUOT | EROFS | EACCES | EPERM | <number>
 *   OTA_IOFAULT_LOG    file to append the call log to
 *
 * The hot path takes no lock and allocates nothing: an atomic counter, a readlink into a stack
 * buffer, and a write(2) through the real function for the log line. Failing calls do nothing
 * (no partial write). Children inherit LD_PRELOAD and count on their own (the pid in the log
 * tells them apart). Paths are compared as given or as the kernel names them (/proc/self/fd),
 * without resolving "..": tests pass absolute, canonical directories.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { OP_WRITE = 1, OP_FSYNC = 2, OP_RENAME = 4 };

typedef ssize_t (*write_fn)(int, const void*, size_t);
typedef ssize_t (*pwrite_fn)(int, const void*, size_t, off_t);
typedef ssize_t (*pwrite64_fn)(int, const void*, size_t, off64_t);
typedef ssize_t (*writev_fn)(int, const struct iovec*, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec*, int, off_t);
typedef int (*fsync_fn)(int);
typedef int (*rename_fn)(const char*, const char*);
typedef int (*renameat_fn)(int, const char*, int, const char*);
typedef int (*renameat2_fn)(int, const char*, int, const char*, unsigned int);

static struct {
    write_fn write;
    pwrite_fn pwrite;
    pwrite64_fn pwrite64;
    writev_fn writev;
    pwritev_fn pwritev;
    fsync_fn fsync;
    fsync_fn fdatasync;
    rename_fn rename;
    renameat_fn renameat;
    renameat2_fn renameat2;
} real;

static struct {
    int ops;
    char path[PATH_MAX];
    size_t path_len; /* 0: no path filter */
    long nth;        /* 0: never fail */
    int sticky;
    int err;
    int log_fd; /* -1: no log */
} cfg = {OP_WRITE | OP_FSYNC | OP_RENAME, "", 0, 0, 0, ENOSPC, -1};

static atomic_long counter;
static atomic_int ready;

/* dlsym returns an object pointer; copying its bytes into the function pointer is the
 * conversion POSIX promises to work (a cast is not ISO C). */
#define NEXT(field, name)                                  \
    do {                                                   \
        void* sym = dlsym(RTLD_NEXT, name);                \
        memcpy(&real.field, &sym, sizeof real.field);      \
    } while (0)

static void resolve(void) {
    NEXT(write, "write");
    NEXT(pwrite, "pwrite");
    NEXT(pwrite64, "pwrite64");
    NEXT(writev, "writev");
    NEXT(pwritev, "pwritev");
    NEXT(fsync, "fsync");
    NEXT(fdatasync, "fdatasync");
    NEXT(rename, "rename");
    NEXT(renameat, "renameat");
    NEXT(renameat2, "renameat2");
}

static int parse_errno(const char* s) {
    static const struct { const char* name; int value; } names[] = {
        {"ENOSPC", ENOSPC}, {"EIO", EIO}, {"EDQUOT", EDQUOT}, {"EROFS", EROFS},
        {"EACCES", EACCES}, {"EPERM", EPERM}, {"EFBIG", EFBIG}, {"EINTR", EINTR},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i)
        if (strcmp(s, names[i].name) == 0) return names[i].value;
    char* end = NULL;
    long v = strtol(s, &end, 10);
    if (end != s && *end == '\0' && v > 0 && v < 4096) return (int)v;
    return -1;
}

static void complain(const char* what, const char* value) {
    /* stderr through the real write: a bad setting must be seen, not silently ignored. */
    char line[512];
    int n = snprintf(line, sizeof line, "iofault: %s: '%s'\n", what, value);
    if (n > 0 && real.write) (void)real.write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void configure(void) {
    const char* v;
    if ((v = getenv("OTA_IOFAULT_OPS")) && *v) {
        cfg.ops = 0;
        const char* p = v;
        while (*p) {
            const char* comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            if (len == 5 && strncmp(p, "write", 5) == 0) cfg.ops |= OP_WRITE;
            else if (len == 5 && strncmp(p, "fsync", 5) == 0) cfg.ops |= OP_FSYNC;
            else if (len == 6 && strncmp(p, "rename", 6) == 0) cfg.ops |= OP_RENAME;
            else if (len > 0) complain("OTA_IOFAULT_OPS: unknown op in", v);
            p += len;
            if (*p == ',') ++p;
        }
    }
    if ((v = getenv("OTA_IOFAULT_PATH")) && *v) {
        char canon[PATH_MAX];
        const char* use = realpath(v, canon) ? canon : v;
        size_t len = strlen(use);
        while (len > 1 && use[len - 1] == '/') --len;
        if (len < sizeof cfg.path) {
            memcpy(cfg.path, use, len);
            cfg.path[len] = '\0';
            cfg.path_len = len;
        } else {
            complain("OTA_IOFAULT_PATH too long", v);
        }
    }
    if ((v = getenv("OTA_IOFAULT_NTH")) && *v) {
        char* end = NULL;
        long n = strtol(v, &end, 10);
        if (end == v || *end != '\0' || n < 0) complain("OTA_IOFAULT_NTH: not a count", v);
        else cfg.nth = n;
    }
    if ((v = getenv("OTA_IOFAULT_MODE")) && *v) {
        if (strcmp(v, "sticky") == 0) cfg.sticky = 1;
        else if (strcmp(v, "once") != 0) complain("OTA_IOFAULT_MODE: not once|sticky", v);
    }
    if ((v = getenv("OTA_IOFAULT_ERRNO")) && *v) {
        int e = parse_errno(v);
        if (e < 0) complain("OTA_IOFAULT_ERRNO: unknown errno", v);
        else cfg.err = e;
    }
    if ((v = getenv("OTA_IOFAULT_LOG")) && *v) {
        cfg.log_fd = open(v, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (cfg.log_fd < 0) complain("OTA_IOFAULT_LOG: cannot open", v);
    }
}

__attribute__((constructor)) static void iofault_init(void) {
    resolve();
    configure();
    atomic_store(&ready, 1);
}

/* A wrapper called before the constructor (another library's constructor writing): resolve
 * the real functions only, count nothing. */
static int active(void) {
    if (atomic_load_explicit(&ready, memory_order_acquire)) return 1;
    if (!real.write) resolve();
    return 0;
}

static int under_filter(const char* path) {
    if (strncmp(path, cfg.path, cfg.path_len) != 0) return 0;
    return path[cfg.path_len] == '\0' || path[cfg.path_len] == '/' || cfg.path_len == 1;
}

/* The kernel's name of fd's file into buf ("" if unknown, e.g. closed). */
static void fd_path(int fd, char* buf, size_t size) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, size - 1);
    buf[n > 0 ? n : 0] = '\0';
}

/* `path` relative to dirfd (AT_FDCWD: the working directory), made absolute into buf. */
static void at_path(int dirfd, const char* path, char* buf, size_t size) {
    buf[0] = '\0';
    if (!path) return;
    if (path[0] == '/') {
        snprintf(buf, size, "%s", path);
        return;
    }
    char base[PATH_MAX];
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof base)) base[0] = '\0';
    } else {
        fd_path(dirfd, base, sizeof base);
    }
    snprintf(buf, size, "%s/%s", base, path);
}

static void log_line(long index, const char* op, int failed, const char* fn, const char* path) {
    if (cfg.log_fd < 0) return;
    char line[PATH_MAX + 128];
    int n = snprintf(line, sizeof line, "%ld %s %s %d %s %s\n", index, op, failed ? "fail" : "ok", (int)getpid(), fn,
                     path[0] ? path : "-");
    if (n <= 0) return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    (void)real.write(cfg.log_fd, line, len); /* O_APPEND: one line per write, whole */
}

/* Decide for one call: 0 = pass through, 1 = fail it (errno set by the caller). */
static int decide(const char* opname, const char* fn, const char* path_a, const char* path_b) {
    const char* shown = path_a;
    if (cfg.path_len) {
        if (under_filter(path_a)) shown = path_a;
        else if (path_b && under_filter(path_b)) shown = path_b;
        else return 0;
    }
    long index = atomic_fetch_add(&counter, 1) + 1;
    int failed = cfg.nth > 0 && (index == cfg.nth || (cfg.sticky && index > cfg.nth));
    log_line(index, opname, failed, fn, shown);
    return failed;
}

static int fd_call_fails(int op, const char* opname, const char* fn, int fd) {
    if (!active() || !(cfg.ops & op)) return 0;
    char path[PATH_MAX];
    path[0] = '\0';
    if (cfg.path_len || cfg.log_fd >= 0) fd_path(fd, path, sizeof path);
    return decide(opname, fn, path, NULL);
}

static int rename_fails(const char* fn, int olddirfd, const char* oldpath, int newdirfd, const char* newpath) {
    if (!active() || !(cfg.ops & OP_RENAME)) return 0;
    char a[PATH_MAX], b[PATH_MAX];
    at_path(olddirfd, oldpath, a, sizeof a);
    at_path(newdirfd, newpath, b, sizeof b);
    return decide("rename", fn, b, a);
}

ssize_t write(int fd, const void* buf, size_t count) {
    if (fd_call_fails(OP_WRITE, "write", "write", fd)) { errno = cfg.err; return -1; }
    return real.write(fd, buf, count);
}

ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
    if (fd_call_fails(OP_WRITE, "write", "pwrite", fd)) { errno = cfg.err; return -1; }
    return real.pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void* buf, size_t count, off64_t offset) {
    if (fd_call_fails(OP_WRITE, "write", "pwrite64", fd)) { errno = cfg.err; return -1; }
    return real.pwrite64(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
    if (fd_call_fails(OP_WRITE, "write", "writev", fd)) { errno = cfg.err; return -1; }
    return real.writev(fd, iov, iovcnt);
}

ssize_t pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
    if (fd_call_fails(OP_WRITE, "write", "pwritev", fd)) { errno = cfg.err; return -1; }
    return real.pwritev(fd, iov, iovcnt, offset);
}

int fsync(int fd) {
    if (fd_call_fails(OP_FSYNC, "fsync", "fsync", fd)) { errno = cfg.err; return -1; }
    return real.fsync(fd);
}

int fdatasync(int fd) {
    if (fd_call_fails(OP_FSYNC, "fsync", "fdatasync", fd)) { errno = cfg.err; return -1; }
    return real.fdatasync(fd);
}

int rename(const char* oldpath, const char* newpath) {
    if (rename_fails("rename", AT_FDCWD, oldpath, AT_FDCWD, newpath)) { errno = cfg.err; return -1; }
    return real.rename(oldpath, newpath);
}

int renameat(int olddirfd, const char* oldpath, int newdirfd, const char* newpath) {
    if (rename_fails("renameat", olddirfd, oldpath, newdirfd, newpath)) { errno = cfg.err; return -1; }
    return real.renameat(olddirfd, oldpath, newdirfd, newpath);
}

int renameat2(int olddirfd, const char* oldpath, int newdirfd, const char* newpath, unsigned int flags) {
    if (rename_fails("renameat2", olddirfd, oldpath, newdirfd, newpath)) { errno = cfg.err; return -1; }
    return real.renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}
