// Integration: one `deltagate front` and two `deltagate worker` processes on loopback (built-in tiny
// model, CPU), driven over the public gRPC API. Nothing here asserts on time.
#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/unit/front/cluster.h"

namespace dg::front::testing {
namespace {

namespace v1 = ::deltagate::v1;
using namespace std::chrono_literals;

std::unique_ptr<grpc::ClientContext> ctx_with_deadline(std::chrono::milliseconds d = 120s) {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + d);
    return c;
}

class FrontCluster : public ::testing::Test {
protected:
    void SetUp() override {
        cluster_ = std::make_unique<Cluster>(ClusterOptions{});
        ASSERT_GT(cluster_->port, 0) << "the front did not print its port";
        ASSERT_TRUE(cluster_->wait_ready(2)) << "workers did not become healthy";
    }
    StreamResult generate(const v1::GenerateRequest& req) {
        auto ctx = ctx_with_deadline();
        auto reader = cluster_->stub->Generate(ctx.get(), req);
        return drain(reader);
    }
    std::unique_ptr<Cluster> cluster_;
};

TEST_F(FrontCluster, StreamsTokenIdsWithFinalUsage) {
    auto r = generate(ids_request({1, 2, 3, 4, 5}, 8));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids(0).size(), 8u);
    ASSERT_EQ(r.finished.size(), 1u);
    EXPECT_EQ(r.finished[0].finish_reason(), v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(r.finished[0].completion_tokens(), 8);
    ASSERT_TRUE(r.final_msg.has_value());
    EXPECT_EQ(r.final_msg->usage().prompt_tokens(), 5);
    EXPECT_EQ(r.final_msg->usage().completion_tokens(), 8);
    EXPECT_FALSE(r.final_msg->worker().empty());
    EXPECT_FALSE(r.final_msg->request_id().empty());
    // Greedy is deterministic: the same request gives the same tokens (now from the cache, maybe elsewhere).
    auto again = generate(ids_request({1, 2, 3, 4, 5}, 8));
    ASSERT_TRUE(again.status.ok());
    EXPECT_EQ(again.ids(0), r.ids(0));
}

TEST_F(FrontCluster, ParallelSamplesAndStopTokens) {
    auto req = ids_request({9, 8, 7}, 6);
    req.set_n(3);
    req.mutable_sampling()->set_temperature(1.0f);
    req.mutable_sampling()->set_seed(42);
    auto r = generate(req);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    std::set<int> idx;
    for (const auto& f : r.finished) idx.insert(f.index());
    EXPECT_EQ(idx, (std::set<int>{0, 1, 2}));
    EXPECT_EQ(r.final_msg->usage().completion_tokens(), 18);

    // A stop token id ends the continuation with STOP and names the token.
    auto greedy = generate(ids_request({1, 2, 3}, 8));
    ASSERT_TRUE(greedy.status.ok());
    const int32_t third = greedy.ids(0).at(2);
    auto stop = ids_request({1, 2, 3}, 8);
    stop.mutable_stop()->add_stop_token_ids(third);
    auto s = generate(stop);
    ASSERT_TRUE(s.status.ok());
    ASSERT_EQ(s.finished.size(), 1u);
    EXPECT_EQ(s.finished[0].finish_reason(), v1::FINISH_REASON_STOP);
    EXPECT_EQ(s.finished[0].matched_stop_token_id(), third);
}

TEST_F(FrontCluster, BatchGenerateFansOutOnOneWorker) {
    v1::BatchGenerateRequest req;
    for (int i = 1; i <= 40; ++i) req.mutable_prefix()->mutable_token_ids()->add_ids(i);
    req.mutable_default_stop()->set_max_tokens(5);
    req.mutable_default_stop()->set_ignore_eos(true);
    for (int k = 0; k < 3; ++k) {
        auto* c = req.add_continuations();
        c->mutable_token_ids()->add_ids(100 + k);  // own suffix: sibling requests sharing the 40-token prefix
    }
    auto* same = req.add_continuations();  // no suffix, own sampling
    same->mutable_sampling()->set_temperature(0.8f);
    same->mutable_sampling()->set_seed(7);
    auto ctx = ctx_with_deadline();
    auto reader = cluster_->stub->BatchGenerate(ctx.get(), req);
    auto r = drain(reader);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    std::set<int> idx;
    for (const auto& f : r.finished) {
        idx.insert(f.index());
        EXPECT_EQ(f.completion_tokens(), 5);
    }
    EXPECT_EQ(idx, (std::set<int>{0, 1, 2, 3}));
    ASSERT_TRUE(r.final_msg.has_value());
    EXPECT_EQ(r.final_msg->usage().completion_tokens(), 20);
    // The siblings started after the first had prefilled: they resumed from its prefix checkpoint.
    EXPECT_GT(r.final_msg->usage().cached_tokens_device() + r.final_msg->usage().cached_tokens_host(), 0);
}

TEST_F(FrontCluster, AbortEndsTheStreamWithCancelled) {
    auto req = ids_request({1, 2, 3}, 4000);
    req.set_request_id("abort-me");
    auto ctx = ctx_with_deadline();
    auto reader = cluster_->stub->Generate(ctx.get(), req);
    v1::GenerateResponse m;
    ASSERT_TRUE(reader->Read(&m));  // running
    grpc::ClientContext actx;
    v1::AbortRequest ar;
    ar.add_request_ids("abort-me");
    ar.add_request_ids("never-existed");
    v1::AbortResponse resp;
    ASSERT_TRUE(cluster_->stub->Abort(&actx, ar, &resp).ok());
    EXPECT_EQ(resp.found(), 1);
    auto r = drain(reader);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED) << r.status.error_message();
    // The workers are free again: a new request runs.
    EXPECT_TRUE(generate(ids_request({4, 5}, 3)).status.ok());
}

// Behind a load balancer the Abort may reach another front replica than the stream's: that replica
// asks the workers, which end the legs sent under the id, and the stream's replica ends it CANCELLED.
TEST_F(FrontCluster, AbortReachesAStreamOnAnotherReplica) {
    std::string workers;
    for (const auto& a : cluster_->worker_addrs) workers += (workers.empty() ? "" : ",") + a;
    int out = -1;
    const pid_t other = spawn({deltagate_binary(), "front", "--listen", "127.0.0.1:0", "--workers", workers}, {}, &out);
    const std::string line = read_line(out);
    ::close(out);
    int port = 0;
    std::sscanf(line.c_str(), "front listening on port %d", &port);
    ASSERT_GT(port, 0) << line;
    auto other_stub = v1::Inference::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));

    auto req = ids_request({1, 2, 3}, 4000);
    req.set_request_id("abort-elsewhere");
    req.set_n(2);
    auto ctx = ctx_with_deadline();
    auto reader = cluster_->stub->Generate(ctx.get(), req);
    v1::GenerateResponse m;
    ASSERT_TRUE(reader->Read(&m));  // running on a worker, streamed by the first replica
    int found = 0;
    const grpc::Status st = abort_until_found(*other_stub, "abort-elsewhere", 100, &found);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(found, 1);
    auto r = drain(reader);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED) << r.status.error_message();
    EXPECT_NE(r.status.error_message().find("aborted"), std::string::npos) << r.status.error_message();
    ::kill(other, SIGTERM);
    ::waitpid(other, nullptr, 0);
    EXPECT_TRUE(generate(ids_request({4, 5}, 3)).status.ok());
}

TEST_F(FrontCluster, DeadlineAndClientCancelPropagate) {
    auto ctx = ctx_with_deadline(1500ms);
    auto reader = cluster_->stub->Generate(ctx.get(), ids_request({1, 2, 3}, 4000));
    auto r = drain(reader);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << r.status.error_message();

    grpc::ClientContext c2;
    auto reader2 = cluster_->stub->Generate(&c2, ids_request({1, 2, 3}, 4000));
    v1::GenerateResponse m;
    ASSERT_TRUE(reader2->Read(&m));
    c2.TryCancel();
    while (reader2->Read(&m)) {
    }
    EXPECT_EQ(reader2->Finish().error_code(), grpc::StatusCode::CANCELLED);
    EXPECT_TRUE(generate(ids_request({6, 7}, 3)).status.ok());
}

TEST_F(FrontCluster, BadInputsGetActionableErrors) {
    struct Case {
        v1::GenerateRequest req;
        grpc::StatusCode code;
        std::string needle;
    };
    std::vector<Case> cases;
    cases.push_back({ids_request({1, 99999}, 4), grpc::StatusCode::INVALID_ARGUMENT, "not a token id"});
    cases.push_back({v1::GenerateRequest(), grpc::StatusCode::INVALID_ARGUMENT, "prompt is empty"});
    auto n = ids_request({1}, 4);
    n.set_n(1000);
    cases.push_back({n, grpc::StatusCode::INVALID_ARGUMENT, "--max-fanout"});
    auto t = ids_request({1}, 4);
    t.mutable_sampling()->set_temperature(-2);
    cases.push_back({t, grpc::StatusCode::INVALID_ARGUMENT, "temperature"});
    auto mt = ids_request({1}, 1 << 20);
    cases.push_back({mt, grpc::StatusCode::INVALID_ARGUMENT, "--max-tokens"});
    v1::GenerateRequest text;
    text.mutable_prompt()->set_text("hello");
    cases.push_back({text, grpc::StatusCode::FAILED_PRECONDITION, "tokenizer"});
    auto model = ids_request({1}, 4);
    model.set_model("gpt-4");
    cases.push_back({model, grpc::StatusCode::NOT_FOUND, "ListModels"});
    for (const auto& c : cases) {
        auto r = generate(c.req);
        EXPECT_EQ(r.status.error_code(), c.code) << r.status.error_message();
        EXPECT_NE(r.status.error_message().find(c.needle), std::string::npos) << r.status.error_message();
    }
}

TEST_F(FrontCluster, WorkerKilledMidRunMigratesItsStream) {
    // Both idle: the first stream goes to worker 0 (ties go to the first), the second to worker 1 (load).
    auto ca = ctx_with_deadline();
    auto a = cluster_->stub->Generate(ca.get(), ids_request({1, 2, 3}, 600));
    v1::GenerateResponse m;
    ASSERT_TRUE(a->Read(&m));
    const int first_a = m.delta().token_ids_size();
    auto cb = ctx_with_deadline();
    auto b = cluster_->stub->Generate(cb.get(), ids_request({4, 5, 6}, 200));
    ASSERT_TRUE(b->Read(&m));
    cluster_->kill_worker(0);
    auto ra = drain(a);
    auto rb = drain(b);
    // Stream a went on on worker 1 from where it was (tests/unit/front/reliability_test.cpp checks the tokens).
    EXPECT_TRUE(ra.status.ok()) << ra.status.error_message();
    EXPECT_EQ(first_a + int(ra.ids(0).size()), 600);
    EXPECT_TRUE(rb.status.ok()) << rb.status.error_message();
    ASSERT_TRUE(rb.final_msg.has_value());
    EXPECT_EQ(rb.final_msg->worker(), cluster_->worker_addrs[1]);
    // New requests keep working on the survivor (retried before the first token if routed to the dead one).
    for (int i = 0; i < 3; ++i) {
        auto r = generate(ids_request({10 + i, 11}, 3));
        EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    }
}

// Prometheus text format 0.0.4: every sample line is `name{labels} value`.
TEST_F(FrontCluster, MetricsParseAsPrometheusText) {
    ASSERT_TRUE(generate(ids_request({1, 2}, 4)).status.ok());
    const std::string text = http_get(cluster_->metrics_port, "/metrics");
    ASSERT_FALSE(text.empty());
    const std::regex sample(R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.eE+\-]+|[+-]Inf|NaN$)");
    std::istringstream in(text);
    std::string line;
    int samples = 0;
    bool ok_counter = false, ttft_inf = false;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        EXPECT_TRUE(std::regex_match(line, sample)) << line;
        ++samples;
        ok_counter |= line.rfind("deltagate_front_requests_total{rpc=\"Generate\",code=\"OK\",protocol=\"grpc\"} ", 0) == 0;
        ttft_inf |= line.rfind("deltagate_front_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1", 0) == 0;
    }
    EXPECT_GT(samples, 10);
    EXPECT_TRUE(ok_counter) << text;
    EXPECT_TRUE(ttft_inf) << text;
    EXPECT_NE(text.find("deltagate_front_routing_decisions_total{"), std::string::npos);
    EXPECT_NE(text.find("deltagate_front_workers{state=\"healthy\"} 2"), std::string::npos);
}

// Traces: the client's traceparent is continued by the front and passed to the worker.
TEST(FrontTracing, OneTraceAcrossFrontAndWorker) {
    OtlpReceiver otlp;
    ClusterOptions o;
    o.env = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:" + std::to_string(otlp.port()),
             "OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_TRACES_SAMPLER=parentbased_always_on"};
    Cluster c(o);
    ASSERT_TRUE(c.wait_ready(2));
    const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736", client_span = "00f067aa0ba902b7";
    grpc::ClientContext ctx;
    ctx.AddMetadata("traceparent", "00-" + trace + "-" + client_span + "-01");
    auto reader = c.stub->Generate(&ctx, ids_request({1, 2, 3}, 4));
    ASSERT_TRUE(drain(reader).status.ok());

    // Collect spans of that trace (bounded wait: the exporter batches every 100 ms).
    std::map<std::string, nlohmann::json> spans;  // span id -> span (+ "service")
    for (int i = 0; i < 100; ++i) {
        spans.clear();
        for (const auto& body : otlp.bodies()) {
            auto j = nlohmann::json::parse(body, nullptr, false);
            ASSERT_FALSE(j.is_discarded()) << body;
            for (const auto& rs : j["resourceSpans"]) {
                std::string service;
                for (const auto& a : rs["resource"]["attributes"])
                    if (a["key"] == "service.name") service = a["value"]["stringValue"];
                for (const auto& ss : rs["scopeSpans"])
                    for (auto s : ss["spans"]) {
                        EXPECT_EQ(s["traceId"], trace) << s.dump();
                        s["service"] = service;
                        spans[s["spanId"]] = s;
                    }
            }
        }
        bool have_client_span = false, have_worker_decode = false;
        for (auto& [id, s] : spans) {
            have_client_span |= s["kind"] == 3;
            have_worker_decode |= s["name"] == "decode";
        }
        if (have_client_span && have_worker_decode) break;
        std::this_thread::sleep_for(100ms);
    }
    const nlohmann::json *server = nullptr, *gen = nullptr, *call = nullptr;
    for (auto& [id, s] : spans) {
        if (s["name"] == "deltagate.v1.Inference/Generate") server = &s;
        if (s["name"].get<std::string>().rfind("text_completion ", 0) == 0) gen = &s;
        if (s["name"] == "deltagate.worker.v1.Worker/Generate" && s["kind"] == 3) call = &s;  // the front's CLIENT
    }
    ASSERT_TRUE(server && gen && call) << "spans received: " << spans.size();
    EXPECT_EQ((*server)["parentSpanId"], client_span);  // the client's traceparent honoured
    EXPECT_EQ((*server)["kind"], 2);
    EXPECT_EQ((*gen)["parentSpanId"], (*server)["spanId"]);
    EXPECT_EQ((*call)["parentSpanId"], (*gen)["spanId"]);
    bool usage = false;
    for (const auto& a : (*gen)["attributes"]) usage |= a["key"] == "gen_ai.usage.output_tokens" && a["value"]["intValue"] == "4";
    EXPECT_TRUE(usage) << gen->dump();
    // The worker continues the trace under the front's worker-call span: its SERVER span, then one
    // child per phase, all exported by the worker process (its own service name).
    const nlohmann::json* wserver = nullptr;
    std::map<std::string, const nlohmann::json*> phases;
    for (auto& [id, s] : spans) {
        if (s["service"] == "deltagate-front") continue;
        EXPECT_EQ(s["service"], "deltagate-worker") << s.dump();
        if (s["name"] == "deltagate.worker.v1.Worker/Generate") wserver = &s;
        else phases[s["name"]] = &s;
    }
    ASSERT_TRUE(wserver) << "the worker exported no SERVER span";
    EXPECT_EQ((*wserver)["kind"], 2);
    EXPECT_EQ((*wserver)["parentSpanId"], (*call)["spanId"]);
    for (const char* phase : {"queue", "prefill", "decode"}) {
        ASSERT_TRUE(phases.count(phase)) << "no worker span " << phase;
        EXPECT_EQ((*phases[phase])["parentSpanId"], (*wserver)["spanId"]) << phase;
        // Nested in time too (the OTLP JSON times are decimal strings of Unix nanoseconds).
        EXPECT_GE(std::stoull((*phases[phase])["startTimeUnixNano"].get<std::string>()),
                  std::stoull((*wserver)["startTimeUnixNano"].get<std::string>()));
        EXPECT_LE(std::stoull((*phases[phase])["endTimeUnixNano"].get<std::string>()),
                  std::stoull((*wserver)["endTimeUnixNano"].get<std::string>()));
    }
    bool worker_usage = false;
    for (const auto& a : (*wserver)["attributes"])
        worker_usage |= a["key"] == "gen_ai.usage.output_tokens" && a["value"]["intValue"] == "4";
    EXPECT_TRUE(worker_usage) << wserver->dump();
}

}  // namespace
}  // namespace dg::front::testing
