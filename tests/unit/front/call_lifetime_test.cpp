// The front's call lifetime under a race: Abort (FrontState::abort_calls) looking a call up while the
// call completes and deletes itself. A real worker process serves 1-token generations; the front runs in
// this process so ASan/TSan builds of this test see its memory. The test seam test_call_deleting widens the
// window between "last reference dropped" and "unregistered" that a real scheduler hits only rarely, so a
// call that hands out a reference in that window crashes (double delete, use after free) within a few
// iterations instead of once a month. Nothing asserts on time.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "services/front/front_server.h"
#include "tests/unit/front/cluster.h"

namespace dg::front::testing {
namespace {

namespace v1 = ::deltagate::v1;

// The `deltagate` binary for the worker: $DELTAGATE_WORKER_BINARY (a sanitizer build of this test can use
// the plain build's worker), else this build's.
std::string worker_binary() {
    const char* b = std::getenv("DELTAGATE_WORKER_BINARY");
    return b && *b ? std::string(b) : deltagate_binary();
}

TEST(FrontCallLifetime, AbortRacesCompletionThousandsOfTimes) {
    const std::string addr = "127.0.0.1:" + std::to_string(free_port());
    const pid_t worker = spawn({worker_binary(), "worker", "--listen", addr, "--backend", "cpu"}, {});
    ASSERT_GT(worker, 0);
    struct Reap {
        pid_t p;
        ~Reap() {
            ::kill(p, SIGKILL);
            ::waitpid(p, nullptr, 0);
        }
    } reap{worker};

    FrontOptions o;
    o.listen = "127.0.0.1:0";
    o.pool.static_workers = {addr};
    std::atomic<bool> widen{false};
    o.test_call_deleting = [&widen] {
        if (widen.load()) std::this_thread::sleep_for(std::chrono::microseconds(300));
    };
    auto server = FrontServer::start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()), grpc::InsecureChannelCredentials());
    auto stub = v1::Inference::NewStub(channel);
    bool ready = false;
    for (int i = 0; i < 1200 && !ready; ++i) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
        v1::ListModelsResponse r;
        ready = stub->ListModels(&ctx, {}, &r).ok() && r.models_size() > 0 && r.models(0).workers_healthy() > 0;
        if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_TRUE(ready) << "the worker did not become healthy";
    widen = true;

    FrontState& front = (*server)->state();
    const int kIterations = 2000;
    int completed = 0, cancelled = 0, found = 0;
    for (int i = 0; i < kIterations; ++i) {
        const std::string id = "race-" + std::to_string(i);
        std::atomic<bool> go{i % 2 == 0}, done{false};
        // Abort the id over and over until its stream has ended: from the start on even iterations (the
        // abort wins), from the first token on odd ones (abort and completion race).
        std::thread aborter([&] {
            while (!go.load() && !done.load()) std::this_thread::yield();
            while (!done.load()) found += int(front.abort_calls({id}).size());
            found += int(front.abort_calls({id}).size());
        });
        v1::GenerateRequest req = ids_request({1, 2, 3}, 1);
        req.set_request_id(id);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        auto reader = stub->Generate(&ctx, req);
        v1::GenerateResponse msg;
        while (reader->Read(&msg)) go = true;
        const grpc::Status st = reader->Finish();
        done = true;
        aborter.join();
        ASSERT_TRUE(st.ok() || st.error_code() == grpc::StatusCode::CANCELLED) << st.error_message();
        (st.ok() ? completed : cancelled)++;
    }
    // Every call ended and was deleted: none is left running on the front.
    for (int i = 0; i < 100 && front.inflight.load() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(front.inflight.load(), 0);
    EXPECT_EQ(completed + cancelled, kIterations);
    std::printf("%d completed, %d cancelled by the racing abort, %d abort hits\n", completed, cancelled, found);
    (*server)->shutdown(0);
}

}  // namespace
}  // namespace dg::front::testing
