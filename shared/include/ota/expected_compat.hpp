// std::expected for compilers whose standard library hides it: clang++-14 with libstdc++ 12 (the
// fuzz build, docs/fuzzing.md). libstdc++'s <expected> needs conditionally trivial special members
// (P0848), which clang 14 lacks, so it defines nothing there and __cpp_lib_expected stays unset.
//
// The subset the project uses lives in ota::expected_compat, always compiled (so the g++ build tests
// it beside the real std::expected, tests in fuzz/expected_compat_test.cpp); only where the library
// has no std::expected are its names brought into std. Built on std::variant, so copy, move and
// destruction are the variant's: correct, not trivially copyable (nothing here relies on that).
// Not provided: monadic operations (and_then, transform, or_else), converting constructors between
// expected<T,E> and expected<U,G>, swap. Add them here when the code starts using them.
#pragma once

#include <exception>
#include <expected>
#include <initializer_list>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

namespace ota::expected_compat {

template <typename E> class unexpected;

template <typename E> class bad_expected_access;

template <> class bad_expected_access<void> : public std::exception {
public:
    [[nodiscard]] const char* what() const noexcept override { return "bad access to std::expected without expected value"; }
};

template <typename E> class bad_expected_access : public bad_expected_access<void> {
public:
    explicit bad_expected_access(E e) : error_(std::move(e)) {}
    [[nodiscard]] const E& error() const& noexcept { return error_; }
    [[nodiscard]] E& error() & noexcept { return error_; }
    [[nodiscard]] E&& error() && noexcept { return std::move(error_); }

private:
    E error_;
};

struct unexpect_t {
    explicit unexpect_t() = default;
};
inline constexpr unexpect_t unexpect{};

template <typename T> struct is_unexpected : std::false_type {};
template <typename E> struct is_unexpected<unexpected<E>> : std::true_type {};

template <typename E> class unexpected {
public:
    template <typename Err = E>
        requires(!std::is_same_v<std::remove_cvref_t<Err>, unexpected> &&
                 !std::is_same_v<std::remove_cvref_t<Err>, std::in_place_t> && std::is_constructible_v<E, Err>)
    constexpr explicit unexpected(Err&& e) : error_(std::forward<Err>(e)) {}
    template <typename... Args>
    constexpr explicit unexpected(std::in_place_t, Args&&... args) : error_(std::forward<Args>(args)...) {}

    [[nodiscard]] constexpr const E& error() const& noexcept { return error_; }
    [[nodiscard]] constexpr E& error() & noexcept { return error_; }
    [[nodiscard]] constexpr E&& error() && noexcept { return std::move(error_); }

    template <typename G> friend constexpr bool operator==(const unexpected& a, const unexpected<G>& b) {
        return a.error() == b.error();
    }

private:
    E error_;
};
template <typename E> unexpected(E) -> unexpected<E>;

template <typename T, typename E> class expected {
    static_assert(!std::is_reference_v<T> && !is_unexpected<std::remove_cv_t<T>>::value);

public:
    using value_type = T;
    using error_type = E;
    using unexpected_type = unexpected<E>;

    constexpr expected()
        requires std::is_default_constructible_v<T>
        : v_(std::in_place_index<0>) {}
    constexpr expected(const expected&) = default;
    constexpr expected(expected&&) = default;
    constexpr expected& operator=(const expected&) = default;
    constexpr expected& operator=(expected&&) = default;

    template <typename U = T>
        requires(!std::is_same_v<std::remove_cvref_t<U>, expected> &&
                 !std::is_same_v<std::remove_cvref_t<U>, std::in_place_t> &&
                 !std::is_same_v<std::remove_cvref_t<U>, unexpect_t> &&
                 !is_unexpected<std::remove_cvref_t<U>>::value && std::is_constructible_v<T, U>)
    constexpr explicit(!std::is_convertible_v<U, T>) expected(U&& v) : v_(std::in_place_index<0>, std::forward<U>(v)) {}

    template <typename G>
        requires std::is_constructible_v<E, const G&>
    constexpr explicit(!std::is_convertible_v<const G&, E>) expected(const unexpected<G>& u)
        : v_(std::in_place_index<1>, u.error()) {}
    template <typename G>
        requires std::is_constructible_v<E, G>
    constexpr explicit(!std::is_convertible_v<G, E>) expected(unexpected<G>&& u)
        : v_(std::in_place_index<1>, std::move(u).error()) {}

    template <typename... Args>
    constexpr explicit expected(std::in_place_t, Args&&... args) : v_(std::in_place_index<0>, std::forward<Args>(args)...) {}
    template <typename... Args>
    constexpr explicit expected(unexpect_t, Args&&... args) : v_(std::in_place_index<1>, std::forward<Args>(args)...) {}

    template <typename U = T>
        requires(!std::is_same_v<std::remove_cvref_t<U>, expected> && !is_unexpected<std::remove_cvref_t<U>>::value &&
                 std::is_constructible_v<T, U> && std::is_assignable_v<T&, U>)
    constexpr expected& operator=(U&& v) {
        if (has_value()) {
            std::get<0>(v_) = std::forward<U>(v);
        } else {
            v_.template emplace<0>(std::forward<U>(v));
        }
        return *this;
    }
    template <typename G> constexpr expected& operator=(const unexpected<G>& u) {
        v_.template emplace<1>(u.error());
        return *this;
    }
    template <typename G> constexpr expected& operator=(unexpected<G>&& u) {
        v_.template emplace<1>(std::move(u).error());
        return *this;
    }

    template <typename... Args> constexpr T& emplace(Args&&... args) {
        return v_.template emplace<0>(std::forward<Args>(args)...);
    }

    [[nodiscard]] constexpr bool has_value() const noexcept { return v_.index() == 0; }
    constexpr explicit operator bool() const noexcept { return has_value(); }

    // Unchecked, as in the standard: only after has_value().
    [[nodiscard]] constexpr const T* operator->() const noexcept { return std::get_if<0>(&v_); }
    [[nodiscard]] constexpr T* operator->() noexcept { return std::get_if<0>(&v_); }
    [[nodiscard]] constexpr const T& operator*() const& noexcept { return *std::get_if<0>(&v_); }
    [[nodiscard]] constexpr T& operator*() & noexcept { return *std::get_if<0>(&v_); }
    [[nodiscard]] constexpr T&& operator*() && noexcept { return std::move(*std::get_if<0>(&v_)); }

    [[nodiscard]] constexpr const T& value() const& {
        check();
        return **this;
    }
    [[nodiscard]] constexpr T& value() & {
        check();
        return **this;
    }
    [[nodiscard]] constexpr T&& value() && {
        check();
        return std::move(**this);
    }

    [[nodiscard]] constexpr const E& error() const& noexcept { return *std::get_if<1>(&v_); }
    [[nodiscard]] constexpr E& error() & noexcept { return *std::get_if<1>(&v_); }
    [[nodiscard]] constexpr E&& error() && noexcept { return std::move(*std::get_if<1>(&v_)); }

    template <typename U> [[nodiscard]] constexpr T value_or(U&& other) const& {
        return has_value() ? **this : static_cast<T>(std::forward<U>(other));
    }
    template <typename U> [[nodiscard]] constexpr T value_or(U&& other) && {
        return has_value() ? std::move(**this) : static_cast<T>(std::forward<U>(other));
    }

    template <typename T2, typename E2>
        requires(!std::is_void_v<T2>)
    friend constexpr bool operator==(const expected& a, const expected<T2, E2>& b) {
        if (a.has_value() != b.has_value()) return false;
        return a.has_value() ? *a == *b : a.error() == b.error();
    }
    template <typename T2>
        requires(!std::is_same_v<T2, expected> && !is_unexpected<T2>::value)
    friend constexpr bool operator==(const expected& a, const T2& v) {
        return a.has_value() && *a == v;
    }
    template <typename E2> friend constexpr bool operator==(const expected& a, const unexpected<E2>& u) {
        return !a.has_value() && a.error() == u.error();
    }

private:
    constexpr void check() const {
        if (!has_value()) throw bad_expected_access<E>(error());
    }

    std::variant<T, E> v_;
};

template <typename E> class expected<void, E> {
public:
    using value_type = void;
    using error_type = E;
    using unexpected_type = unexpected<E>;

    constexpr expected() noexcept = default;
    constexpr expected(const expected&) = default;
    constexpr expected(expected&&) = default;
    constexpr expected& operator=(const expected&) = default;
    constexpr expected& operator=(expected&&) = default;

    template <typename G>
        requires std::is_constructible_v<E, const G&>
    constexpr explicit(!std::is_convertible_v<const G&, E>) expected(const unexpected<G>& u) : e_(u.error()) {}
    template <typename G>
        requires std::is_constructible_v<E, G>
    constexpr explicit(!std::is_convertible_v<G, E>) expected(unexpected<G>&& u) : e_(std::move(u).error()) {}
    constexpr explicit expected(std::in_place_t) noexcept {}
    template <typename... Args>
    constexpr explicit expected(unexpect_t, Args&&... args) : e_(std::in_place, std::forward<Args>(args)...) {}

    template <typename G> constexpr expected& operator=(const unexpected<G>& u) {
        e_.emplace(u.error());
        return *this;
    }
    template <typename G> constexpr expected& operator=(unexpected<G>&& u) {
        e_.emplace(std::move(u).error());
        return *this;
    }
    constexpr void emplace() noexcept { e_.reset(); }

    [[nodiscard]] constexpr bool has_value() const noexcept { return !e_.has_value(); }
    constexpr explicit operator bool() const noexcept { return has_value(); }
    constexpr void operator*() const noexcept {}
    constexpr void value() const& {
        if (!has_value()) throw bad_expected_access<E>(*e_);
    }
    constexpr void value() && {
        if (!has_value()) throw bad_expected_access<E>(std::move(*e_));
    }

    [[nodiscard]] constexpr const E& error() const& noexcept { return *e_; }
    [[nodiscard]] constexpr E& error() & noexcept { return *e_; }
    [[nodiscard]] constexpr E&& error() && noexcept { return std::move(*e_); }

    template <typename T2, typename E2>
        requires std::is_void_v<T2>
    friend constexpr bool operator==(const expected& a, const expected<T2, E2>& b) {
        if (a.has_value() != b.has_value()) return false;
        return a.has_value() || a.error() == b.error();
    }
    template <typename E2> friend constexpr bool operator==(const expected& a, const unexpected<E2>& u) {
        return !a.has_value() && a.error() == u.error();
    }

private:
    std::optional<E> e_;
};

}  // namespace ota::expected_compat

#if !defined(__cpp_lib_expected)
// The library has no std::expected (see the top of this file): the project's code spells it std::.
namespace std {  // NOLINT(cert-dcl58-cpp): the names std::expected would have, nothing else
using ota::expected_compat::bad_expected_access;
using ota::expected_compat::expected;
using ota::expected_compat::unexpect;
using ota::expected_compat::unexpect_t;
using ota::expected_compat::unexpected;
}  // namespace std
#endif
