// Zero lost work (docs/reliability.md), with real `deltagate front` / `deltagate worker` processes on
// loopback and the built-in tiny model: a worker SIGKILLed mid-stream (every stream completes, each exactly
// as an uninterrupted run), SIGTERM drains that hand long streams off, a rolling restart of every worker and
// then the front under a steady request loop. Nothing here asserts on time; figures are printed.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <regex>
#include <thread>

#include "tests/unit/front/cluster.h"

namespace dg::front::testing {
namespace {

namespace v1 = ::deltagate::v1;
using namespace std::chrono_literals;

// One value of a Prometheus sample (`name` with its labels as written, e.g. `x_total{a="b"}`), or -1.
double metric_value(const std::string& text, const std::string& name) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    return -1;
}

// Streams of several requests at once, one reader thread each; `first_tokens` counts streams that have
// received a delta (what a test waits for before it breaks something).
class ConcurrentStreams {
public:
    ConcurrentStreams(Cluster& c, const std::vector<v1::GenerateRequest>& reqs) : results_(reqs.size()) {
        for (size_t i = 0; i < reqs.size(); ++i)
            threads_.emplace_back([this, &c, req = reqs[i], i] {
                auto ctx = c.context(180s);
                auto reader = c.stub->Generate(ctx.get(), req);
                StreamResult& r = results_[i];
                v1::GenerateResponse m;
                bool counted = false;
                while (reader->Read(&m)) {
                    if (m.has_delta()) {
                        r.deltas.push_back(m.delta());
                        if (!counted) counted = true, first_tokens.fetch_add(1);
                    }
                    if (m.has_finished()) r.finished.push_back(m.finished());
                    if (m.has_final()) r.final_msg = m.final();
                }
                r.status = reader->Finish();
                if (!counted) first_tokens.fetch_add(1);  // ended without a token: nothing to wait for
            });
    }
    // Bounded wait until every stream has a token (or ended).
    bool wait_first_tokens(std::chrono::seconds limit = 120s) {
        const auto until = std::chrono::steady_clock::now() + limit;
        while (first_tokens.load() < int(results_.size()) && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(5ms);
        return first_tokens.load() == int(results_.size());
    }
    std::vector<StreamResult> join() {
        for (auto& t : threads_) t.join();
        threads_.clear();
        return std::move(results_);
    }
    ~ConcurrentStreams() {
        for (auto& t : threads_) t.join();
    }
    std::atomic<int> first_tokens{0};

private:
    std::vector<StreamResult> results_;
    std::vector<std::thread> threads_;
};

// The worker with the most running sequences, from each worker's /metrics.
int busiest_worker(const Cluster& c) {
    int best = -1;
    double most = -1;
    for (size_t i = 0; i < c.worker_pids.size(); ++i) {
        if (c.worker_pids[i] <= 0) continue;
        const double running = metric_value(http_get(c.worker_metrics_ports[i], "/metrics"), "deltagate_num_requests_running");
        if (running > most) most = running, best = int(i);
    }
    return best;
}

std::vector<v1::GenerateRequest> greedy_requests(int count, int max_tokens) {
    std::vector<v1::GenerateRequest> reqs;
    for (int i = 0; i < count; ++i) reqs.push_back(ids_request({3 + i, 40 + 2 * i, 7, 90 - i, 11 + i}, max_tokens));
    return reqs;
}

double front_migrations(const Cluster& c) {
    return metric_value(http_get(c.metrics_port, "/metrics"), "deltagate_front_migrations_total");
}

// Every stream ended OK with its continuations' tokens equal to the reference's.
void expect_same_streams(const std::vector<StreamResult>& got, const std::vector<StreamResult>& want,
                         const std::vector<v1::GenerateRequest>& reqs) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_TRUE(got[i].status.ok()) << "stream " << i << ": " << got[i].status.error_message();
        const int n = std::max(1, reqs[i].n());
        ASSERT_EQ(got[i].finished.size(), size_t(n)) << "stream " << i;
        for (int k = 0; k < n; ++k) {
            EXPECT_EQ(got[i].ids(k), want[i].ids(k)) << "stream " << i << " continuation " << k;
            EXPECT_EQ(int(got[i].ids(k).size()), reqs[i].stop().max_tokens()) << "stream " << i << " continuation " << k;
        }
        ASSERT_TRUE(got[i].final_msg.has_value()) << "stream " << i;
        EXPECT_EQ(got[i].final_msg->usage().completion_tokens(), n * reqs[i].stop().max_tokens()) << "stream " << i;
        EXPECT_EQ(got[i].final_msg->usage().prompt_tokens(), reqs[i].prompt().token_ids().ids_size()) << "stream " << i;
    }
}

// The scenario: 3 workers, 16 greedy streams, the busiest worker SIGKILLed once every stream has
// tokens. Before migration 7 of 16 streams were lost; now all complete, each as an uninterrupted run.
TEST(FrontReliability, WorkerKilledMidStreamEveryStreamCompletesUnchanged) {
    Cluster c(ClusterOptions{.workers = 3});
    ASSERT_GT(c.port, 0);
    ASSERT_TRUE(c.wait_ready(3));
    const auto reqs = greedy_requests(16, 160);
    const std::vector<StreamResult> reference = ConcurrentStreams(c, reqs).join();
    for (const auto& r : reference) ASSERT_TRUE(r.status.ok()) << r.status.error_message();

    ConcurrentStreams run(c, reqs);
    ASSERT_TRUE(run.wait_first_tokens());
    const int victim = busiest_worker(c);
    ASSERT_GE(victim, 0);
    c.kill_worker(victim);
    const std::vector<StreamResult> got = run.join();
    expect_same_streams(got, reference, reqs);
    const double migrations = front_migrations(c);
    std::printf("killed worker %d mid-run: 16 of 16 streams complete, %.0f continuation(s) migrated\n", victim, migrations);
    EXPECT_GE(migrations, 1) << "the killed worker ran no stream: the test proved nothing";
}

// Seeded sampling (n = 2 too) continues exactly: the draw for a token is a function of the seed and its
// position only (engine/philox.h), so the worker that takes a continuation over draws what the first would.
TEST(FrontReliability, SeededAndParallelSamplesMigrateExactly) {
    Cluster c(ClusterOptions{.workers = 2});
    ASSERT_GT(c.port, 0);
    ASSERT_TRUE(c.wait_ready(2));
    std::vector<v1::GenerateRequest> reqs;
    for (int i = 0; i < 6; ++i) {
        v1::GenerateRequest r = ids_request({5 + i, 17, 29 + i, 4}, 120);
        r.mutable_sampling()->set_temperature(0.9f);
        r.mutable_sampling()->set_top_p(0.95f);
        r.mutable_sampling()->set_seed(1000 + uint64_t(i));
        if (i % 2 == 0) {
            r.set_n(2);
            r.mutable_sampling()->set_frequency_penalty(0.5f);  // counts the resumed tokens as generated
        }
        reqs.push_back(r);
    }
    const std::vector<StreamResult> reference = ConcurrentStreams(c, reqs).join();
    for (const auto& r : reference) ASSERT_TRUE(r.status.ok()) << r.status.error_message();

    ConcurrentStreams run(c, reqs);
    ASSERT_TRUE(run.wait_first_tokens());
    c.kill_worker(busiest_worker(c));
    expect_same_streams(run.join(), reference, reqs);
    EXPECT_GE(front_migrations(c), 1);
}

// --max-migrations 0 turns it off: the stream ends with UNAVAILABLE saying so (and to retry).
TEST(FrontReliability, MigrationOffEndsTheStream) {
    Cluster c(ClusterOptions{.workers = 2, .front_args = {"--max-migrations", "0"}});
    ASSERT_GT(c.port, 0);
    ASSERT_TRUE(c.wait_ready(2));
    ConcurrentStreams run(c, {ids_request({1, 2, 3}, 2000)});
    ASSERT_TRUE(run.wait_first_tokens());
    c.kill_worker(busiest_worker(c));
    const auto got = run.join();
    EXPECT_EQ(got[0].status.error_code(), grpc::StatusCode::UNAVAILABLE) << got[0].status.error_message();
    EXPECT_NE(got[0].status.error_message().find("--max-migrations 0"), std::string::npos) << got[0].status.error_message();
    EXPECT_NE(got[0].status.error_message().find("retry"), std::string::npos) << got[0].status.error_message();
}

// SIGTERM on a worker with long streams: past --drain-ms it hands them off (UNAVAILABLE) and the front
// continues each on the other worker, exactly.
TEST(FrontReliability, DrainHandsOffLongStreamsWhichMigrate) {
    Cluster c(ClusterOptions{.workers = 2, .worker_args = {"--drain-ms", "300"}});
    ASSERT_GT(c.port, 0);
    ASSERT_TRUE(c.wait_ready(2));
    const auto reqs = greedy_requests(2, 400);
    const std::vector<StreamResult> reference = ConcurrentStreams(c, reqs).join();
    ConcurrentStreams run(c, reqs);
    ASSERT_TRUE(run.wait_first_tokens());
    EXPECT_EQ(c.restart_worker(busiest_worker(c)), 0);
    expect_same_streams(run.join(), reference, reqs);
    EXPECT_GE(front_migrations(c), 1);
}

// Rolling restart under a steady request loop: every worker SIGTERMed (health NOT_SERVING, new requests
// routed around it, long streams handed off after --drain-ms and migrated) and restarted in turn, then the
// front (it stops accepting, finishes its streams; the clients' channel waits for the new one). 0 failures.
TEST(FrontReliability, RollingRestartLosesNoRequest) {
    Cluster c(ClusterOptions{.workers = 2,
                             .front_args = {"--drain-ms", "60000"},
                             .worker_args = {"--drain-ms", "1500"},
                             .front_port = free_port()});
    ASSERT_GT(c.port, 0);
    ASSERT_TRUE(c.wait_ready(2));
    // Long streams that outlive a worker's drain: handed off, migrated, and still exact.
    const auto long_reqs = greedy_requests(2, 600);
    const std::vector<StreamResult> long_reference = ConcurrentStreams(c, long_reqs).join();

    // The clients' own channel: wait_for_ready, and a short reconnect backoff so the test does not idle.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
    auto channel = grpc::CreateCustomChannel(c.target, grpc::InsecureChannelCredentials(), args);
    auto stub = v1::Inference::NewStub(channel);
    std::atomic<bool> stop{false};
    std::atomic<int> ok{0}, failed{0};
    std::mutex mu;
    std::map<std::string, int> errors;
    std::vector<std::thread> loop;
    for (int t = 0; t < 3; ++t)
        loop.emplace_back([&, t] {
            for (int i = 0; !stop.load(); ++i) {
                grpc::ClientContext ctx;
                ctx.set_deadline(std::chrono::system_clock::now() + 60s);
                ctx.set_wait_for_ready(true);
                auto reader = stub->Generate(&ctx, ids_request({t + 1, i % 50 + 1, 7}, 24));
                StreamResult r = drain(reader);
                if (r.status.ok() && r.ids(0).size() == 24) {
                    ok.fetch_add(1);
                } else {
                    failed.fetch_add(1);
                    std::lock_guard<std::mutex> l(mu);
                    ++errors[std::to_string(r.status.error_code()) + " " + r.status.error_message()];
                }
            }
        });
    ConcurrentStreams long_run(c, long_reqs);
    ASSERT_TRUE(long_run.wait_first_tokens());
    std::this_thread::sleep_for(500ms);
    for (int w = 0; w < 2; ++w) {
        EXPECT_EQ(c.restart_worker(w), 0) << "worker " << w << " did not drain cleanly";
        ASSERT_TRUE(c.wait_ready(2)) << "worker " << w << " did not come back";
        std::this_thread::sleep_for(300ms);
    }
    const std::vector<StreamResult> long_got = long_run.join();
    EXPECT_EQ(c.stop_front(), 0) << "the front did not drain cleanly";
    c.start_front();
    ASSERT_GT(c.port, 0) << "the front did not restart on its port";
    ASSERT_TRUE(c.wait_ready(2));
    std::this_thread::sleep_for(500ms);
    stop = true;
    for (auto& t : loop) t.join();
    std::printf("rolling restart (2 workers, then the front): %d requests ok, %d failed\n", ok.load(), failed.load());
    for (const auto& [e, n] : errors) std::printf("  %d x %s\n", n, e.c_str());
    EXPECT_EQ(failed.load(), 0);
    EXPECT_GT(ok.load(), 0);
    expect_same_streams(long_got, long_reference, long_reqs);
}

}  // namespace
}  // namespace dg::front::testing
