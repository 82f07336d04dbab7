// The agent's state database (device-agent/src/store.hpp): status sequence numbers, which the
// controller uses to drop stale and repeated reports, so they must only ever increase.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "kit.hpp"
#include "store.hpp"

namespace {

namespace kit = ota::testkit;
using ota::agent::Store;

std::unique_ptr<Store> open_store(const std::filesystem::path& file) {
    auto s = Store::open(file);
    EXPECT_TRUE(s.has_value()) << s.error().describe();
    return s ? std::move(*s) : nullptr;
}

TEST(AgentStore, SequenceNumbersIncreaseWithinARunAndAcrossRestarts) {
    kit::TempDir tmp{"ota-agent-store"};
    const auto file = tmp / "agent.db";
    std::uint64_t last = 0;
    for (int run = 0; run < 3; ++run) {
        auto store = open_store(file);
        ASSERT_TRUE(store);
        // Past a block, so that a run hands out numbers it had to reserve twice.
        for (std::uint64_t i = 0; i < Store::seq_block + 5; ++i) {
            const auto seq = store->next_seq();
            EXPECT_FALSE(seq.unreserved) << seq.unreserved->describe();
            ASSERT_GT(seq.value, last) << "run " << run << ", number " << i;
            last = seq.value;
        }
        // What is on disk covers every number handed out, so the next run starts above them.
        auto reserved = store->get("seq");
        ASSERT_TRUE(reserved && *reserved);
        EXPECT_GE(std::stoull(**reserved), last);
    }
}

TEST(AgentStore, TheFirstNumberIsOneAndARestartSkipsWhatWasReservedOnly) {
    kit::TempDir tmp{"ota-agent-store"};
    const auto file = tmp / "agent.db";
    {
        auto store = open_store(file);
        ASSERT_TRUE(store);
        EXPECT_EQ(store->next_seq().value, 1u);
        EXPECT_EQ(store->next_seq().value, 2u);
    }
    auto store = open_store(file);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->next_seq().value, Store::seq_block + 1);
}

TEST(AgentStore, ASequenceValueThatIsNotANumberIsReportedAndCountingStartsOver) {
    kit::TempDir tmp{"ota-agent-store"};
    const auto file = tmp / "agent.db";
    {
        auto store = open_store(file);
        ASSERT_TRUE(store);
        ASSERT_TRUE(store->put("seq", "12x\xff"));
    }
    auto store = open_store(file);
    ASSERT_TRUE(store);
    const auto seq = store->next_seq();
    EXPECT_EQ(seq.value, 1u);
    ASSERT_TRUE(seq.unreserved);
    EXPECT_NE(seq.unreserved->message.find("is not a number"), std::string::npos) << seq.unreserved->message;
    EXPECT_NE(seq.unreserved->message.find(file.string()), std::string::npos) << seq.unreserved->message;
    EXPECT_FALSE(store->next_seq().unreserved);  // the new reservation was written
}

}  // namespace
