// The HTTP API on a real front + worker (cluster.h): an HTTP request's W3C traceparent header is continued
// by the same server span a gRPC call gets (marked deltagate.protocol=http), a token-id completion works
// without a tokenizer, and the request is counted under protocol="http".
#include <gtest/gtest.h>

#include <map>

#include <nlohmann/json.hpp>

#include "tests/unit/front/cluster.h"

namespace dg::front::testing {
namespace {

using namespace std::chrono_literals;

// POST a JSON body over HTTP/1.1 with extra headers; returns the raw response ("" on failure).
std::string http_post(int port, const std::string& path, const std::string& body, const std::string& headers) {
    return http_exchange(port, "POST " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n" +
                                   headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
}

TEST(FrontHttp, TraceparentAndProtocolLabel) {
    OtlpReceiver otlp;
    ClusterOptions o;
    o.workers = 1;
    const int http_port = free_port();
    o.front_args = {"--http-listen", "127.0.0.1:" + std::to_string(http_port)};
    o.env = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:" + std::to_string(otlp.port()),
             "OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_TRACES_SAMPLER=parentbased_always_on"};
    Cluster c(o);
    ASSERT_TRUE(c.wait_ready(1));
    const std::string trace = "0af7651916cd43dd8448eb211c80319c", client_span = "b7ad6b7169203331";
    const std::string resp = http_post(http_port, "/v1/completions",
                                       R"({"prompt":[1,2,3],"max_tokens":4,"ignore_eos":true})",
                                       "traceparent: 00-" + trace + "-" + client_span + "-01\r\n");
    ASSERT_EQ(resp.rfind("HTTP/1.1 200 ", 0), 0u) << resp;
    const auto body = nlohmann::json::parse(resp.substr(resp.find("\r\n\r\n") + 4));
    EXPECT_EQ(body["usage"]["completion_tokens"], 4) << body.dump();
    EXPECT_EQ(body["usage"]["prompt_tokens"], 3);

    const nlohmann::json* server = nullptr;
    std::vector<nlohmann::json> spans;
    for (int i = 0; i < 100 && !server; ++i) {
        spans.clear();
        for (const auto& b : otlp.bodies()) {
            auto j = nlohmann::json::parse(b, nullptr, false);
            for (const auto& rs : j["resourceSpans"])
                for (const auto& ss : rs["scopeSpans"])
                    for (const auto& s : ss["spans"]) spans.push_back(s);
        }
        for (const auto& s : spans)
            if (s["name"] == "deltagate.v1.Inference/Generate" && s["traceId"] == trace) server = &s;
        if (!server) std::this_thread::sleep_for(100ms);
    }
    ASSERT_TRUE(server) << spans.size() << " spans, none the HTTP request's server span";
    EXPECT_EQ((*server)["parentSpanId"], client_span);
    bool http = false;
    for (const auto& a : (*server)["attributes"])
        http |= a["key"] == "deltagate.protocol" && a["value"]["stringValue"] == "http";
    EXPECT_TRUE(http) << server->dump();
    bool worker_span = false;  // the worker continued the same trace
    for (const auto& s : spans) worker_span |= s["name"] == "decode" && s["traceId"] == trace;
    EXPECT_TRUE(worker_span);

    const std::string metrics = http_get(c.metrics_port, "/metrics");
    EXPECT_NE(metrics.find("deltagate_front_requests_total{rpc=\"Generate\",code=\"OK\",protocol=\"http\"} 1"),
              std::string::npos)
        << metrics;
}

}  // namespace
}  // namespace dg::front::testing
