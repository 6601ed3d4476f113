// In-process worker for the tests: a WorkerServer on 127.0.0.1:0 over a golden fixture model, a real
// gRPC client stub, and helpers to run a Generate call to its end and to inspect the engine.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "deltagate/worker/v1/worker.grpc.pb.h"
#include "engine/status.h"
#include "services/common/bearer_token.h"
#include "services/worker/worker_server.h"
#include "tests/unit/scheduler/sched_test_util.h"

namespace dg::worker::testing {

namespace pb = ::deltagate::worker::v1;
using sched::testing::cold_greedy;
using sched::testing::fixture_path;

// What one Generate call returned.
struct Result {
    std::vector<pb::GenerateEvent> events;
    grpc::Status status;
    std::map<int32_t, std::vector<int32_t>> tokens;  // per continuation
    pb::Usage usage;                                   // from the done event
    int32_t done_events = 0;
};

inline void record(const pb::GenerateEvent& e, Result* r) {
    r->events.push_back(e);
    if (e.token_id() >= 0) r->tokens[e.index()].push_back(e.token_id());
    if (e.done()) {
        ++r->done_events;
        r->usage = e.usage();
    }
}

inline WorkerOptions test_options(const std::string& fixture = "dense") {
    WorkerOptions o;
    o.model_path = fixture_path(fixture);
    o.backend = BackendKind::kCpuExact;
    o.listen = "127.0.0.1:0";
    o.metrics_listen = "127.0.0.1:0";
    o.vllm_metric_names = true;  // api_test reads the vllm: aliases too
    o.cache.kv_type = DType::F32;  // the cold reference runs f32 KV
    o.cache.n_blocks = 256;
    o.sched.max_running = 4;
    o.load_publish_ms = 1;
    o.default_watch_interval_ms = 1;
    return o;
}

class Worker {
public:
    explicit Worker(WorkerOptions o) : token_(o.auth_token) {
        auto w = WorkerServer::start(std::move(o));
        EXPECT_TRUE(w.ok()) << w.status();
        if (!w.ok()) return;
        server = std::move(*w);
        // The stub is a front's: it sends the worker's token when it has one.
        channel = auth::channel_with_token(server->address(), grpc::InsecureChannelCredentials(),
                                           grpc::ChannelArguments(), token_);
        stub = pb::Worker::NewStub(channel);
    }

    // Runs a Generate call to its end (bounded by a generous deadline as a hang guard, not a timing check).
    Result generate(const pb::GenerateRequest& req, std::function<void(grpc::ClientContext&, const pb::GenerateEvent&, int)> on_event = {},
                    std::function<void(grpc::ClientContext&)> setup = {}) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        if (setup) setup(ctx);
        Result r;
        auto reader = stub->Generate(&ctx, req);
        pb::GenerateEvent e;
        int i = 0;
        while (reader->Read(&e)) {
            record(e, &r);
            if (on_event) on_event(ctx, e, i);
            ++i;
        }
        r.status = reader->Finish();
        return r;
    }

    // Runs fn on the engine thread and waits.
    absl::Status on_engine(std::function<absl::Status(sched::EngineLoop&)> fn) {
        return server->core().engine().run_sync(std::move(fn));
    }

    // Waits (by polling the engine, no timing assumptions) until `pred` holds on the engine thread.
    void wait_engine(std::function<bool(sched::EngineLoop&)> pred) {
        for (;;) {
            bool ok = false;
            ASSERT_TRUE(on_engine([&](sched::EngineLoop& l) {
                ok = pred(l);
                return absl::OkStatus();
            }).ok());
            if (ok) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }

    // The engine is idle, its invariants hold, and no sequence slot is in use.
    void expect_idle_and_sound(bool expect_no_blocks = false) {
        wait_engine([](sched::EngineLoop& l) { return l.n_requests() == 0; });
        ASSERT_TRUE(on_engine([&](sched::EngineLoop& l) {
            EXPECT_TRUE(l.idle());
            DG_RETURN_IF_ERROR(l.check_invariants());
            const sched::LoadDigest d = l.digest();
            EXPECT_EQ(d.seq_slots_used, 0);
            EXPECT_EQ(d.running, 0);
            EXPECT_EQ(d.waiting, 0);
            if (expect_no_blocks) {
                EXPECT_EQ(d.kv_blocks_referenced, 0);
            }
            return absl::OkStatus();
        }).ok());
    }

    std::unique_ptr<WorkerServer> server;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<pb::Worker::Stub> stub;

private:
    std::string token_;
};

inline pb::GenerateRequest greedy(const std::vector<int32_t>& prompt, int32_t max_tokens, int32_t n = 1) {
    pb::GenerateRequest r;
    for (int32_t t : prompt) r.add_prompt_token_ids(t);
    r.set_max_tokens(max_tokens);
    r.set_ignore_eos(true);
    r.set_n(n);
    return r;
}

inline std::vector<int32_t> iota_prompt(int32_t n, int32_t start = 1) {
    std::vector<int32_t> p(n);
    for (int32_t i = 0; i < n; ++i) p[i] = (start + i * 7) % 250;
    return p;
}

}  // namespace dg::worker::testing
