#include "services/common/trace_context.h"

#include <gtest/gtest.h>

namespace dg::trace {
namespace {

TEST(TraceParent, ParsesTheSpecExample) {
    auto c = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(to_hex(c->trace_id), "0af7651916cd43dd8448eb211c80319c");
    EXPECT_EQ(to_hex(c->span_id), "b7ad6b7169203331");
    EXPECT_TRUE(c->sampled);
    EXPECT_EQ(format_traceparent(*c), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
}

TEST(TraceParent, NotSampledFlag) {
    auto c = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
    ASSERT_TRUE(c.has_value());
    EXPECT_FALSE(c->sampled);
}

TEST(TraceParent, RejectsInvalidHeaders) {
    for (const char* bad : {
             "",
             "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",        // no flags
             "00-00000000000000000000000000000000-b7ad6b7169203331-01",     // zero trace id
             "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",     // zero span id
             "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",     // version ff
             "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",     // upper case
             "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-xx",  // v00 with extra fields
             "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
             "0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
         })
        EXPECT_FALSE(parse_traceparent(bad).has_value()) << bad;
}

TEST(TraceParent, LaterVersionsReadByTheirFirstFourFields) {
    auto c = parse_traceparent("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-holds");
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(to_hex(c->span_id), "b7ad6b7169203331");
}

TEST(TraceParent, NewIdsAreNonZeroAndDistinct) {
    auto a = new_trace_id(), b = new_trace_id();
    EXPECT_NE(a, TraceId{});
    EXPECT_NE(a, b);
    EXPECT_NE(new_span_id(), SpanId{});
}

}  // namespace
}  // namespace dg::trace
