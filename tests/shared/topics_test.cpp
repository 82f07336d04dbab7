#include <gtest/gtest.h>

#include "ota/topics.hpp"

using ota::Topics;

TEST(Topics, NamesEveryTopicOfTheTree) {
    const Topics t;
    EXPECT_EQ(t.release("detection-model", "stable"), "ota/v1/releases/detection-model/stable");
    EXPECT_EQ(t.wave("plant-a", "canary", "annotations"), "ota/v1/fleets/plant-a/waves/canary/annotations");
    EXPECT_EQ(t.assignment("device-001"), "ota/v1/devices/device-001/assignment");
    EXPECT_EQ(t.cmd("device-001"), "ota/v1/devices/device-001/cmd");
    EXPECT_EQ(t.status("device-001", "x"), "ota/v1/devices/device-001/status/x");
    EXPECT_EQ(t.inventory("d"), "ota/v1/devices/d/inventory");
    EXPECT_EQ(t.online("d"), "ota/v1/devices/d/online");
    EXPECT_EQ(t.rollout("r1"), "ota/v1/rollouts/r1");
    EXPECT_EQ(t.alert("r1"), "ota/v1/alerts/r1");
    EXPECT_EQ(t.control_request("alice"), "ota/v1/control/request/alice");
    EXPECT_EQ(t.control_request_filter(), "ota/v1/control/request/+");
    EXPECT_EQ(t.control_reply("op"), "ota/v1/control/reply/op");
    EXPECT_EQ(t.status_filter(), "ota/v1/devices/+/status/+");
    EXPECT_EQ(Topics("site/ota/").release("a", "b"), "site/ota/releases/a/b");
}

TEST(Topics, ParsesWhatItNames) {
    const Topics t;
    auto s = t.parse(t.status("device-007", "agent"));
    ASSERT_TRUE(s);
    EXPECT_EQ(s->kind, Topics::Kind::status);
    EXPECT_EQ(s->a, "device-007");
    EXPECT_EQ(s->b, "agent");
    auto w = t.parse(t.wave("f", "early", "c"));
    ASSERT_TRUE(w);
    EXPECT_EQ(w->kind, Topics::Kind::wave);
    EXPECT_EQ(w->c, "c");
    EXPECT_EQ(t.parse(t.release("c", "stable"))->kind, Topics::Kind::release);
    EXPECT_FALSE(t.parse("ota/v2/releases/a/b"));
    EXPECT_FALSE(t.parse("ota/v1/devices/d/status"));
    EXPECT_FALSE(t.parse("ota/v1/devices//inventory"));
    EXPECT_FALSE(t.parse("ota/v1"));
    auto c = t.parse(t.control_request("alice"));
    ASSERT_TRUE(c);
    EXPECT_EQ(c->kind, Topics::Kind::control_request);
    EXPECT_EQ(c->a, "alice");
    EXPECT_FALSE(t.parse("ota/v1/control/request"));  // the old, unauthenticated topic
    EXPECT_FALSE(t.parse("ota/v1/control/request/a/b"));
    EXPECT_EQ(t.summary(), "ota/v1/summary");
    EXPECT_EQ(t.parse(t.summary())->kind, Topics::Kind::summary);
    EXPECT_FALSE(t.parse("ota/v1/summary/x"));
}

TEST(Topics, SegmentsRejectWildcardsAndSeparators) {
    for (const char* ok : {"a", "detection-model", "arm64_2026-03-01", "v1.2"}) EXPECT_TRUE(ota::is_valid_segment(ok)) << ok;
    for (const char* bad : {"", "a/b", "+", "#", "a b", "..", ".", "é"}) EXPECT_FALSE(ota::is_valid_segment(bad)) << bad;
    EXPECT_FALSE(ota::is_valid_segment(std::string(65, 'a')));
    auto e = ota::check_segment("component", "a/b");
    ASSERT_FALSE(e);
    EXPECT_NE(e.error().message.find("component 'a/b'"), std::string::npos);
}
