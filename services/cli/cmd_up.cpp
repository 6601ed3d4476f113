// deltagate up: a whole cluster on one machine — N `deltagate worker` child processes and a front in this
// process — for trying deltagate out. Ctrl-C (or SIGTERM) stops everything; children also die with us
// (PR_SET_PDEATHSIG) if this process is killed outright.
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/model_export.h"
#include "engine/model_source.h"
#include "engine/tokenizer/tokenizer.h"
#include "services/cli/command.h"
#include "services/cli/model_args.h"
#include "services/common/bearer_token.h"
#include "services/front/front_server.h"

namespace dg::cli {

extern const std::set<std::string> kFrontFlags;
absl::Status apply_front_flags(const ParsedFlags& f, front::FrontOptions& o);
void block_stop_signals();
int wait_for_stop_signal();

namespace {

// A free loopback port (bind to 0, read it back, close). Racy in principle; fine for a local cluster.
int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
        port = ntohs(a.sin_port);
    ::close(fd);
    return port;
}

// The workers accept only this front: a fresh random token (hex of 32 bytes from /dev/urandom) in a
// private file (0600) that each worker reads at start with --auth-token-file. Returns the file's path.
absl::StatusOr<std::string> write_random_token(std::string* token) {
    FILE* rnd = std::fopen("/dev/urandom", "rb");
    unsigned char bytes[32];
    const bool got = rnd && std::fread(bytes, 1, sizeof(bytes), rnd) == sizeof(bytes);
    if (rnd) std::fclose(rnd);
    if (!got) return absl::UnavailableError("cannot read /dev/urandom for the workers' token");
    token->clear();
    for (unsigned char b : bytes) absl::StrAppend(token, absl::Hex(b, absl::kZeroPad2));
    const char* tmp = std::getenv("TMPDIR");
    std::string path = absl::StrCat(tmp && *tmp ? tmp : "/tmp", "/deltagate-up-token.XXXXXX");
    const int fd = ::mkstemp(path.data());  // created 0600
    if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot create ", path, " for the workers' token"));
    const bool wrote = ::write(fd, token->data(), token->size()) == ssize_t(token->size());
    ::close(fd);
    if (!wrote) {
        ::unlink(path.c_str());
        return absl::UnavailableError(absl::StrCat("cannot write the workers' token to ", path));
    }
    return path;
}

pid_t spawn(const std::vector<std::string>& argv) {
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid != 0) return pid;
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);  // the parent died before prctl
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv("/proc/self/exe", args.data());
    std::perror("deltagate up: exec");
    ::_exit(127);
}

// The built-in tiny model with a real tokenizer's vocabulary embedded ("tiny-text" preset), cached next to
// the plain built-in model, so text and chat work without downloading a model.
absl::StatusOr<std::string> tiny_text_model(const std::string& tokenizer_path) {
    namespace fs = std::filesystem;
    auto base = default_model_path();
    if (!base.ok()) return base.status();
    const fs::path file = fs::path(*base).parent_path() / "tiny-text-f16.gguf";
    std::error_code ec;
    if (fs::exists(file, ec)) return file.string();
    auto tok = tok::load_tokenizer(tokenizer_path);
    if (!tok.ok()) return tok.status();
    auto cfg = preset_config("tiny-text");
    if (!cfg.ok()) return cfg.status();
    std::fprintf(stderr, "deltagate up: writing a tiny model with the vocabulary of %s to %s\n", tokenizer_path.c_str(),
                 file.string().c_str());
    GgufExportOptions opt;
    opt.type = "f16";
    opt.name = "deltagate built-in tiny-text (random weights)";
    opt.tokenizer = tok->get();
    const std::string tmp = file.string() + ".partial";
    if (auto s = export_gguf(random_model(*cfg, 0), tmp, opt); !s.ok()) return s;
    fs::rename(tmp, file, ec);
    if (ec) return absl::InternalError(absl::StrCat(file.string(), ": ", ec.message()));
    return file.string();
}

int run_up(const std::vector<std::string>& args) {
    auto flags = kFrontFlags;
    flags.insert({"model", "workers", "backend", "worker-arg"});
    auto f = parse_flags(args, flags, {"help"});
    if (!f.ok() || f->has("help")) {
        if (!f.ok()) std::fprintf(stderr, "deltagate up: %s\n", std::string(f.status().message()).c_str());
        std::fprintf(stderr,
                     "usage: deltagate up [--model PATH] [--workers N] [--backend cpu|cpu-exact|cuda|cuda-exact] [--listen HOST:PORT]\n"
                     "         [--metrics-listen HOST:PORT] [--http-listen HOST:PORT (default 127.0.0.1:8080; '' = off)]\n"
                     "         [--tokenizer tokenizer.json] [any `deltagate front` flag]\n"
                     "         [--worker-arg 'ARGS' (extra `deltagate worker` flags for every worker, space-separated)]\n"
                     "Starts N workers (default 2) and a front on this machine. Without --model: the built-in tiny\n"
                     "model (token ids only), or with --tokenizer, a tiny model carrying that tokenizer's vocabulary\n"
                     "(text and chat work; the weights are random, so the words are too). With --backend cuda the\n"
                     "workers share the GPU: each gets --gpu-memory-utilization 0.9/N unless --worker-arg sets it.\n");
        return f.ok() && f->has("help") ? 0 : 2;
    }
    int n = 2;
    if (auto w = f->get("workers"); w && (!absl::SimpleAtoi(*w, &n) || n < 1 || n > 64)) {
        std::fprintf(stderr, "deltagate up: --workers must be in [1, 64]\n");
        return 2;
    }
    front::FrontOptions o;
    o.listen = "127.0.0.1:50051";
    o.metrics_listen = "127.0.0.1:9400";
    o.http_listen = "127.0.0.1:8080";  // the OpenAI/Anthropic-compatible API, where llama-server serves it
    if (auto s = apply_front_flags(*f, o); !s.ok()) {
        std::fprintf(stderr, "deltagate up: %s\n", std::string(s.message()).c_str());
        return 2;
    }
    std::string model;
    if (auto m = f->get("model")) {
        model = *m;
    } else {
        auto p = o.tokenizer_path.empty() ? default_model_path() : tiny_text_model(o.tokenizer_path);
        if (!p.ok()) {
            std::fprintf(stderr, "deltagate up: %s\n", std::string(p.status().message()).c_str());
            return 1;
        }
        model = *p;
        if (!o.tokenizer_path.empty()) o.tokenizer_path = model;  // the GGUF now carries it
    }
    std::vector<std::string> extra = absl::StrSplit(f->get("worker-arg").value_or(""), ' ', absl::SkipWhitespace());
    const bool cuda = f->get("backend") == std::optional<std::string>("cuda");
    // Workers started together on one GPU each see it all free: split the budget, or the second one's
    // plan would count memory the first is about to take.
    if (cuda && n > 1 && std::none_of(extra.begin(), extra.end(), [](const std::string& a) {
            return a.rfind("--gpu-memory-utilization", 0) == 0;
        }))
        extra.insert(extra.end(), {"--gpu-memory-utilization", absl::StrCat(0.9 / n)});
    // The workers' token: the file given (--worker-token-file or $DELTAGATE_WORKER_TOKEN_FILE, already
    // read into o.pool.auth_token), else a fresh one, removed once the workers have read it.
    std::string token_file = f->get("worker-token-file").value_or("");
    if (token_file.empty() && !o.pool.auth_token.empty()) token_file = std::getenv(auth::kWorkerTokenFileEnv);
    bool own_token_file = false;
    if (o.pool.auth_token.empty()) {
        auto path = write_random_token(&o.pool.auth_token);
        if (!path.ok()) {
            std::fprintf(stderr, "deltagate up: %s\n", std::string(path.status().message()).c_str());
            return 1;
        }
        token_file = *path;
        own_token_file = true;
    }
    auto drop_token_file = [&] {
        if (own_token_file) ::unlink(token_file.c_str());
        own_token_file = false;
    };
    block_stop_signals();
    std::vector<pid_t> children;
    for (int i = 0; i < n; ++i) {
        const std::string addr = absl::StrCat("127.0.0.1:", free_port());
        std::vector<std::string> argv = {"deltagate", "worker", "--model", model, "--listen", addr,
                                         "--auth-token-file", token_file};
        if (auto b = f->get("backend")) argv.insert(argv.end(), {"--backend", *b});
        argv.insert(argv.end(), extra.begin(), extra.end());
        children.push_back(spawn(argv));
        o.pool.static_workers.push_back(addr);
    }
    auto stop_children = [&] {
        for (pid_t c : children) ::kill(c, SIGTERM);
        for (pid_t c : children) ::waitpid(c, nullptr, 0);
    };
    auto server = front::FrontServer::start(o);
    if (!server.ok()) {
        std::fprintf(stderr, "deltagate up: %s\n", std::string(server.status().message()).c_str());
        drop_token_file();
        stop_children();
        return 1;
    }
    // Waits (bounded: 120 s) for the workers; one that exits meanwhile (a bad --worker-arg, a model it
    // cannot load, memory that does not fit) ends `up` at once with its exit status.
    int up = 0;
    for (int waited_ms = 0; waited_ms < 120000 && up < n; waited_ms += 500) {
        for (size_t i = 0; i < children.size(); ++i) {
            int st = 0;
            if (::waitpid(children[i], &st, WNOHANG) != children[i]) continue;
            std::fprintf(stderr, "deltagate up: worker %zu exited during start (%s %d); its messages are above\n", i,
                         WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
            children.erase(children.begin() + long(i));
            (*server)->shutdown(0);
            server->reset();
            drop_token_file();
            stop_children();
            return 1;
        }
        up = (*server)->state().pool().wait_healthy(n, 500);
    }
    drop_token_file();  // a healthy worker has read it (at start, before loading the model)
    std::printf("deltagate up: front on 127.0.0.1:%d (gRPC deltagate.v1.Inference), %d/%d workers ready, model %s\n",
                (*server)->port(), up, n, model.c_str());
    if (!(*server)->metrics_address().empty())
        std::printf("  metrics: http://%s/metrics\n", (*server)->metrics_address().c_str());
    if (!(*server)->http_address().empty())
        std::printf("  http:    http://%s/v1 (OpenAI- and Anthropic-compatible; e.g. curl http://%s/v1/models)\n",
                    (*server)->http_address().c_str(), (*server)->http_address().c_str());
    std::printf("  try:     deltagate chat --front 127.0.0.1:%d\n  stop:    Ctrl-C\n", (*server)->port());
    std::fflush(stdout);
    wait_for_stop_signal();
    std::fprintf(stderr, "deltagate up: stopping\n");
    (*server)->shutdown(2000);
    server->reset();
    stop_children();
    return 0;
}

}  // namespace

DG_COMMAND("up", "a local cluster: a front and N workers on this machine (default: the built-in tiny model)", run_up);

}  // namespace dg::cli
