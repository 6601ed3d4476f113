// The front's call lifetime under a race: Abort (FrontState::abort_calls) looking a call up while the
// call completes and deletes itself. A real worker process serves 1-token generations; the front runs in
// this process so ASan/TSan builds of this test see its memory. The test seam test_call_deleting widens the
// window between "last reference dropped" and "unregistered" that a real scheduler hits only rarely, so a
// call that hands out a reference in that window crashes (double delete, use after free) within a few
// iterations instead of once a month. Nothing asserts on time.
//
// The second test races the HTTP gateway's end of a call (http_gateway.cpp: the connection's thread reads a
// Generate call over the in-process channel) against the client hanging up: a reader that outlives its
// connection thread, or a reactor that touches a reader already gone, crashes or hangs the front's exit.
//
// The third races mid-stream migration (a worker process SIGKILLed under streams whose clients cancel at
// random points) against cancellation and completion.
//
// The fourth shuts the front down while its streams run past the drain: the server cancels them, and its
// worker calls end on gRPC's threads after the server has stopped; the front must outlive them.
// CTest also runs them under AddressSanitizer (test_front_lifetime_asan, tests/cmake/front.cmake).
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

// A real worker process on a free port, killed when the test ends.
struct WorkerProcess {
    std::string addr = "127.0.0.1:" + std::to_string(free_port());
    pid_t pid = spawn({worker_binary(), "worker", "--listen", addr, "--backend", "cpu"}, {});
    ~WorkerProcess() {
        if (pid <= 0) return;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
    }
};

// Waits until the in-process front sees its worker healthy.
bool wait_healthy(v1::Inference::Stub& stub) {
    for (int i = 0; i < 1200; ++i) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
        v1::ListModelsResponse r;
        if (stub.ListModels(&ctx, {}, &r).ok() && r.models_size() > 0 && r.models(0).workers_healthy() > 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
}

TEST(FrontCallLifetime, AbortRacesCompletionThousandsOfTimes) {
    WorkerProcess worker;
    ASSERT_GT(worker.pid, 0);

    FrontOptions o;
    o.listen = "127.0.0.1:0";
    o.pool.static_workers = {worker.addr};
    std::atomic<bool> widen{false};
    o.test_call_deleting = [&widen] {
        if (widen.load()) std::this_thread::sleep_for(std::chrono::microseconds(300));
    };
    auto server = FrontServer::start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()), grpc::InsecureChannelCredentials());
    auto stub = v1::Inference::NewStub(channel);
    ASSERT_TRUE(wait_healthy(*stub)) << "the worker did not become healthy";
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

// HTTP requests whose client hangs up at every point of the call (before the first byte of the response,
// mid-stream, never) racing the call's completion, then a clean exit of the front: every call ended and
// was deleted, and shutdown (which tears down the in-process channel) returns.
TEST(FrontCallLifetime, HttpHangupRacesCompletion) {
    WorkerProcess worker;
    ASSERT_GT(worker.pid, 0);
    FrontOptions o;
    o.listen = "127.0.0.1:0";
    o.http_listen = "127.0.0.1:0";
    o.pool.static_workers = {worker.addr};
    auto server = FrontServer::start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = v1::Inference::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()), grpc::InsecureChannelCredentials()));
    ASSERT_TRUE(wait_healthy(*stub)) << "the worker did not become healthy";
    const std::string http = (*server)->http_address();
    const int port = std::stoi(http.substr(http.rfind(':') + 1));

    const int kIterations = 400;
    int whole = 0;
    for (int i = 0; i < kIterations; ++i) {
        const bool stream = i % 2 == 0;
        const std::string body = std::string(R"({"prompt":[1,2,3],"max_tokens":)") + std::to_string(1 + i % 3) +
                                 R"(,"ignore_eos":true,"stream":)" + (stream ? "true" : "false") + "}";
        const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                "Content-Type: application/json\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\n\r\n" + body;
        const int fd = connect_loopback(port);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::write(fd, req.data(), req.size()), ssize_t(req.size()));
        // i % 4: 0 reads everything; 1 hangs up at once; 2 after the first bytes; 3 after a short pause.
        std::string resp;
        char buf[4096];
        if (i % 4 == 2) (void)!::read(fd, buf, sizeof buf);
        if (i % 4 == 3) std::this_thread::sleep_for(std::chrono::microseconds(200 * (i % 7)));
        if (i % 4 == 0) {
            ssize_t n;
            while ((n = ::read(fd, buf, sizeof buf)) > 0) resp.append(buf, size_t(n));
            EXPECT_EQ(resp.rfind("HTTP/1.1 200 ", 0), 0u) << resp;
            ++whole;
        }
        ::close(fd);
    }
    FrontState& front = (*server)->state();
    for (int i = 0; i < 200 && front.inflight.load() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(front.inflight.load(), 0);
    EXPECT_EQ(whole, kIterations / 4);
    (*server)->shutdown(0);
    server->reset();  // the in-process channel and the HTTP server go here: this must return
}

// Streams migrating off killed workers while their clients cancel at random points and others complete:
// every stream ends OK or CANCELLED, every call is deleted, and the front exits.
TEST(FrontCallLifetime, MigrationRacesCancelAndCompletion) {
    std::vector<std::unique_ptr<WorkerProcess>> workers;
    for (int i = 0; i < 3; ++i) workers.push_back(std::make_unique<WorkerProcess>());
    FrontOptions o;
    o.listen = "127.0.0.1:0";
    for (auto& w : workers) o.pool.static_workers.push_back(w->addr);
    auto server = FrontServer::start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()), grpc::InsecureChannelCredentials());
    auto stub = v1::Inference::NewStub(channel);
    FrontState& front = (*server)->state();
    ASSERT_TRUE(wait_healthy(*stub));
    ASSERT_GE(front.pool().wait_healthy(3, 60000), 3);

    const int kStreams = 24;
    std::atomic<int> ok{0}, cancelled{0}, tokens_seen{0};
    std::vector<std::string> unexpected(kStreams);
    std::vector<std::thread> clients;
    for (int i = 0; i < kStreams; ++i)
        clients.emplace_back([&, i] {
            v1::GenerateRequest req = ids_request({i + 1, 7, 9}, 120);
            if (i % 3 == 1) req.set_n(2);
            grpc::ClientContext ctx;
            ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
            auto reader = stub->Generate(&ctx, req);
            v1::GenerateResponse msg;
            int got = 0;
            const int cancel_after = i % 4 == 0 ? 5 + 7 * i : -1;  // a quarter cancel mid-stream
            while (reader->Read(&msg)) {
                if (!msg.has_delta()) continue;
                if (got++ == 0) tokens_seen.fetch_add(1);
                if (got == cancel_after) ctx.TryCancel();
            }
            const grpc::Status st = reader->Finish();
            if (got == 0) tokens_seen.fetch_add(1);
            if (st.ok()) ok.fetch_add(1);
            else if (st.error_code() == grpc::StatusCode::CANCELLED) cancelled.fetch_add(1);
            else unexpected[size_t(i)] = st.error_message();
        });
    for (int i = 0; i < 2000 && tokens_seen.load() < kStreams; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    // Two of the three workers die, one after the other, while streams run and cancel.
    for (int k = 0; k < 2; ++k) {
        ::kill(workers[size_t(k)]->pid, SIGKILL);
        ::waitpid(workers[size_t(k)]->pid, nullptr, 0);
        workers[size_t(k)]->pid = -1;
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
    }
    for (auto& t : clients) t.join();
    for (int i = 0; i < kStreams; ++i) EXPECT_TRUE(unexpected[size_t(i)].empty()) << "stream " << i << ": " << unexpected[size_t(i)];
    for (int i = 0; i < 100 && front.inflight.load() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(front.inflight.load(), 0);
    std::printf("%d completed, %d cancelled, %.0f continuations migrated\n", ok.load(), cancelled.load(),
                front.metrics().migrations.value());
    (*server)->shutdown(0);
}

// A drain shorter than the streams: shutdown cancels them, and each call's worker call ends (its OnDone, on
// a gRPC thread) only after the server has stopped. Destroying the front must wait for those: a worker call
// ending after the front's state is gone reads freed memory (ASan, test_front_lifetime_asan). Several
// rounds, each with a fresh front and streams at different points (queued, mid-stream, just started).
TEST(FrontCallLifetime, ShutdownCancelsStreamsPastTheDrain) {
    WorkerProcess worker;
    ASSERT_GT(worker.pid, 0);
    for (int round = 0; round < 6; ++round) {
        FrontOptions o;
        o.listen = "127.0.0.1:0";
        o.pool.static_workers = {worker.addr};
        // Widen the window a real exit hits rarely (it once corrupted the heap of a front draining under CI
        // load): a worker call ends, the call finishes its stream, the server stops and the front is
        // destroyed, while that worker call still holds the call and is about to drop it (then ~GenerateCall
        // runs on its thread).
        o.test_attempt_ended = [] { std::this_thread::sleep_for(std::chrono::milliseconds(20)); };
        o.test_call_deleting = [] { std::this_thread::sleep_for(std::chrono::milliseconds(5)); };
        auto server = FrontServer::start(o);
        ASSERT_TRUE(server.ok()) << server.status();
        auto stub = v1::Inference::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()),
                                                               grpc::InsecureChannelCredentials()));
        ASSERT_TRUE(wait_healthy(*stub)) << "the worker did not become healthy";
        const int kStreams = 8;
        std::atomic<int> started{0}, ended{0};
        std::vector<std::string> unexpected(kStreams);
        std::vector<std::thread> clients;
        for (int i = 0; i < kStreams; ++i)
            clients.emplace_back([&, i] {
                // Most far longer than the drain (cancelled by it); every fourth ends on its own near the
                // shutdown (or is cancelled too, as the timing falls).
                v1::GenerateRequest req = ids_request({i + 1, round + 2, 5}, i % 4 == 1 ? 20 + 15 * round : 4000);
                if (i % 4 == 3) req.set_n(2);
                grpc::ClientContext ctx;
                ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
                auto reader = stub->Generate(&ctx, req);
                v1::GenerateResponse msg;
                bool first = true;
                while (reader->Read(&msg))
                    if (first && msg.has_delta()) first = false, started.fetch_add(1);
                const grpc::Status st = reader->Finish();
                if (first) started.fetch_add(1);
                ended.fetch_add(1);
                // The server cancels what the drain did not finish; the client sees CANCELLED or UNAVAILABLE.
                if ((st.ok() && i % 4 != 1) || (!st.ok() && st.error_code() != grpc::StatusCode::CANCELLED &&
                                                 st.error_code() != grpc::StatusCode::UNAVAILABLE))
                    unexpected[size_t(i)] = std::to_string(int(st.error_code())) + " " + st.error_message();
            });
        // Round r shuts down after r/6 of the streams have a token: some rounds catch calls still routing.
        for (int i = 0; i < 4000 && started.load() < round * kStreams / 6; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        (*server)->shutdown(round % 2 ? 50 : 0);
        server->reset();  // the front's state goes here: no worker call may still be running
        for (auto& t : clients) t.join();
        EXPECT_EQ(ended.load(), kStreams);
        for (int i = 0; i < kStreams; ++i)
            EXPECT_TRUE(unexpected[size_t(i)].empty()) << "round " << round << ", stream " << i << ": " << unexpected[size_t(i)];
    }
}

}  // namespace
}  // namespace dg::front::testing
