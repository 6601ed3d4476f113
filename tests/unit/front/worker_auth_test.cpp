// Integration: workers that require the shared token (--auth-token-file) behind a front that sends it
// (--worker-token-file), all real processes on loopback. Through the front everything works — Generate,
// and an Abort that a second front replica carries to the workers' Abort RPC — while a direct call to a
// worker without the credential, or with a wrong one, is refused with UNAUTHENTICATED.
// Nothing here asserts on time.
#include <gtest/gtest.h>

#include <fstream>

#include "deltagate/worker/v1/worker.grpc.pb.h"
#include "services/common/bearer_token.h"
#include "tests/unit/front/cluster.h"

namespace dg::front::testing {
namespace {

namespace v1 = ::deltagate::v1;
namespace wpb = ::deltagate::worker::v1;
using namespace std::chrono_literals;

constexpr const char* kToken = "c1uster-worker-token";

class WorkerAuthCluster : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_FALSE(dir_.path().empty());
        std::ofstream(dir_.file("token")) << kToken << "\n";
        ClusterOptions o;
        o.worker_token_file = dir_.file("token");
        cluster_ = std::make_unique<Cluster>(o);
        ASSERT_GT(cluster_->port, 0) << "the front did not print its port";
        ASSERT_TRUE(cluster_->wait_ready(2)) << "workers did not become healthy behind a front with their token";
    }
    // GetInfo straight to worker 0 with `token` attached ("" = none).
    grpc::Status direct_get_info(const std::string& token) {
        auto stub = wpb::Worker::NewStub(auth::channel_with_token(
            cluster_->worker_addrs[0], grpc::InsecureChannelCredentials(), grpc::ChannelArguments(), token));
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + 30s);  // hang guard only
        wpb::WorkerInfo info;
        return stub->GetInfo(&ctx, {}, &info);
    }
    TempDir dir_;
    std::unique_ptr<Cluster> cluster_;
};

TEST_F(WorkerAuthCluster, DirectCallsNeedTheTokenTheFrontSends) {
    // Through the front: a generation.
    auto ctx = cluster_->context();
    auto reader = cluster_->stub->Generate(ctx.get(), ids_request({1, 2, 3, 4}, 6));
    auto r = drain(reader);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids(0).size(), 6u);

    // Straight to a worker: refused without the token and with a wrong one; served with it.
    grpc::Status none = direct_get_info("");
    EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED) << none.error_message();
    EXPECT_NE(none.error_message().find("accepts only fronts"), std::string::npos) << none.error_message();
    grpc::Status wrong = direct_get_info("c1uster-worker-tokeN");
    EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED) << wrong.error_message();
    EXPECT_TRUE(direct_get_info(kToken).ok());
    // A direct Generate without the token runs nothing.
    auto plain = wpb::Worker::NewStub(grpc::CreateChannel(cluster_->worker_addrs[1], grpc::InsecureChannelCredentials()));
    grpc::ClientContext gctx;
    gctx.set_deadline(std::chrono::system_clock::now() + 30s);
    wpb::GenerateRequest greq;
    greq.add_prompt_token_ids(1);
    greq.set_max_tokens(4);
    auto greader = plain->Generate(&gctx, greq);
    wpb::GenerateEvent ev;
    EXPECT_FALSE(greader->Read(&ev));
    EXPECT_EQ(greader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// The Abort RPC to the workers carries the token too: a second replica (with the same token file) ends a
// stream the first one runs, which it can only do by asking the workers.
TEST_F(WorkerAuthCluster, AbortFromAnotherReplicaReachesTheWorkers) {
    std::string workers;
    for (const auto& a : cluster_->worker_addrs) workers += (workers.empty() ? "" : ",") + a;
    int out = -1;
    const pid_t other = spawn({deltagate_binary(), "front", "--listen", "127.0.0.1:0", "--workers", workers},
                              {"DELTAGATE_WORKER_TOKEN_FILE=" + dir_.file("token")}, &out);  // the env form
    const std::string line = read_line(out);
    ::close(out);
    int port = 0;
    std::sscanf(line.c_str(), "front listening on port %d", &port);
    ASSERT_GT(port, 0) << line;
    auto other_stub = v1::Inference::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));

    auto req = ids_request({1, 2, 3}, 4000);
    req.set_request_id("abort-with-token");
    auto ctx = cluster_->context();
    auto reader = cluster_->stub->Generate(ctx.get(), req);
    v1::GenerateResponse m;
    ASSERT_TRUE(reader->Read(&m));  // running on a worker
    int found = 0;
    const grpc::Status st = abort_until_found(*other_stub, "abort-with-token", 600, &found);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(found, 1);
    auto r = drain(reader);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED) << r.status.error_message();
    ::kill(other, SIGTERM);
    ::waitpid(other, nullptr, 0);
}

}  // namespace
}  // namespace dg::front::testing
