// ota/expected_compat.hpp: the subset of std::expected the project uses, tested on the compat
// classes and, where the library has it (g++ 12), on the real std::expected with the same tests,
// so the tests themselves are checked against the standard. Built by the normal build (g++) and
// by the fuzz build (clang++-14, where std::expected *is* the compat one).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "ota/error.hpp"

namespace {

struct Compat {
    template <typename T, typename E> using expected = ota::expected_compat::expected<T, E>;
    template <typename E> using unexpected = ota::expected_compat::unexpected<E>;
    template <typename E> using bad_access = ota::expected_compat::bad_expected_access<E>;
    static constexpr auto unexpect = ota::expected_compat::unexpect;
};
#if defined(__cpp_lib_expected)
struct Std {
    template <typename T, typename E> using expected = std::expected<T, E>;
    template <typename E> using unexpected = std::unexpected<E>;
    template <typename E> using bad_access = std::bad_expected_access<E>;
    static constexpr auto unexpect = std::unexpect;
};
using Impls = ::testing::Types<Compat, Std>;
#else
using Impls = ::testing::Types<Compat>;
#endif

template <typename I> class ExpectedCompat : public ::testing::Test {};
TYPED_TEST_SUITE(ExpectedCompat, Impls);

// Counts live objects, to see that copies, moves, assignments and destruction balance.
struct Tracked {
    static inline int live = 0;
    std::string v;
    explicit Tracked(std::string s) : v(std::move(s)) { ++live; }
    Tracked(const Tracked& o) : v(o.v) { ++live; }
    Tracked(Tracked&& o) noexcept : v(std::move(o.v)) { ++live; }
    Tracked& operator=(const Tracked&) = default;
    Tracked& operator=(Tracked&&) noexcept = default;
    ~Tracked() { --live; }
    bool operator==(const Tracked& o) const { return v == o.v; }
};

TYPED_TEST(ExpectedCompat, ValueAndErrorStates) {
    using I = TypeParam;
    typename I::template expected<int, std::string> v = 42;
    EXPECT_TRUE(v.has_value());
    EXPECT_TRUE(static_cast<bool>(v));
    EXPECT_EQ(*v, 42);
    EXPECT_EQ(v.value(), 42);
    EXPECT_EQ(v.value_or(7), 42);

    typename I::template expected<int, std::string> e = typename I::template unexpected<std::string>("bad");
    EXPECT_FALSE(e.has_value());
    EXPECT_FALSE(static_cast<bool>(e));
    EXPECT_EQ(e.error(), "bad");
    EXPECT_EQ(e.value_or(7), 7);
    EXPECT_THROW((void)e.value(), typename I::template bad_access<std::string>);
    try {
        (void)e.value();
    } catch (const typename I::template bad_access<std::string>& x) {
        EXPECT_EQ(x.error(), "bad");
    }

    typename I::template expected<int, std::string> d;  // value-initialised T
    EXPECT_TRUE(d.has_value());
    EXPECT_EQ(*d, 0);
    typename I::template expected<int, std::string> u(I::unexpect, 3, 'x');
    EXPECT_EQ(u.error(), "xxx");
}

TYPED_TEST(ExpectedCompat, ArrowEmplaceAndAssignment) {
    using I = TypeParam;
    typename I::template expected<std::string, int> s = std::string("abc");
    EXPECT_EQ(s->size(), 3u);
    s->append("d");
    EXPECT_EQ(*s, "abcd");
    s = typename I::template unexpected<int>(5);
    EXPECT_FALSE(s);
    EXPECT_EQ(s.error(), 5);
    s = std::string("back");
    ASSERT_TRUE(s);
    EXPECT_EQ(*s, "back");
    s.emplace(std::string(3, 'z'));
    EXPECT_EQ(*s, "zzz");
    std::string moved = *std::move(s);
    EXPECT_EQ(moved, "zzz");
    typename I::template expected<std::string, int> t = std::string("v");
    EXPECT_EQ(std::move(t).value(), "v");
}

TYPED_TEST(ExpectedCompat, CopyMoveAndLifetimes) {
    using I = TypeParam;
    Tracked::live = 0;
    {
        typename I::template expected<Tracked, std::string> a = Tracked("one");
        EXPECT_EQ(Tracked::live, 1);
        auto b = a;  // copy
        EXPECT_EQ(Tracked::live, 2);
        auto c = std::move(a);  // move
        EXPECT_EQ(c->v, "one");
        EXPECT_EQ(Tracked::live, 3);
        b = typename I::template unexpected<std::string>("gone");  // the value is destroyed
        EXPECT_EQ(Tracked::live, 2);
        b = c;  // copy-assign a value over an error
        EXPECT_EQ(Tracked::live, 3);
        EXPECT_EQ(b->v, "one");
        // move-only values
        typename I::template expected<std::unique_ptr<int>, int> p = std::make_unique<int>(9);
        auto q = std::move(p);
        EXPECT_EQ(**q, 9);
    }
    EXPECT_EQ(Tracked::live, 0);
}

TYPED_TEST(ExpectedCompat, VoidSpecialisation) {
    using I = TypeParam;
    typename I::template expected<void, std::string> ok;
    EXPECT_TRUE(ok.has_value());
    EXPECT_NO_THROW(ok.value());
    typename I::template expected<void, std::string> bad{typename I::template unexpected<std::string>("no")};
    EXPECT_FALSE(bad);
    EXPECT_EQ(bad.error(), "no");
    EXPECT_THROW(bad.value(), typename I::template bad_access<std::string>);
    auto copy = bad;
    EXPECT_EQ(copy.error(), "no");
    copy.emplace();
    EXPECT_TRUE(copy);
    copy = typename I::template unexpected<std::string>("again");
    EXPECT_EQ(copy.error(), "again");
    using V = typename I::template expected<void, std::string>;
    EXPECT_TRUE(ok == V{});
    EXPECT_FALSE(ok == bad);
}

TYPED_TEST(ExpectedCompat, Comparisons) {
    using I = TypeParam;
    using X = typename I::template expected<int, std::string>;
    using U = typename I::template unexpected<std::string>;
    EXPECT_TRUE(X(1) == X(1));
    EXPECT_FALSE(X(1) == X(2));
    EXPECT_FALSE(X(1) == X(U("e")));
    EXPECT_TRUE(X(U("e")) == X(U("e")));
    EXPECT_TRUE(X(1) == 1);
    EXPECT_TRUE(X(U("e")) == U("e"));
    EXPECT_FALSE(X(1) == U("e"));
}

// The shapes the project uses (grep std::unexpected): CTAD, returning errors and values through
// ota::Expected, an Expected<void> built from an unexpected.
ota::Expected<int> half(int n) {
    if (n % 2 != 0) return ota::fail(ota::ErrorCode::config_invalid, "odd");
    return n / 2;
}
ota::Expected<int> quarter(int n) {
    auto h = half(n);
    if (!h) return std::unexpected(h.error());
    return half(*h);
}

TEST(ExpectedCompatProject, TheProjectsShapesWork) {
    EXPECT_EQ(*quarter(8), 2);
    auto q = quarter(6);
    ASSERT_FALSE(q);
    EXPECT_EQ(q.error().code, ota::ErrorCode::config_invalid);
    EXPECT_EQ(q.error().message, "odd");
    ota::Expected<void> v = ota::Expected<void>{std::unexpected(q.error())};
    EXPECT_FALSE(v);
    EXPECT_EQ(v.error().message, "odd");
#if defined(__clang__) && !defined(__cpp_lib_expected)
    static_assert(std::is_same_v<ota::Expected<int>, ota::expected_compat::expected<int, ota::Error>>);
#endif
}

}  // namespace
