// Linked into every executable of a sanitized build (cmake/OtaSanitize.cmake): the runtime options
// the tests need, compiled in so that every way of running a binary gets them (ctest, gtest
// discovery at build time, daemons the integration tests start, a binary run by hand). The
// ASAN_OPTIONS / UBSAN_OPTIONS / TSAN_OPTIONS environment variables still override each option.
// NOLINTBEGIN: the sanitizer runtimes look these names up; they must be C symbols.
extern "C" {
// detect_leaks: the daemons must not leak; abort_on_error: a signal, never a plain exit code a
// harness could mistake for a test's own.
const char* __asan_default_options() {
    return "detect_leaks=1:abort_on_error=1:strict_string_checks=1:"
           "detect_stack_use_after_return=1:check_initialization_order=1";
}
const char* __ubsan_default_options() { return "print_stacktrace=1:halt_on_error=1"; }
const char* __tsan_default_options() {
    return "halt_on_error=1:second_deadlock_stack=1:suppressions=" OTA_TSAN_SUPPRESSIONS;
}
}
// NOLINTEND
