#include <gtest/gtest.h>

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "services/common/otlp_json.h"
#include "services/common/tracer.h"

namespace dg::trace {
namespace {

Span sample_span() {
    Span s;
    s.trace_id = *[] {
        static TraceId t = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")->trace_id;
        return &t;
    }();
    s.span_id = {1, 2, 3, 4, 5, 6, 7, 8};
    s.parent_span_id = SpanId{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31};
    s.name = "deltagate.v1.Inference/Generate";
    s.kind = SpanKind::kServer;
    s.start_ns = 1700000000123456789ull;
    s.end_ns = 1700000000223456789ull;
    s.set("gen_ai.request.model", std::string("tiny"));
    s.set("gen_ai.usage.input_tokens", int64_t(42));
    s.set("gen_ai.request.temperature", 0.5);
    s.set("gen_ai.request.stream", true);
    s.set("gen_ai.response.finish_reasons", std::vector<std::string>{"stop", "length"});
    s.status = SpanStatus::kError;
    s.status_message = "boom";
    return s;
}

TEST(OtlpJson, FollowsTheJsonMappingRules) {
    const auto j = nlohmann::json::parse(encode_otlp_json({"deltagate-front", {}}, {sample_span()}));
    const auto& rs = j.at("resourceSpans").at(0);
    EXPECT_EQ(rs.at("resource").at("attributes").at(0).at("key"), "service.name");
    EXPECT_EQ(rs.at("resource").at("attributes").at(0).at("value").at("stringValue"), "deltagate-front");
    const auto& sp = rs.at("scopeSpans").at(0).at("spans").at(0);
    EXPECT_EQ(sp.at("traceId"), "0af7651916cd43dd8448eb211c80319c");  // hex, not base64
    EXPECT_EQ(sp.at("spanId"), "0102030405060708");
    EXPECT_EQ(sp.at("parentSpanId"), "b7ad6b7169203331");
    EXPECT_EQ(sp.at("kind"), 2);                                       // enums are integers
    EXPECT_EQ(sp.at("startTimeUnixNano"), "1700000000123456789");     // 64-bit as strings
    EXPECT_EQ(sp.at("endTimeUnixNano"), "1700000000223456789");
    EXPECT_EQ(sp.at("status").at("code"), 2);
    EXPECT_EQ(sp.at("status").at("message"), "boom");
    const auto& attrs = sp.at("attributes");
    EXPECT_EQ(attrs.at(0).at("value").at("stringValue"), "tiny");
    EXPECT_EQ(attrs.at(1).at("value").at("intValue"), "42");
    EXPECT_EQ(attrs.at(2).at("value").at("doubleValue"), 0.5);
    EXPECT_EQ(attrs.at(3).at("value").at("boolValue"), true);
    EXPECT_EQ(attrs.at(4).at("value").at("arrayValue").at("values").at(1).at("stringValue"), "length");
    // No snake_case keys anywhere.
    EXPECT_EQ(j.dump().find("trace_id"), std::string::npos);
}

TEST(OtlpJson, RootSpanHasNoParent) {
    Span s = sample_span();
    s.parent_span_id.reset();
    const auto j = nlohmann::json::parse(encode_otlp_json({"x", {}}, {s}));
    EXPECT_FALSE(j["resourceSpans"][0]["scopeSpans"][0]["spans"][0].contains("parentSpanId"));
}

TEST(OtlpJson, InvalidUtf8InAttributesDoesNotThrow) {
    Span s = sample_span();
    s.set("stop", std::string("\xff\xfe"));
    EXPECT_NO_THROW(nlohmann::json::parse(encode_otlp_json({"x", {}}, {s})));
}

TEST(TracerConfig, EndpointAndSampler) {
    setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/", 1);
    setenv("OTEL_SERVICE_NAME", "svc", 1);
    setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio", 1);
    setenv("OTEL_TRACES_SAMPLER_ARG", "0", 1);
    auto c = tracer_config_from_env("default");
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(c->enabled);
    EXPECT_EQ(c->url, "http://127.0.0.1:4318/v1/traces");
    EXPECT_EQ(c->resource.service_name, "svc");
    TraceContext parent{new_trace_id(), new_span_id(), true};
    EXPECT_TRUE(should_sample(*c, parent, parent.trace_id));   // the parent's decision wins
    parent.sampled = false;
    EXPECT_FALSE(should_sample(*c, parent, parent.trace_id));
    EXPECT_FALSE(should_sample(*c, std::nullopt, new_trace_id()));  // ratio 0 for roots

    setenv("OTEL_TRACES_SAMPLER", "nonsense", 1);
    EXPECT_FALSE(tracer_config_from_env("d").ok());
    setenv("OTEL_TRACES_SAMPLER", "always_on", 1);
    setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", 1);
    EXPECT_FALSE(tracer_config_from_env("d").ok());  // says it exports http/json only
    unsetenv("OTEL_EXPORTER_OTLP_PROTOCOL");
    setenv("OTEL_SDK_DISABLED", "true", 1);
    EXPECT_FALSE(tracer_config_from_env("d")->enabled);
    for (const char* v : {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER",
                          "OTEL_TRACES_SAMPLER_ARG", "OTEL_SDK_DISABLED"})
        unsetenv(v);
    EXPECT_FALSE(tracer_config_from_env("d")->enabled);  // no endpoint: off
}

TEST(TracerConfig, HttpUrls) {
    auto u = parse_http_url("http://collector:4318/v1/traces");
    ASSERT_TRUE(u.ok());
    EXPECT_EQ(u->host, "collector");
    EXPECT_EQ(u->port, 4318);
    EXPECT_EQ(u->path, "/v1/traces");
    EXPECT_FALSE(parse_http_url("https://collector/v1/traces").ok());
    EXPECT_FALSE(parse_http_url("http://:80/").ok());
}

TEST(Tracer, ADeadCollectorNeverBlocksSubmit) {
    TracerConfig c;
    c.enabled = true;
    c.url = "http://127.0.0.1:1/v1/traces";  // nothing listens on port 1
    c.max_queue = 4;
    c.timeout_ms = 200;
    Tracer t(c);
    for (int i = 0; i < 100; ++i) t.submit(sample_span());  // bounded queue: the rest are dropped
    EXPECT_GT(t.dropped(), 0u);
    t.flush();
    EXPECT_EQ(t.exported(), 0u);
    EXPECT_GT(t.failed_exports(), 0u);
}

}  // namespace
}  // namespace dg::trace
