// The rest of the worker's surface: bad input codes, GetInfo, WatchLoad, grpc.health.v1, reflection
// being registered, and /metrics scraped over HTTP and parsed strictly.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/impl/codegen/client_unary_call.h>

#include "absl/strings/numbers.h"
#include "tests/support/grpc_health.h"
#include "tests/unit/worker/prom_parser.h"
#include "tests/unit/worker/worker_test_util.h"

namespace dg::worker::testing {
namespace {

void expect_code(Worker& w, const pb::GenerateRequest& req, grpc::StatusCode code, const std::string& words) {
    Result r = w.generate(req);
    EXPECT_EQ(r.status.error_code(), code) << r.status.error_message();
    EXPECT_NE(r.status.error_message().find(words), std::string::npos) << r.status.error_message();
    EXPECT_TRUE(r.events.empty());
}

TEST(Api, BadInputCodes) {
    WorkerOptions o = test_options();
    o.sched.max_seq_len = 64;
    o.cache.n_blocks = 8;  // 8 x 16 tokens
    Worker w(o);
    expect_code(w, greedy({}, 4), grpc::StatusCode::INVALID_ARGUMENT, "empty");
    expect_code(w, greedy({1, 999}, 4), grpc::StatusCode::INVALID_ARGUMENT, "vocabulary");
    expect_code(w, greedy({1, -1}, 4), grpc::StatusCode::INVALID_ARGUMENT, "vocabulary");
    expect_code(w, greedy(iota_prompt(65), 4), grpc::StatusCode::INVALID_ARGUMENT, "context");
    expect_code(w, greedy({1, 2}, -3), grpc::StatusCode::INVALID_ARGUMENT, "max_tokens");
    expect_code(w, greedy({1, 2}, 4, 100), grpc::StatusCode::INVALID_ARGUMENT, "n must be");
    pb::GenerateRequest r = greedy({1, 2}, 4);
    r.mutable_sampling()->set_temperature(-1);
    expect_code(w, r, grpc::StatusCode::INVALID_ARGUMENT, "temperature");
    r = greedy({1, 2}, 4);
    r.mutable_sampling()->set_top_p(1.5f);
    expect_code(w, r, grpc::StatusCode::INVALID_ARGUMENT, "top_p");
    r = greedy({1, 2}, 4);
    r.mutable_sampling()->set_repetition_penalty(-1.f);
    expect_code(w, r, grpc::StatusCode::INVALID_ARGUMENT, "repetition_penalty");
    r = greedy({1, 2}, 4);
    r.mutable_sampling()->set_frequency_penalty(5.f);
    expect_code(w, r, grpc::StatusCode::INVALID_ARGUMENT, "frequency_penalty");
    r = greedy({1, 2}, 4);
    r.set_top_logprobs(1000);
    expect_code(w, r, grpc::StatusCode::INVALID_ARGUMENT, "top_logprobs");
    r = greedy({1, 2}, 4);
    r.add_stop_token_ids(4096);
    expect_code(w, r, grpc::StatusCode::INVALID_ARGUMENT, "stop token");
    r = greedy({1, 2}, 4);
    r.add_checkpoint_at(7);
    expect_code(w, r, grpc::StatusCode::INVALID_ARGUMENT, "checkpoint hint");
    w.expect_idle_and_sound();

    // A prompt that could never fit this worker's KV pool (but fits the context).
    WorkerOptions small = test_options();
    small.cache.n_blocks = 2;
    Worker tiny(small);
    expect_code(tiny, greedy(iota_prompt(40), 4), grpc::StatusCode::RESOURCE_EXHAUSTED, "can never run");

    // Metrics counted every rejection by code.
    Scrape s = parse_prometheus(w.server->registry().render());
    ASSERT_EQ(s.error, "");
    EXPECT_EQ(s.get("deltagate_requests_total", {{"code", "INVALID_ARGUMENT"}}), 13);
}

// A second worker on a port another one listens on fails to start with a clear error (gRPC's default
// SO_REUSEPORT would let both listen and split the front's connections between them).
TEST(Api, SecondWorkerOnATakenPortFailsToStart) {
    Worker first(test_options());
    ASSERT_TRUE(first.server);
    WorkerOptions o = test_options();
    o.listen = first.server->address();
    auto second = WorkerServer::start(o);
    ASSERT_FALSE(second.ok()) << "two workers listen on " << o.listen;
    EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
    EXPECT_NE(second.status().message().find("cannot listen on " + o.listen), std::string::npos) << second.status();
}

TEST(Api, GetInfo) {
    Worker w(test_options());
    grpc::ClientContext ctx;
    pb::WorkerInfo info;
    ASSERT_TRUE(w.stub->GetInfo(&ctx, pb::GetInfoRequest(), &info).ok());
    EXPECT_EQ(info.vocab_size(), 256);
    EXPECT_EQ(info.backend(), "cpu-exact");
    EXPECT_EQ(info.kv_type(), "f32");
    EXPECT_EQ(info.kv_blocks(), 256);
    EXPECT_EQ(info.max_running(), 4);
    EXPECT_EQ(info.worker_id(), w.server->address());
    EXPECT_EQ(info.eos_token_ids_size(), 1);
    EXPECT_GT(info.max_seq_len(), 0);
    EXPECT_EQ(info.max_top_logprobs(), sched::kMaxTopLogprobs);
}

TEST(Api, WatchLoadReportsLoadAndCheckpoints) {
    Worker w(test_options());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));  // hang guard only
    pb::WatchLoadRequest wr;
    wr.set_interval_ms(1);
    auto reader = w.stub->WatchLoad(&ctx, wr);
    pb::LoadReport rep;
    ASSERT_TRUE(reader->Read(&rep));  // the current report, at once
    EXPECT_EQ(rep.kv_blocks_total(), 256);
    EXPECT_EQ(rep.seq_slots_total(), 4);
    EXPECT_EQ(rep.running(), 0);
    EXPECT_EQ(rep.checkpoints_size(), 0);
    EXPECT_EQ(rep.worker_id(), w.server->address());
    EXPECT_FALSE(rep.draining());

    // After a request, the end-of-prompt and end-of-generation checkpoints show up with their keys.
    Result r = w.generate(greedy(iota_prompt(33), 5));
    ASSERT_TRUE(r.status.ok());
    bool seen = false;
    while (!seen && reader->Read(&rep)) {
        for (const auto& c : rep.checkpoints())
            if (c.position() == 33 && !c.host() && c.key() != 0) seen = rep.running() == 0;
    }
    EXPECT_TRUE(seen);
    EXPECT_GT(rep.checkpoints_device(), 0);
    ctx.TryCancel();
    while (reader->Read(&rep)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

int health(Worker& w, const std::string& service, grpc::Status* st) {
    return dg::testing::grpc_health_check(w.channel.get(), service, st);
}

TEST(Api, HealthServingAndReflectionRegistered) {
    Worker w(test_options());
    grpc::Status st;
    EXPECT_EQ(health(w, "", &st), 1) << st.error_message();
    EXPECT_EQ(health(w, kWorkerServiceName, &st), 1) << st.error_message();
    EXPECT_EQ(health(w, "no.such.Service", &st), -1);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);

    // Reflection answers on its v1alpha service (an empty bidi stream: the method exists).
    grpc::GenericStub generic(w.channel);
    grpc::ClientContext ctx;
    grpc::CompletionQueue cq;
    auto call = generic.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
    call->StartCall(reinterpret_cast<void*>(1));
    void* tag;
    bool ok;
    ASSERT_TRUE(cq.Next(&tag, &ok));
    call->WritesDone(reinterpret_cast<void*>(2));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    grpc::Status rst;
    call->Finish(&rst, reinterpret_cast<void*>(3));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    EXPECT_TRUE(rst.ok()) << rst.error_code() << " " << rst.error_message();
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }

    // Draining flips health to NOT_SERVING.
    w.server->core().start_draining();
    w.server->drain();
}

// GET http://127.0.0.1:port/metrics over a plain socket.
std::string http_get(int port, const std::string& path, int* status) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return {};
    }
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    (void)!::write(fd, req.data(), req.size());
    std::string resp;
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) resp.append(buf, size_t(n));
    ::close(fd);
    *status = 0;
    if (resp.rfind("HTTP/1.1 ", 0) == 0) (void)absl::SimpleAtoi(resp.substr(9, 3), status);
    return resp;
}

TEST(Api, MetricsScrapedOverHttp) {
    Worker w(test_options());
    ASSERT_TRUE(w.generate(greedy(iota_prompt(20), 6)).status.ok());
    std::vector<int32_t> longer = iota_prompt(20);
    for (int32_t t : {3, 1, 4, 1, 5}) longer.push_back(t);
    ASSERT_TRUE(w.generate(greedy(longer, 6, 2)).status.ok());  // resumes from turn 1's checkpoints
    EXPECT_EQ(w.generate(greedy({}, 1)).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    w.expect_idle_and_sound();

    const int port = std::stoi(w.server->metrics_address().substr(w.server->metrics_address().rfind(':') + 1));
    int status = 0;
    const std::string resp = http_get(port, "/metrics", &status);
    ASSERT_EQ(status, 200) << resp;
    EXPECT_NE(resp.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), std::string::npos);
    const std::string body = resp.substr(resp.find("\r\n\r\n") + 4);
    const Scrape s = parse_prometheus(body);
    ASSERT_EQ(s.error, "") << body;

    EXPECT_EQ(s.type.at("deltagate_requests_total"), "counter");
    EXPECT_EQ(s.type.at("deltagate_time_to_first_token_seconds"), "histogram");
    EXPECT_EQ(s.type.at("deltagate_inter_token_latency_seconds"), "histogram");
    EXPECT_EQ(s.type.at("deltagate_num_requests_running"), "gauge");
    EXPECT_EQ(s.get("deltagate_requests_total", {{"code", "OK"}}), 2);
    EXPECT_EQ(s.get("deltagate_requests_total", {{"code", "INVALID_ARGUMENT"}}), 1);
    EXPECT_EQ(s.get("deltagate_prompt_tokens_total"), 45);
    EXPECT_EQ(s.get("deltagate_generation_tokens_total"), 18);
    EXPECT_EQ(s.get("deltagate_time_to_first_token_seconds_count"), 2);
    EXPECT_EQ(s.get("deltagate_inter_token_latency_seconds_count"), 5 + 2 * 5);
    EXPECT_GT(s.get("deltagate_prefix_cache_hits_total", {{"tier", "device"}}), 0);
    EXPECT_FALSE(std::isnan(s.get("deltagate_prefix_cache_hits_total", {{"tier", "host"}})));
    EXPECT_EQ(s.get("deltagate_num_requests_running"), 0);
    EXPECT_EQ(s.get("deltagate_num_requests_waiting"), 0);
    EXPECT_EQ(s.get("deltagate_kv_blocks_capacity"), 256);
    EXPECT_FALSE(std::isnan(s.get("deltagate_kv_blocks_used")));
    EXPECT_EQ(s.get("deltagate_state_slots_used"), 0);
    EXPECT_FALSE(std::isnan(s.get("vllm:num_requests_waiting")));
    EXPECT_FALSE(std::isnan(s.get("vllm:kv_cache_usage_perc")));

    http_get(port, "/nope", &status);
    EXPECT_EQ(status, 404);
}

TEST(Api, PrometheusParserRejectsBadText) {
    EXPECT_NE(parse_prometheus("x 1").error, "");                                   // no newline
    EXPECT_NE(parse_prometheus("# TYPE x counter\nx{a=\"1} 1\n").error, "");        // bad labels
    EXPECT_NE(parse_prometheus("# TYPE x counter\nx one\n").error, "");             // bad value
    EXPECT_NE(parse_prometheus("# TYPE x counter\n# TYPE y gauge\nx 1\n").error, "");  // out of block
    EXPECT_NE(parse_prometheus("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n").error, "");  // no +Inf
    EXPECT_EQ(parse_prometheus("# HELP x a\n# TYPE x counter\nx{a=\"q\\\"\"} 1\n").error, "");
}

}  // namespace
}  // namespace dg::worker::testing
