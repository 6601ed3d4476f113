// Abort, client cancellation, deadlines, queue limits and draining: each frees every block and slot at
// once (checked on the engine thread). The engine's step budget (a test hook) pins the request's
// progress so that nothing here depends on timing.
#include <thread>

#include "tests/unit/worker/worker_test_util.h"

namespace dg::worker::testing {
namespace {

// An idle worker holds nothing when it keeps no checkpoints.
WorkerOptions no_cache_options() {
    WorkerOptions o = test_options();
    o.sched.spare_slots = 0;
    o.sched.host_cache_bytes = 0;
    return o;
}

EngineThread& engine(Worker& w) { return w.server->core().engine(); }

TEST(Cancel, AbortMidStream) {
    Worker w(no_cache_options());
    engine(w).set_step_budget(0);
    pb::GenerateRequest req = greedy(iota_prompt(30), 500, 2);
    req.set_request_id("abort-me");
    grpc::ClientContext ctx;
    auto reader = w.stub->Generate(&ctx, req);
    w.wait_engine([](sched::EngineLoop& l) { return l.n_requests() == 1; });
    engine(w).set_step_budget(1);  // one step: prefill and the first token of each continuation
    Result r;
    pb::GenerateEvent e;
    ASSERT_TRUE(reader->Read(&e));
    record(e, &r);
    {
        grpc::ClientContext actx;
        pb::AbortRequest a;
        a.add_request_ids("abort-me");
        a.add_request_ids("unknown");
        pb::AbortResponse resp;
        ASSERT_TRUE(w.stub->Abort(&actx, a, &resp).ok());
        EXPECT_EQ(resp.found(), 1);
    }
    while (reader->Read(&e)) record(e, &r);
    r.status = reader->Finish();
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED) << r.status.error_message();
    EXPECT_NE(r.status.error_message().find("aborted"), std::string::npos);
    EXPECT_TRUE(r.events.back().done());
    EXPECT_EQ(r.events.back().finish_reason(), pb::FINISH_REASON_CANCELLED);
    EXPECT_EQ(r.usage.completion_tokens(), 2);  // pinned after the first step
    w.expect_idle_and_sound(/*expect_no_blocks=*/true);
    engine(w).set_step_budget(-1);

    // Aborting it again finds nothing.
    grpc::ClientContext actx;
    pb::AbortRequest a;
    a.add_request_ids("abort-me");
    pb::AbortResponse resp;
    ASSERT_TRUE(w.stub->Abort(&actx, a, &resp).ok());
    EXPECT_EQ(resp.found(), 0);
}

TEST(Cancel, ClientTryCancelMidStreamFreesEverything) {
    Worker w(no_cache_options());
    engine(w).set_step_budget(0);
    pb::GenerateRequest req = greedy(iota_prompt(50), 500, 3);
    grpc::ClientContext ctx;
    auto reader = w.stub->Generate(&ctx, req);
    w.wait_engine([](sched::EngineLoop& l) { return l.n_requests() == 1; });
    engine(w).set_step_budget(1);  // prefill + first tokens only
    pb::GenerateEvent e;
    ASSERT_TRUE(reader->Read(&e));
    // The request is still running (pinned), holding blocks and three slots.
    ASSERT_TRUE(w.on_engine([](sched::EngineLoop& l) {
        EXPECT_EQ(l.n_requests(), 1);
        EXPECT_GT(l.digest().seq_slots_used, 0);
        return absl::OkStatus();
    }).ok());
    ctx.TryCancel();
    while (reader->Read(&e)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
    // The server saw the cancel and ended the request while the engine was still pinned.
    w.wait_engine([](sched::EngineLoop& l) { return l.n_requests() == 0; });
    w.expect_idle_and_sound(/*expect_no_blocks=*/true);
    engine(w).set_step_budget(-1);
    const std::string m = w.server->registry().render();
    EXPECT_NE(m.find("deltagate_requests_total{code=\"CANCELLED\"} 1"), std::string::npos) << m;
}

TEST(Cancel, ClientDeadlineWhileQueued) {
    Worker w(no_cache_options());
    engine(w).set_step_budget(0);  // nothing runs: the deadline must end it
    Result r = w.generate(greedy(iota_prompt(20), 50), {}, [](grpc::ClientContext& ctx) {
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
    });
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    w.wait_engine([](sched::EngineLoop& l) { return l.n_requests() == 0; });
    w.expect_idle_and_sound(true);
    engine(w).set_step_budget(-1);
}

TEST(Cancel, ServerSideDeadlineEndsALongGeneration) {
    Worker w(no_cache_options());
    // Whether the scheduler's hard stop or gRPC's own deadline fires first, the result is the same.
    Result r = w.generate(greedy(iota_prompt(20), 100000), {}, [](grpc::ClientContext& ctx) {
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
    });
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    w.expect_idle_and_sound(true);
}

TEST(Cancel, QueueFullIsResourceExhausted) {
    WorkerOptions o = no_cache_options();
    o.max_queue = 2;
    Worker w(o);
    engine(w).set_step_budget(0);  // admission happens in step(): both stay waiting
    grpc::ClientContext c1, c2;
    auto r1 = w.stub->Generate(&c1, greedy(iota_prompt(10), 4));
    auto r2 = w.stub->Generate(&c2, greedy(iota_prompt(11), 4));
    w.wait_engine([](sched::EngineLoop& l) { return l.n_waiting() == 2; });
    Result r3 = w.generate(greedy(iota_prompt(12), 4));
    EXPECT_EQ(r3.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(r3.status.error_message().find("queue is full"), std::string::npos);
    engine(w).set_step_budget(-1);
    pb::GenerateEvent e;
    while (r1->Read(&e)) {
    }
    while (r2->Read(&e)) {
    }
    EXPECT_TRUE(r1->Finish().ok());
    EXPECT_TRUE(r2->Finish().ok());
    w.expect_idle_and_sound(true);
}

TEST(Cancel, DuplicateRequestIdIsRejected) {
    Worker w(no_cache_options());
    engine(w).set_step_budget(0);
    pb::GenerateRequest req = greedy(iota_prompt(10), 4);
    req.set_request_id("same");
    grpc::ClientContext c1;
    auto r1 = w.stub->Generate(&c1, req);
    w.wait_engine([](sched::EngineLoop& l) { return l.n_requests() == 1; });
    Result dup = w.generate(req);
    EXPECT_EQ(dup.status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
    engine(w).set_step_budget(-1);
    pb::GenerateEvent e;
    while (r1->Read(&e)) {
    }
    EXPECT_TRUE(r1->Finish().ok());
}

TEST(Drain, FinishesInFlightRefusesNew) {
    Worker w(no_cache_options());
    engine(w).set_step_budget(0);
    grpc::ClientContext c1;
    auto r1 = w.stub->Generate(&c1, greedy(iota_prompt(10), 6));
    w.wait_engine([](sched::EngineLoop& l) { return l.n_requests() == 1; });
    std::thread drainer([&] { w.server->drain(); });
    while (!w.server->core().draining()) std::this_thread::yield();
    Result refused = w.generate(greedy(iota_prompt(10), 6));
    EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_NE(refused.status.error_message().find("draining"), std::string::npos);
    engine(w).set_step_budget(-1);
    Result in_flight;
    pb::GenerateEvent e;
    while (r1->Read(&e)) record(e, &in_flight);
    EXPECT_TRUE(r1->Finish().ok());
    EXPECT_EQ(in_flight.usage.completion_tokens(), 6);
    drainer.join();
}

}  // namespace
}  // namespace dg::worker::testing
