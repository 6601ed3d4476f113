// Integration: the front's optional TLS (--tls-cert/--tls-key) and bearer token (--auth-token or
// $DELTAGATE_AUTH_TOKEN), and worker discovery by DNS name (--workers-dns, --dns-refresh-ms): a real
// `deltagate front` and `deltagate worker` processes on loopback (built-in tiny model, CPU). The
// certificate is made at test time with openssl. Nothing here asserts on time; every wait is bounded.
#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "tests/unit/front/cluster.h"

namespace dg::front::testing {
namespace {

namespace v1 = ::deltagate::v1;
using namespace std::chrono_literals;

StreamResult generate(v1::Inference::Stub& stub, grpc::ClientContext* ctx, const v1::GenerateRequest& req) {
    auto reader = stub.Generate(ctx, req);
    return drain(reader);
}

std::unique_ptr<grpc::ClientContext> plain_context(std::chrono::milliseconds d = 60s) {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + d);
    return c;
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// ---------------------------------------------------------------------------------------------------
// TLS

class FrontTls : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_FALSE(dir_.path().empty()) << "cannot make a temporary directory";
        const std::string err = make_self_signed_cert(dir_.path());
        ASSERT_TRUE(err.empty()) << err << " (openssl is in deploy/install-deps.sh)";
    }
    TempDir dir_;
};

TEST_F(FrontTls, SecureClientStreamsInsecureClientFails) {
    ClusterOptions o;
    o.workers = 1;
    o.tls_cert = dir_.file("front.crt");
    o.tls_key = dir_.file("front.key");
    Cluster c(o);
    ASSERT_GT(c.port, 0) << "the front did not start with --tls-cert/--tls-key";
    ASSERT_TRUE(c.wait_ready(1)) << "no healthy worker seen over the TLS channel";

    // A client trusting the certificate streams a generation.
    auto ctx = c.context();
    auto r = generate(*c.stub, ctx.get(), ids_request({1, 2, 3, 4}, 6));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids(0).size(), 6u);
    ASSERT_TRUE(r.final_msg.has_value());
    EXPECT_EQ(r.final_msg->usage().completion_tokens(), 6);

    // Connecting by name (the certificate's DNS SAN) works too.
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = read_file(o.tls_cert);
    auto by_name = grpc::CreateChannel("localhost:" + std::to_string(c.port), grpc::SslCredentials(ssl));
    auto named = v1::Inference::NewStub(by_name);
    auto nctx = plain_context();
    v1::ListModelsResponse lm;
    EXPECT_TRUE(named->ListModels(nctx.get(), {}, &lm).ok());

    // Health answers over TLS.
    grpc::Status hs;
    EXPECT_EQ(wait_health(c.channel, "", 1, &hs), 1) << hs.error_message();

    // A plaintext client cannot talk to a TLS port.
    auto insecure = v1::Inference::NewStub(grpc::CreateChannel(c.target, grpc::InsecureChannelCredentials()));
    auto ictx = plain_context(10s);
    auto ir = generate(*insecure, ictx.get(), ids_request({1, 2, 3}, 2));
    EXPECT_FALSE(ir.status.ok());
    EXPECT_EQ(ir.status.error_code(), grpc::StatusCode::UNAVAILABLE) << ir.status.error_message();
    EXPECT_TRUE(ir.deltas.empty());

    // Nor can a TLS client that trusts a different certificate (no silent fallback to "accept anything").
    ASSERT_TRUE(make_self_signed_cert(dir_.path(), "other").empty());
    grpc::SslCredentialsOptions wrong;
    wrong.pem_root_certs = read_file(dir_.file("other.crt"));
    auto untrusted = v1::Inference::NewStub(grpc::CreateChannel(c.target, grpc::SslCredentials(wrong)));
    auto uctx = plain_context(10s);
    auto ur = generate(*untrusted, uctx.get(), ids_request({1, 2, 3}, 2));
    EXPECT_EQ(ur.status.error_code(), grpc::StatusCode::UNAVAILABLE) << ur.status.error_message();
}

// The kubelet's gRPC probe cannot speak TLS: --health-listen serves grpc.health.v1 alone in plaintext,
// with the TLS port's status; the API stays TLS-only.
TEST_F(FrontTls, PlaintextHealthPortForProbes) {
    ClusterOptions o;
    o.workers = 1;
    o.tls_cert = dir_.file("front.crt");
    o.tls_key = dir_.file("front.key");
    o.front_args = {"--health-listen", "127.0.0.1:0"};
    Cluster c(o);
    ASSERT_GT(c.port, 0);
    ASSERT_GT(c.health_port, 0) << "the front did not print its health port";
    ASSERT_TRUE(c.wait_ready(1));
    auto plain = grpc::CreateChannel("127.0.0.1:" + std::to_string(c.health_port), grpc::InsecureChannelCredentials());
    grpc::Status hs;
    EXPECT_EQ(wait_health(plain, "deltagate.v1.Inference", 1, &hs), 1) << hs.error_message();
    EXPECT_EQ(wait_health(plain, "", 1, &hs), 1) << hs.error_message();
    // Only health there: the inference API is not served in plaintext on that port.
    auto stub = v1::Inference::NewStub(plain);
    auto ctx = plain_context(10s);
    v1::ListModelsResponse lm;
    EXPECT_EQ(stub->ListModels(ctx.get(), {}, &lm).error_code(), grpc::StatusCode::UNIMPLEMENTED);
    // Workers gone: both ports say NOT_SERVING.
    c.kill_worker(0);
    EXPECT_EQ(wait_health(plain, "deltagate.v1.Inference", 2, &hs), 2) << hs.error_message();  // NOT_SERVING
    EXPECT_EQ(wait_health(c.channel, "deltagate.v1.Inference", 2, &hs), 2) << hs.error_message();
}

TEST_F(FrontTls, CertificateWithoutKeyIsAStartupError) {
    std::string err;
    const int rc = run_command({deltagate_binary(), "front", "--listen", "127.0.0.1:0", "--workers", "127.0.0.1:1",
                                "--tls-cert", dir_.file("front.crt")},
                               60, nullptr, &err);
    EXPECT_NE(rc, 0);
    EXPECT_TRUE(contains(err, "--tls-key")) << err;
    err.clear();
    const int rc2 = run_command({deltagate_binary(), "front", "--listen", "127.0.0.1:0", "--workers", "127.0.0.1:1",
                                 "--tls-cert", dir_.file("front.crt"), "--tls-key", dir_.file("missing.key")},
                                60, nullptr, &err);
    EXPECT_NE(rc2, 0);
    EXPECT_TRUE(contains(err, "missing.key")) << err;
}

// ---------------------------------------------------------------------------------------------------
// Bearer token

// Every Inference RPC without the right token: UNAUTHENTICATED, with a message that says what to send.
void expect_every_rpc_needs_the_token(Cluster& c) {
    struct Try {
        const char* what;
        std::function<void(grpc::ClientContext*)> add;  // metadata
        const char* needle;
    };
    const std::vector<Try> tries = {
        {"no token", [](grpc::ClientContext*) {}, "authorization: Bearer"},
        {"wrong token", [](grpc::ClientContext* x) { x->AddMetadata("authorization", "Bearer not-the-token"); },
         "not valid"},
        {"token without 'Bearer '", [](grpc::ClientContext* x) { x->AddMetadata("authorization", "s3cret-token"); },
         "not valid"},
        {"a prefix of the token", [](grpc::ClientContext* x) { x->AddMetadata("authorization", "Bearer s3cret"); },
         "not valid"},
    };
    for (const auto& t : tries) {
        SCOPED_TRACE(t.what);
        auto g = plain_context();
        t.add(g.get());
        auto r = generate(*c.stub, g.get(), ids_request({1, 2, 3}, 2));
        EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << r.status.error_message();
        EXPECT_TRUE(contains(r.status.error_message(), t.needle)) << r.status.error_message();
        EXPECT_TRUE(r.deltas.empty());

        auto b = plain_context();
        t.add(b.get());
        v1::BatchGenerateRequest breq;
        breq.mutable_prefix()->mutable_token_ids()->add_ids(1);
        breq.add_continuations();
        auto breader = c.stub->BatchGenerate(b.get(), breq);
        EXPECT_EQ(drain(breader).status.error_code(), grpc::StatusCode::UNAUTHENTICATED);

        auto l = plain_context();
        t.add(l.get());
        v1::ListModelsResponse lm;
        EXPECT_EQ(c.stub->ListModels(l.get(), {}, &lm).error_code(), grpc::StatusCode::UNAUTHENTICATED);

        auto k = plain_context();
        t.add(k.get());
        v1::TokenizeRequest treq;
        treq.mutable_prompt()->mutable_token_ids()->add_ids(1);
        v1::TokenizeResponse tresp;
        EXPECT_EQ(c.stub->Tokenize(k.get(), treq, &tresp).error_code(), grpc::StatusCode::UNAUTHENTICATED);

        auto d = plain_context();
        t.add(d.get());
        v1::DetokenizeRequest dreq;
        v1::DetokenizeResponse dresp;
        EXPECT_EQ(c.stub->Detokenize(d.get(), dreq, &dresp).error_code(), grpc::StatusCode::UNAUTHENTICATED);

        auto a = plain_context();
        t.add(a.get());
        v1::AbortRequest areq;
        areq.add_request_ids("x");
        v1::AbortResponse aresp;
        EXPECT_EQ(c.stub->Abort(a.get(), areq, &aresp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
    }
}

TEST(FrontAuth, BearerTokenFromFlag) {
    ClusterOptions o;
    o.workers = 1;
    o.auth_token = "s3cret-token";
    Cluster c(o);
    ASSERT_GT(c.port, 0);
    ASSERT_TRUE(c.wait_ready(1)) << "ListModels with the token never saw a healthy worker";

    expect_every_rpc_needs_the_token(c);

    // The right token works for every RPC.
    auto ctx = c.context();
    auto r = generate(*c.stub, ctx.get(), ids_request({1, 2, 3}, 4));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids(0).size(), 4u);
    auto actx = c.context();
    v1::AbortRequest areq;
    areq.add_request_ids("nothing-running");
    v1::AbortResponse aresp;
    EXPECT_TRUE(c.stub->Abort(actx.get(), areq, &aresp).ok());

    // Health stays open for probes: no token needed.
    grpc::Status hs;
    EXPECT_EQ(wait_health(c.channel, "", 1, &hs), 1) << hs.error_message();
    EXPECT_EQ(wait_health(c.channel, "deltagate.v1.Inference", 1, &hs), 1) << hs.error_message();

    // Rejections are counted by code.
    const std::string metrics = http_get(c.metrics_port, "/metrics");
    EXPECT_TRUE(contains(metrics, "deltagate_front_requests_total{rpc=\"Generate\",code=\"UNAUTHENTICATED\",protocol=\"grpc\"} 4"))
        << metrics;
}

TEST(FrontAuth, BearerTokenFromEnvironment) {
    ClusterOptions o;
    o.workers = 1;
    o.auth_token = "token-from-env";
    o.auth_token_in_env = true;  // DELTAGATE_AUTH_TOKEN for the front, no --auth-token flag
    Cluster c(o);
    ASSERT_GT(c.port, 0);
    ASSERT_TRUE(c.wait_ready(1)) << "ListModels with the token never saw a healthy worker";

    auto none = plain_context();
    auto r0 = generate(*c.stub, none.get(), ids_request({5, 6}, 2));
    EXPECT_EQ(r0.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << r0.status.error_message();
    EXPECT_TRUE(contains(r0.status.error_message(), "bearer token")) << r0.status.error_message();

    auto ok = c.context();
    auto r = generate(*c.stub, ok.get(), ids_request({5, 6}, 3));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids(0).size(), 3u);

    grpc::Status hs;
    EXPECT_EQ(wait_health(c.channel, "", 1, &hs), 1) << hs.error_message();
}

// TLS and a token together (the deployment shape), with the token sent the way gRPC clients usually do:
// call credentials (grpc::AccessTokenCredentials adds "authorization: Bearer <token>").
TEST_F(FrontTls, BearerTokenOverTlsWithCallCredentials) {
    ClusterOptions o;
    o.workers = 1;
    o.tls_cert = dir_.file("front.crt");
    o.tls_key = dir_.file("front.key");
    o.auth_token = "tls-token";
    Cluster c(o);
    ASSERT_GT(c.port, 0);
    ASSERT_TRUE(c.wait_ready(1));

    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = read_file(o.tls_cert);
    auto creds = grpc::CompositeChannelCredentials(grpc::SslCredentials(ssl), grpc::AccessTokenCredentials("tls-token"));
    auto stub = v1::Inference::NewStub(grpc::CreateChannel(c.target, creds));
    auto ctx = plain_context();
    auto r = generate(*stub, ctx.get(), ids_request({7, 8, 9}, 3));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids(0).size(), 3u);

    auto wrong_creds =
        grpc::CompositeChannelCredentials(grpc::SslCredentials(ssl), grpc::AccessTokenCredentials("other-token"));
    auto wrong = v1::Inference::NewStub(grpc::CreateChannel(c.target, wrong_creds));
    auto wctx = plain_context();
    auto wr = generate(*wrong, wctx.get(), ids_request({7, 8, 9}, 3));
    EXPECT_EQ(wr.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << wr.status.error_message();

    grpc::Status hs;
    EXPECT_EQ(wait_health(c.channel, "", 1, &hs), 1) << hs.error_message();
}

// ---------------------------------------------------------------------------------------------------
// Workers found by DNS name

// `localhost:PORT` resolves (getaddrinfo, as the front does) to 127.0.0.1 and, on machines with IPv6
// loopback in /etc/hosts, ::1: one worker on each address the name gives, all of which must turn healthy.
TEST(FrontDns, WorkersFromLocalhostName) {
    const int port = free_port();
    std::vector<std::string> listen;
    for (const auto& ip : resolve_host("localhost"))
        if (can_listen(ip, port)) listen.push_back(ip + ":" + std::to_string(port));
    ASSERT_FALSE(listen.empty()) << "localhost resolves to no address this test can listen on";
    if (listen.size() == 1) std::printf("note: localhost resolves to %s only (no IPv6 loopback entry)\n", listen[0].c_str());

    ClusterOptions o;
    o.worker_listen = listen;
    o.workers_dns = "localhost:" + std::to_string(port);
    o.front_args = {"--dns-refresh-ms", "200"};
    Cluster c(o);
    ASSERT_GT(c.port, 0);
    ASSERT_TRUE(c.wait_ready(int(listen.size()))) << "expected " << listen.size() << " healthy workers";
    auto info = c.model_info();
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->workers_healthy(), int(listen.size()));
    EXPECT_EQ(info->workers_total(), int(resolve_host("localhost").size()));

    std::set<std::string> served;
    for (int i = 0; i < 2 * int(listen.size()); ++i) {
        auto ctx = c.context();
        auto r = generate(*c.stub, ctx.get(), ids_request({1, 2, 3, 4 + i}, 4));
        ASSERT_TRUE(r.status.ok()) << r.status.error_message();
        ASSERT_TRUE(r.final_msg.has_value());
        served.insert(r.final_msg->worker());
    }
    for (const auto& w : served)
        EXPECT_NE(std::find(listen.begin(), listen.end(), w), listen.end()) << "served by " << w << ", not a resolved address";
}

// A worker that starts after the front (nothing listening yet at the resolved address) is picked up:
// before it, health is NOT_SERVING and Generate is UNAVAILABLE; after it, both work.
TEST(FrontDns, WorkerStartedLaterIsPickedUp) {
    const int port = free_port();
    ClusterOptions o;
    o.worker_listen = {};
    o.workers = 0;
    o.workers_dns = "localhost:" + std::to_string(port);
    o.front_args = {"--dns-refresh-ms", "200"};
    Cluster c(o);
    ASSERT_GT(c.port, 0) << "a front whose DNS name has no ready worker yet must still start";

    grpc::Status hs;
    int h = -1;
    for (int i = 0; i < 100 && (h = health_check(c.channel, "", &hs)) != 2; ++i) std::this_thread::sleep_for(100ms);
    EXPECT_EQ(h, 2) << "health should be NOT_SERVING with no worker: " << hs.error_message();
    auto ctx = c.context(30s);
    auto r0 = generate(*c.stub, ctx.get(), ids_request({1, 2}, 2));
    EXPECT_EQ(r0.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r0.status.error_message();

    c.start_worker("127.0.0.1:" + std::to_string(port));
    ASSERT_TRUE(c.wait_ready(1)) << "the worker started after the front was never picked up";
    for (int i = 0; i < 100 && (h = health_check(c.channel, "", &hs)) != 1; ++i) std::this_thread::sleep_for(100ms);
    EXPECT_EQ(h, 1) << hs.error_message();
    auto ctx2 = c.context();
    auto r = generate(*c.stub, ctx2.get(), ids_request({1, 2, 3}, 4));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    ASSERT_TRUE(r.final_msg.has_value());
    EXPECT_EQ(r.final_msg->worker(), "127.0.0.1:" + std::to_string(port));
}

}  // namespace
}  // namespace dg::front::testing
