// deltagate front: the stateless gRPC front (docs/front.md) in front of running workers.
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/cli/command.h"
#include "services/cli/flags.h"
#include "services/common/bearer_token.h"
#include "services/front/front_server.h"

namespace dg::cli {

// Shared with cmd_up.cpp: the front's flags and their parsing.
extern const std::set<std::string> kFrontFlags;
absl::Status apply_front_flags(const ParsedFlags& f, front::FrontOptions& o);
// Blocks SIGINT/SIGTERM in this thread and every thread started after (call it first), so that
// wait_for_stop_signal() receives them.
void block_stop_signals();
int wait_for_stop_signal();

const std::set<std::string> kFrontFlags = {
    "listen", "metrics-listen", "health-listen", "http-listen", "http-cors-origins", "http-template", "tokenizer", "model-name", "max-prompt-tokens", "max-tokens", "max-fanout",
    "max-message-bytes", "max-inflight", "tls-cert", "tls-key", "auth-token", "load-penalty", "max-attempts", "max-migrations",
    "worker-keepalive-ms", "worker-token-file"};

absl::Status apply_front_flags(const ParsedFlags& f, front::FrontOptions& o) {
    auto num = [&](const char* name, auto& out, int64_t lo, int64_t hi) -> absl::Status {
        auto v = f.get(name);
        if (!v) return absl::OkStatus();
        int64_t x = 0;
        if (!absl::SimpleAtoi(*v, &x) || x < lo || x > hi)
            return absl::InvalidArgumentError(std::string("--") + name + " must be an integer in [" + std::to_string(lo) +
                                              ", " + std::to_string(hi) + "]");
        out = static_cast<std::remove_reference_t<decltype(out)>>(x);
        return absl::OkStatus();
    };
    if (auto v = f.get("listen")) o.listen = *v;
    if (auto v = f.get("metrics-listen")) o.metrics_listen = *v;
    if (auto v = f.get("health-listen")) o.health_listen = *v;
    if (auto v = f.get("http-listen")) o.http_listen = *v;
    if (auto v = f.get("http-cors-origins"))
        o.http_cors_origins = absl::StrSplit(*v, ',', absl::SkipWhitespace());
    if (auto v = f.get("http-template")) {
        if (*v != "prefix-stable" && *v != "official")
            return absl::InvalidArgumentError("--http-template must be prefix-stable or official");
        o.http_prefix_stable = *v == "prefix-stable";
    }
    if (auto v = f.get("tokenizer")) o.tokenizer_path = *v;
    if (auto v = f.get("model-name")) o.model_name = *v;
    if (auto v = f.get("tls-cert")) o.tls_cert = *v;
    if (auto v = f.get("tls-key")) o.tls_key = *v;
    if (const char* t = std::getenv("DELTAGATE_AUTH_TOKEN"); t && *t) o.auth_token = t;
    if (auto v = f.get("auth-token")) o.auth_token = *v;
    // The workers' shared token (not the clients' --auth-token): sent on every call to a worker.
    auto worker_token = auth::token_from_file_or_env(f.get("worker-token-file"), "--worker-token-file");
    if (!worker_token.ok()) return worker_token.status();
    o.pool.auth_token = *std::move(worker_token);
    if (auto s = num("max-prompt-tokens", o.limits.max_prompt_tokens, 0, 1 << 30); !s.ok()) return s;
    if (auto s = num("max-tokens", o.limits.max_tokens, 1, 1 << 30); !s.ok()) return s;
    if (auto s = num("max-fanout", o.limits.max_fanout, 1, 4096); !s.ok()) return s;
    if (auto s = num("max-message-bytes", o.limits.max_message_bytes, 1024, int64_t(1) << 30); !s.ok()) return s;
    if (auto s = num("max-inflight", o.limits.max_inflight, 1, 1 << 20); !s.ok()) return s;
    if (auto s = num("max-attempts", o.max_attempts, 1, 16); !s.ok()) return s;
    if (auto s = num("max-migrations", o.max_migrations, 0, 1024); !s.ok()) return s;
    if (auto s = num("worker-keepalive-ms", o.pool.keepalive_ms, 0, 3600 * 1000); !s.ok()) return s;
    if (o.pool.keepalive_ms > 0 && o.pool.keepalive_ms < 500)
        return absl::InvalidArgumentError("--worker-keepalive-ms must be 0 (off) or >= 500");
    if (auto v = f.get("load-penalty"); v && !absl::SimpleAtod(*v, &o.route.load_penalty_tokens))
        return absl::InvalidArgumentError("--load-penalty must be a number (prompt tokens per queued request)");
    return absl::OkStatus();
}

void block_stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int wait_for_stop_signal() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
    return sig;
}

namespace {

const char* kUsage =
    "usage: deltagate front (--workers HOST:PORT,... | --workers-dns NAME:PORT) [--listen HOST:PORT]\n"
    "         [--metrics-listen HOST:PORT] [--health-listen HOST:PORT (plaintext grpc.health.v1 only)]\n"
    "         [--http-listen HOST:PORT (OpenAI/Anthropic-compatible HTTP API)] [--http-cors-origins O1,O2|*]\n"
    "         [--http-template prefix-stable|official (multi-turn chat rendering over HTTP; default prefix-stable)]\n"
    "         [--tokenizer tokenizer.json|model.gguf] [--model-name NAME]\n"
    "         [--max-prompt-tokens N] [--max-tokens N] [--max-fanout N] [--max-message-bytes N] [--max-inflight N]\n"
    "         [--tls-cert PEM --tls-key PEM] [--auth-token TOKEN (or $DELTAGATE_AUTH_TOKEN): what clients must send]\n"
    "         [--worker-token-file PATH (or $DELTAGATE_WORKER_TOKEN_FILE): the token the workers require]\n"
    "         [--load-penalty TOKENS] [--max-attempts N] [--max-migrations N (3; 0 = off)]\n"
    "         [--worker-keepalive-ms MS (10000; a worker that misses a ping for this long is lost; 0 = off)]\n"
    "         [--dns-refresh-ms MS] [--drain-ms MS (5000)]\n"
    "Tracing: OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 (OTLP/HTTP JSON), OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER.\n";

int run_front(const std::vector<std::string>& args) {
    auto flags = kFrontFlags;
    flags.insert({"workers", "workers-dns", "dns-refresh-ms", "drain-ms"});
    auto f = parse_flags(args, flags, {"help"});
    if (!f.ok() || f->has("help")) {
        if (!f.ok()) std::fprintf(stderr, "deltagate front: %s\n", std::string(f.status().message()).c_str());
        std::fprintf(stderr, "%s", kUsage);
        return f.ok() ? 0 : 2;
    }
    front::FrontOptions o;
    if (auto s = apply_front_flags(*f, o); !s.ok()) {
        std::fprintf(stderr, "deltagate front: %s\n", std::string(s.message()).c_str());
        return 2;
    }
    if (auto w = f->get("workers"))
        for (auto part : absl::StrSplit(*w, ',', absl::SkipWhitespace())) o.pool.static_workers.emplace_back(part);
    if (auto d = f->get("workers-dns")) o.pool.dns_name = *d;
    if (auto r = f->get("dns-refresh-ms"); r && (!absl::SimpleAtoi(*r, &o.pool.dns_refresh_ms) || o.pool.dns_refresh_ms < 100)) {
        std::fprintf(stderr, "deltagate front: --dns-refresh-ms must be an integer >= 100\n");
        return 2;
    }
    // SIGTERM: running streams get this long to finish before they are cancelled (a Kubernetes pod's
    // terminationGracePeriodSeconds must cover it).
    int drain_ms = 5000;
    if (auto d = f->get("drain-ms"); d && (!absl::SimpleAtoi(*d, &drain_ms) || drain_ms < 0)) {
        std::fprintf(stderr, "deltagate front: --drain-ms must be an integer >= 0\n");
        return 2;
    }
    block_stop_signals();
    auto server = front::FrontServer::start(o);
    if (!server.ok()) {
        std::fprintf(stderr, "deltagate front: %s\n", std::string(server.status().message()).c_str());
        return 1;
    }
    // One machine-readable line: tests and scripts read the port from it.
    std::printf("front listening on port %d%s%s%s%s\n", (*server)->port(),
                (*server)->metrics_address().empty() ? "" : ", metrics on http://",
                (*server)->metrics_address().empty() ? "" : ((*server)->metrics_address() + "/metrics").c_str(),
                (*server)->health_port() ? absl::StrCat(", health on port ", (*server)->health_port()).c_str() : "",
                (*server)->http_address().empty() ? "" : absl::StrCat(", http on http://", (*server)->http_address()).c_str());
    std::fflush(stdout);
    const int sig = wait_for_stop_signal();
    std::fprintf(stderr, "front: signal %d, draining\n", sig);
    (*server)->shutdown(drain_ms);
    return 0;
}

}  // namespace

DG_COMMAND("front", "the gRPC front: public API, routing to workers, tracing, /metrics", run_front);

}  // namespace dg::cli
