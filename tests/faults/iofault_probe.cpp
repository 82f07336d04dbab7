// The shim's test subject: runs the file operations named on its command line, one after the
// other, through the same entry points the agent, libstdc++ and SQLite use, and prints one line
// per operation: "<op> ok" or "<op> <errno number>". Exit 0 unless the command line is wrong.
//   write F | pwrite F | pwrite64 F | writev F | ofstream F   append "x" to F (created if missing)
//   fsync F | fdatasync F                         sync F (a file or a directory)
//   rename A B | renameat A B | renameat2 A B | fs-rename A B
//   threads F N                                   N threads each write F once (prints "threads ok")
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

int open_append(const char* path) { return ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644); }

int report(const char* op, int rc, int err) {
    if (rc < 0) std::printf("%s %d\n", op, err);
    else std::printf("%s ok\n", op);
    return 0;
}

int with_fd(const char* op, const char* path, int flags, int (*f)(int)) {
    const int fd = ::open(path, flags | O_CLOEXEC, 0644);
    if (fd < 0) return report(op, -1, errno);
    const int rc = f(fd);
    const int err = errno;
    ::close(fd);
    return report(op, rc, err);
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> a(argv + 1, argv + argc);
    for (std::size_t i = 0; i < a.size();) {
        const std::string op = a[i];
        const bool two = op == "rename" || op == "renameat" || op == "renameat2" || op == "fs-rename" || op == "threads";
        const std::size_t need = two ? 3 : 2;
        if (i + need > a.size()) {
            std::fprintf(stderr, "iofault_probe: %s needs %zu argument(s)\n", op.c_str(), need - 1);
            return 2;
        }
        const char* p = a[i + 1].c_str();
        const char* q = two ? a[i + 2].c_str() : nullptr;
        i += need;
        if (op == "write") {
            with_fd("write", p, O_WRONLY | O_CREAT | O_APPEND, [](int fd) { return static_cast<int>(::write(fd, "x", 1)); });
        } else if (op == "pwrite") {
            with_fd("pwrite", p, O_WRONLY | O_CREAT, [](int fd) { return static_cast<int>(::pwrite(fd, "x", 1, 0)); });
        } else if (op == "pwrite64") {
            with_fd("pwrite64", p, O_WRONLY | O_CREAT, [](int fd) { return static_cast<int>(::pwrite64(fd, "x", 1, 0)); });
        } else if (op == "writev") {
            with_fd("writev", p, O_WRONLY | O_CREAT | O_APPEND, [](int fd) {
                char x[] = "x";
                iovec v{x, 1};
                return static_cast<int>(::writev(fd, &v, 1));
            });
        } else if (op == "ofstream") {
            std::ofstream out(p, std::ios::app);
            out << "x" << std::flush;
            report("ofstream", out ? 0 : -1, EIO);  // iostreams keep no errno: any failure shows as 5
        } else if (op == "fsync") {
            with_fd("fsync", p, O_RDONLY, [](int fd) { return ::fsync(fd); });
        } else if (op == "fdatasync") {
            with_fd("fdatasync", p, O_RDONLY, [](int fd) { return ::fdatasync(fd); });
        } else if (op == "rename") {
            const int rc = ::rename(p, q);
            report("rename", rc, errno);
        } else if (op == "renameat") {
            const int rc = ::renameat(AT_FDCWD, p, AT_FDCWD, q);
            report("renameat", rc, errno);
        } else if (op == "renameat2") {
            const int rc = ::renameat2(AT_FDCWD, p, AT_FDCWD, q, 0);
            report("renameat2", rc, errno);
        } else if (op == "fs-rename") {
            std::error_code ec;
            std::filesystem::rename(p, q, ec);
            report("fs-rename", ec ? -1 : 0, ec.value());
        } else if (op == "threads") {
            const int n = std::stoi(q);
            std::vector<std::thread> ts;
            for (int t = 0; t < n; ++t)
                ts.emplace_back([p] {
                    const int fd = open_append(p);
                    if (fd >= 0) {
                        (void)::write(fd, "x", 1);
                        ::close(fd);
                    }
                });
            for (auto& t : ts) t.join();
            report("threads", 0, 0);
        } else {
            std::fprintf(stderr, "iofault_probe: unknown operation %s\n", op.c_str());
            return 2;
        }
    }
    return 0;
}
