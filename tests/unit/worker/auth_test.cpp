// The worker's shared bearer token (docs/reliability.md "Worker authentication"): every method of
// deltagate.worker.v1.Worker refuses a call without the token, with a wrong one, or with another scheme,
// with UNAUTHENTICATED and a message saying what to do; the right token is served as before; the
// standard health service stays open for probes (which cannot send metadata). Also the token file rules
// and the constant-time compare.
#include <fstream>

#include <grpcpp/impl/client_unary_call.h>

#include <google/protobuf/descriptor.h>

#include "services/common/bearer_token.h"
#include "tests/support/grpc_health.h"
#include "tests/unit/worker/worker_test_util.h"

namespace dg::worker::testing {
namespace {

constexpr const char* kToken = "s3cr3t-t0ken_for.tests~1";

WorkerOptions with_token() {
    WorkerOptions o = test_options();
    o.auth_token = kToken;
    return o;
}

// One call of `method` ("/pkg.Service/Method") with an empty request and `authorization` metadata (none
// when empty), as a unary call: a refused call ends with its status before any message, whatever the
// method's kind.
grpc::Status raw_call(const std::shared_ptr<grpc::Channel>& ch, const std::string& method,
                      const std::string& authorization) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));  // hang guard only
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    grpc::ByteBuffer in, out;
    grpc::Slice empty("");
    in = grpc::ByteBuffer(&empty, 1);
    return grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
        ch.get(), grpc::internal::RpcMethod(method.c_str(), grpc::internal::RpcMethod::NORMAL_RPC), &ctx, in, &out);
}

// Every method the service descriptor lists, so a method added later without the check fails here.
std::vector<std::string> worker_methods() {
    const auto* svc = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
        pb::Worker::service_full_name());
    std::vector<std::string> out;
    if (!svc) return out;
    for (int i = 0; i < svc->method_count(); ++i)
        out.push_back("/" + svc->full_name() + "/" + svc->method(i)->name());
    return out;
}

TEST(WorkerAuth, EveryMethodRefusesWithoutTheToken) {
    Worker w(with_token());
    auto plain = grpc::CreateChannel(w.server->address(), grpc::InsecureChannelCredentials());
    const auto methods = worker_methods();
    ASSERT_GE(methods.size(), 4u);  // Generate, Abort, GetInfo, WatchLoad
    for (const std::string& m : methods) {
        SCOPED_TRACE(m);
        grpc::Status none = raw_call(plain, m, "");
        EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED) << none.error_message();
        EXPECT_NE(none.error_message().find("authorization: Bearer <token>"), std::string::npos) << none.error_message();
        grpc::Status wrong = raw_call(plain, m, "Bearer not-the-token");
        EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED) << wrong.error_message();
        EXPECT_NE(wrong.error_message().find("does not match"), std::string::npos) << wrong.error_message();
        // The right token as a prefix, or with a byte more, is still wrong.
        EXPECT_EQ(raw_call(plain, m, std::string("Bearer ") + kToken + "x").error_code(),
                  grpc::StatusCode::UNAUTHENTICATED);
        EXPECT_EQ(raw_call(plain, m, std::string("Bearer ") + std::string(kToken).substr(0, 5)).error_code(),
                  grpc::StatusCode::UNAUTHENTICATED);
        grpc::Status basic = raw_call(plain, m, std::string("Basic ") + kToken);
        EXPECT_EQ(basic.error_code(), grpc::StatusCode::UNAUTHENTICATED) << basic.error_message();
        EXPECT_NE(basic.error_message().find("not 'Bearer <token>'"), std::string::npos) << basic.error_message();
    }
    // The refused calls reached nothing: the engine never saw a request.
    w.expect_idle_and_sound(true);
}

TEST(WorkerAuth, TheRightTokenIsServed) {
    Worker w(with_token());  // its stub sends the token through auth::channel_with_token
    pb::WorkerInfo info;
    {
        grpc::ClientContext ctx;
        ASSERT_TRUE(w.stub->GetInfo(&ctx, {}, &info).ok());
    }
    const auto prompt = iota_prompt(20);
    Result r = w.generate(greedy(prompt, 6));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens[0], cold_greedy("dense", prompt, 6));
    // A streaming method too: WatchLoad delivers its first report.
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));  // hang guard only
    auto reader = w.stub->WatchLoad(&ctx, pb::WatchLoadRequest());
    pb::LoadReport rep;
    EXPECT_TRUE(reader->Read(&rep));
    ctx.TryCancel();
    while (reader->Read(&rep)) {
    }
    (void)reader->Finish();
    // The scheme is case-insensitive (RFC 7235): "bearer" is the same credential.
    auto plain = grpc::CreateChannel(w.server->address(), grpc::InsecureChannelCredentials());
    EXPECT_TRUE(raw_call(plain, "/deltagate.worker.v1.Worker/GetInfo", std::string("bearer ") + kToken).ok());
}

TEST(WorkerAuth, HealthStaysOpenForProbes) {
    Worker w(with_token());
    auto plain = grpc::CreateChannel(w.server->address(), grpc::InsecureChannelCredentials());
    grpc::Status st;
    EXPECT_EQ(dg::testing::grpc_health_check(plain.get(), "", &st), 1) << st.error_message();
    EXPECT_EQ(dg::testing::grpc_health_check(plain.get(), kWorkerServiceName, &st), 1) << st.error_message();
}

TEST(WorkerAuth, NoTokenMeansOpen) {
    Worker w(test_options());
    auto plain = grpc::CreateChannel(w.server->address(), grpc::InsecureChannelCredentials());
    EXPECT_TRUE(raw_call(plain, "/deltagate.worker.v1.Worker/GetInfo", "").ok());
}

std::string write_file(const std::string& name, const std::string& text) {
    const std::string path = ::testing::TempDir() + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
}

TEST(WorkerAuth, TokenFileRules) {
    auto t = auth::read_token_file(write_file("tok_nl", "  abc-DEF_123.~+/=\n"));
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(*t, "abc-DEF_123.~+/=");  // `echo token > file` leaves a newline: trimmed
    auto empty = auth::read_token_file(write_file("tok_empty", " \n"));
    EXPECT_FALSE(empty.ok());
    EXPECT_NE(empty.status().message().find("is empty"), std::string::npos) << empty.status();
    auto inner_space = auth::read_token_file(write_file("tok_space", "abc def\n"));
    EXPECT_FALSE(inner_space.ok());
    EXPECT_NE(inner_space.status().message().find("character"), std::string::npos) << inner_space.status();
    auto missing = auth::read_token_file(::testing::TempDir() + "/no-such-token-file");
    EXPECT_FALSE(missing.ok());
    EXPECT_NE(missing.status().message().find("no-such-token-file"), std::string::npos) << missing.status();
    // The flag wins over the environment; its errors name the flag.
    auto flagged = auth::token_from_file_or_env(::testing::TempDir() + "/no-such-token-file", "--auth-token-file");
    EXPECT_NE(flagged.status().message().find("--auth-token-file"), std::string::npos) << flagged.status();
}

TEST(WorkerAuth, ConstantTimeEqual) {
    EXPECT_TRUE(auth::constant_time_equal("abc", "abc"));
    EXPECT_FALSE(auth::constant_time_equal("abd", "abc"));
    EXPECT_FALSE(auth::constant_time_equal("ab", "abc"));
    EXPECT_FALSE(auth::constant_time_equal("abcd", "abc"));
    EXPECT_FALSE(auth::constant_time_equal("", "abc"));
    EXPECT_FALSE(auth::constant_time_equal(std::string_view("abc\0", 4), "abc"));
    EXPECT_TRUE(auth::constant_time_equal("", ""));
}

}  // namespace
}  // namespace dg::worker::testing
