// The real `deltagate worker` process on loopback: it prints where it listens, serves a generation and
// /metrics, drains on SIGTERM (the in-flight stream completes, the process exits 0), and a SIGKILL
// mid-stream ends the client's stream with UNAVAILABLE; with --auth-token-file it refuses calls without
// the token (UNAUTHENTICATED) and serves those with it. Run by CTest as worker_process
// (tests/cmake/worker.cmake sets DG_DELTAGATE_BIN); skipped when the variable is not set.
// Bounded: every wait has a hang guard, and the child is SIGKILLed on any exit path.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "tests/unit/worker/prom_parser.h"
#include "tests/unit/worker/worker_test_util.h"

namespace dg::worker::testing {
namespace {

class Child {
public:
    explicit Child(const std::vector<std::string>& args) {
        int out[2];
        if (::pipe(out) != 0) return;
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(out[1], 1);
            ::close(out[0]);
            ::close(out[1]);
            std::vector<char*> argv;
            for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            std::_Exit(127);
        }
        ::close(out[1]);
        out_ = ::fdopen(out[0], "r");
    }
    ~Child() {
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        if (out_) std::fclose(out_);
    }
    // The first stdout line ("deltagate worker: gRPC on HOST:PORT, metrics on http://HOST:PORT/metrics ...").
    std::string first_line() {
        char buf[1024];
        return out_ && std::fgets(buf, sizeof buf, out_) ? std::string(buf) : std::string();
    }
    void signal(int sig) { ::kill(pid_, sig); }
    // Exit status, or -1 when it did not exit within the hang guard (then it is killed).
    int wait_exit(int guard_s = 60) {
        for (int i = 0; i < guard_s * 100; ++i) {
            int st = 0;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {
                reaped_ = true;
                return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            }
            ::usleep(10000);
        }
        return -1;
    }

private:
    pid_t pid_ = -1;
    bool reaped_ = false;
    FILE* out_ = nullptr;
};

std::string between(const std::string& s, const std::string& a, const std::string& b) {
    const size_t i = s.find(a);
    if (i == std::string::npos) return {};
    const size_t j = s.find(b, i + a.size());
    return s.substr(i + a.size(), j == std::string::npos ? std::string::npos : j - i - a.size());
}

const char* binary() { return std::getenv("DG_DELTAGATE_BIN"); }

std::vector<std::string> worker_args() {
    return {binary(), "worker", "--model", fixture_path("dense"), "--backend", "cpu", "--kv-type", "f32",
            "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--max-running", "2"};
}

TEST(Process, ServesDrainsOnSigterm) {
    if (!binary()) GTEST_SKIP() << "DG_DELTAGATE_BIN not set (run through CTest: worker_process)";
    Child c(worker_args());
    const std::string line = c.first_line();
    const std::string addr = between(line, "gRPC on ", ",");
    const std::string metrics = between(line, "http://", "/metrics");
    ASSERT_FALSE(addr.empty()) << line;
    ASSERT_FALSE(metrics.empty()) << line;
    EXPECT_EQ(addr.rfind("127.0.0.1:", 0), 0u);

    auto channel = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
    auto stub = pb::Worker::NewStub(channel);
    const auto prompt = iota_prompt(24);
    {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        auto reader = stub->Generate(&ctx, greedy(prompt, 8));
        Result r;
        pb::GenerateEvent e;
        while (reader->Read(&e)) record(e, &r);
        ASSERT_TRUE(reader->Finish().ok());
        EXPECT_EQ(r.tokens[0], cold_greedy("dense", prompt, 8));
    }

    // A long stream in flight when SIGTERM arrives still completes; the process then exits 0.
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = stub->Generate(&ctx, greedy(prompt, 300));
    pb::GenerateEvent e;
    ASSERT_TRUE(reader->Read(&e));
    c.signal(SIGTERM);
    int n = 1;
    while (reader->Read(&e)) ++n;
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_EQ(n, 300);
    EXPECT_EQ(c.wait_exit(), 0);
}

TEST(Process, KilledMidStreamGivesUnavailable) {
    if (!binary()) GTEST_SKIP() << "DG_DELTAGATE_BIN not set (run through CTest: worker_process)";
    Child c(worker_args());
    const std::string addr = between(c.first_line(), "gRPC on ", ",");
    ASSERT_FALSE(addr.empty());
    auto stub = pb::Worker::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = stub->Generate(&ctx, greedy(iota_prompt(16), 100000));
    pb::GenerateEvent e;
    ASSERT_TRUE(reader->Read(&e));
    c.signal(SIGKILL);
    while (reader->Read(&e)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(c.wait_exit(), 128 + SIGKILL);
}

// A real worker process started with --auth-token-file: a direct call without the credential, or with a
// wrong one, is refused with UNAUTHENTICATED; the same call with the token (what a front sends) is served.
TEST(Process, RefusesCallsWithoutTheToken) {
    if (!binary()) GTEST_SKIP() << "DG_DELTAGATE_BIN not set (run through CTest: worker_process)";
    const std::string token_file = ::testing::TempDir() + "/worker-process-token";
    std::FILE* f = std::fopen(token_file.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("process-test-token-0123456789\n", f);
    std::fclose(f);
    auto args = worker_args();
    args.insert(args.end(), {"--auth-token-file", token_file});
    Child c(args);
    const std::string addr = between(c.first_line(), "gRPC on ", ",");
    ASSERT_FALSE(addr.empty());
    auto run = [&](const std::string& token) {
        auto stub = pb::Worker::NewStub(
            auth::channel_with_token(addr, grpc::InsecureChannelCredentials(), grpc::ChannelArguments(), token));
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        auto reader = stub->Generate(&ctx, greedy(iota_prompt(12), 4));
        Result r;
        pb::GenerateEvent e;
        while (reader->Read(&e)) record(e, &r);
        r.status = reader->Finish();
        return r;
    };
    Result none = run("");
    EXPECT_EQ(none.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << none.status.error_message();
    EXPECT_TRUE(none.events.empty());
    Result wrong = run("process-test-token-012345678");
    EXPECT_EQ(wrong.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << wrong.status.error_message();
    EXPECT_TRUE(wrong.events.empty());
    Result right = run("process-test-token-0123456789");
    ASSERT_TRUE(right.status.ok()) << right.status.error_message();
    EXPECT_EQ(right.tokens[0], cold_greedy("dense", iota_prompt(12), 4));
    c.signal(SIGTERM);
    EXPECT_EQ(c.wait_exit(), 0);
}

// A token file that cannot be used stops the worker at start with a message naming the flag.
TEST(Process, BadTokenFileStopsTheStart) {
    if (!binary()) GTEST_SKIP() << "DG_DELTAGATE_BIN not set (run through CTest: worker_process)";
    auto args = worker_args();
    args.insert(args.end(), {"--auth-token-file", ::testing::TempDir() + "/no-such-token-file"});
    Child c(args);
    EXPECT_EQ(c.first_line(), "");  // nothing on stdout: it never listened
    EXPECT_EQ(c.wait_exit(), 2);
}

}  // namespace
}  // namespace dg::worker::testing
