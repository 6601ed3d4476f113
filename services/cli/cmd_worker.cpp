// deltagate worker: one worker process (one per GPU) serving deltagate.worker.v1 over gRPC, with
// grpc.health.v1, reflection and Prometheus /metrics. SIGTERM or SIGINT drains: health goes
// NOT_SERVING, new requests get UNAVAILABLE, in-flight ones finish (or, after --drain-ms, are handed off to
// the front, which migrates them), then the process exits 0.
#include <pthread.h>
#include <signal.h>

#include <cctype>
#include <cstdio>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/formats/dtype.h"
#include "engine/status.h"
#include "services/cli/command.h"
#include "services/cli/model_args.h"
#include "services/common/bearer_token.h"
#include "services/worker/worker_server.h"

namespace dg::cli {
namespace {

// "256MiB", "32GiB", "1G", "1000000" -> bytes.
absl::StatusOr<int64_t> parse_bytes(const std::string& s) {
    std::string num = s, unit;
    while (!num.empty() && std::isalpha(static_cast<unsigned char>(num.back()))) {
        unit.insert(unit.begin(), num.back());
        num.pop_back();
    }
    double v;
    if (!absl::SimpleAtod(num, &v) || v < 0) return absl::InvalidArgumentError(absl::StrCat("not a size: '", s, "'"));
    const std::string u = absl::AsciiStrToLower(unit);
    double mul = 1;
    if (u.empty() || u == "b") mul = 1;
    else if (u == "k" || u == "kib" || u == "kb") mul = 1024.0;
    else if (u == "m" || u == "mib" || u == "mb") mul = 1024.0 * 1024;
    else if (u == "g" || u == "gib" || u == "gb") mul = 1024.0 * 1024 * 1024;
    else if (u == "t" || u == "tib" || u == "tb") mul = 1024.0 * 1024 * 1024 * 1024;
    else return absl::InvalidArgumentError(absl::StrCat("unknown size unit in '", s, "' (use KiB, MiB, GiB, TiB)"));
    return int64_t(v * mul);
}

absl::Status int_flag(const ParsedFlags& f, const char* name, int64_t lo, int64_t hi, int32_t* out) {
    auto v = f.get(name);
    if (!v) return absl::OkStatus();
    int64_t x;
    if (!absl::SimpleAtoi(*v, &x) || x < lo || x > hi)
        return absl::InvalidArgumentError(absl::StrCat("--", name, " must be an integer in [", lo, ", ", hi, "], got '", *v, "'"));
    *out = int32_t(x);
    return absl::OkStatus();
}

absl::Status parse_options(const ParsedFlags& f, worker::WorkerOptions* o) {
    if (auto m = f.get("model")) {
        o->model_path = *m;
    } else {
        DG_ASSIGN_OR_RETURN(o->model_path, default_model_path());
    }
    o->backend = default_backend_kind();
    if (auto b = f.get("backend")) {
        DG_ASSIGN_OR_RETURN(o->backend, backend_kind_from_name(*b));
    }
    if (auto t = f.get("kv-type")) {
        DG_ASSIGN_OR_RETURN(o->cache.kv_type, dtype_from_name(*t));
    }
    if (auto th = f.get("threads")) setenv("DG_CPU_THREADS", th->c_str(), 1);
    o->listen = f.get("listen").value_or("127.0.0.1:50061");
    o->metrics_listen = f.get("metrics-listen").value_or("");
    o->worker_id = f.get("worker-id").value_or("");
    DG_ASSIGN_OR_RETURN(o->auth_token, auth::token_from_file_or_env(f.get("auth-token-file"), "--auth-token-file"));
    if (auto v = f.get("vllm-metric-names")) {
        if (*v != "true" && *v != "false")
            return absl::InvalidArgumentError(absl::StrCat("--vllm-metric-names must be true or false, got '", *v, "'"));
        o->vllm_metric_names = *v == "true";
    }
    DG_RETURN_IF_ERROR(int_flag(f, "max-running", 1, 4096, &o->sched.max_running));
    DG_RETURN_IF_ERROR(int_flag(f, "spare-slots", 0, 4096, &o->sched.spare_slots));
    DG_RETURN_IF_ERROR(int_flag(f, "kv-blocks", 1, 1 << 24, &o->cache.n_blocks));
    DG_RETURN_IF_ERROR(int_flag(f, "block-tokens", 1, 1024, &o->cache.block_tokens));
    DG_RETURN_IF_ERROR(int_flag(f, "token-budget", 1, 1 << 20, &o->sched.token_budget));
    DG_RETURN_IF_ERROR(int_flag(f, "checkpoint-every", 0, 1 << 24, &o->sched.checkpoint_every));
    DG_RETURN_IF_ERROR(int_flag(f, "max-seq-len", 0, 1 << 30, &o->sched.max_seq_len));
    DG_RETURN_IF_ERROR(int_flag(f, "max-n", 1, 1024, &o->sched.max_n));
    DG_RETURN_IF_ERROR(int_flag(f, "max-queue", 0, 1 << 24, &o->max_queue));
    DG_RETURN_IF_ERROR(int_flag(f, "drain-ms", 0, 24 * 3600 * 1000, &o->drain_ms));
    DG_RETURN_IF_ERROR(int_flag(f, "max-queue-wait-ms", 0, 3600 * 1000, &o->max_queue_wait_ms));
    if (auto h = f.get("host-cache")) {
        DG_ASSIGN_OR_RETURN(o->sched.host_cache_bytes, parse_bytes(*h));
    }
    if (auto v = f.get("spill-kv")) {
        if (*v != "true" && *v != "false")
            return absl::InvalidArgumentError(absl::StrCat("--spill-kv must be true or false, got '", *v, "'"));
        o->sched.spill_kv_to_host = *v == "true";
    }
    if (auto v = f.get("checkpoint-policy")) {
        if (*v != "value" && *v != "lru")
            return absl::InvalidArgumentError(absl::StrCat("--checkpoint-policy must be value or lru, got '", *v, "'"));
        o->sched.checkpoint_policy = *v == "lru" ? sched::CheckpointPolicy::kLru : sched::CheckpointPolicy::kValue;
    }
    if (auto v = f.get("session-ttl-ms"); v && (!absl::SimpleAtoi(*v, &o->sched.session_ttl_ms) || o->sched.session_ttl_ms < 0))
        return absl::InvalidArgumentError(absl::StrCat("--session-ttl-ms must be an integer >= 0, got '", *v, "'"));
    // Memory plan (docs/worker.md "Memory plan"): cuda sizes the KV pool from the budget unless
    // --kv-blocks is given; cpu keeps the fixed default sizes (validated against host RAM) unless
    // --gpu-memory-utilization asks it to size the pool too.
    o->memory.max_running_flag = f.has("max-running");
    o->memory.spare_slots_flag = f.has("spare-slots");
    o->memory.kv_blocks_flag = f.has("kv-blocks");
    if (auto u = f.get("gpu-memory-utilization")) {
        double x;
        if (!absl::SimpleAtod(*u, &x) || !(x > 0 && x <= 1))
            return absl::InvalidArgumentError(
                absl::StrCat("--gpu-memory-utilization must be a fraction in (0, 1], got '", *u, "'"));
        o->memory.utilization = x;
        o->memory.utilization_flag = true;
    }
    o->memory.kv_from_memory =
        !o->memory.kv_blocks_flag && (is_cuda(o->backend) || o->memory.utilization_flag);
    return absl::OkStatus();
}

int run_worker(const std::vector<std::string>& args) {
    auto value_flags = kModelFlags;
    value_flags.insert({"listen", "metrics-listen", "worker-id", "max-running", "spare-slots", "kv-blocks", "block-tokens",
                        "token-budget", "checkpoint-every", "max-seq-len", "max-n", "max-queue", "max-queue-wait-ms", "drain-ms", "host-cache", "spill-kv", "checkpoint-policy", "session-ttl-ms",
                        "gpu-memory-utilization", "vllm-metric-names", "auth-token-file"});
    auto f = parse_flags(args, value_flags, {"help"});
    if (!f.ok() || f->has("help")) {
        if (!f.ok()) std::fprintf(stderr, "deltagate worker: %s\n", std::string(f.status().message()).c_str());
        std::fprintf(stderr,
                     "usage: deltagate worker [--model PATH] [--listen HOST:PORT (127.0.0.1:50061)] [--metrics-listen HOST:PORT]\n"
                     "         [--backend cpu|cpu-exact|cuda|cuda-exact] [--kv-type f16|bf16|q8_0|q4_0|f32] [--threads N] [--worker-id ID]\n"
                     "         [--max-running N] [--spare-slots N] [--kv-blocks N] [--block-tokens N] [--token-budget N]\n"
                     "         [--checkpoint-every N] [--max-seq-len N] [--max-n N] [--max-queue N (0 = unbounded)]\n"
                     "         [--max-queue-wait-ms MS (0 = off: refuse when the expected wait for a slot is longer)]\n"
                     "         [--drain-ms MS (20000: on SIGTERM, running requests' time to finish before they are handed off)]\n"
                     "         [--host-cache 256MiB] [--gpu-memory-utilization F (0.9)]\n"
                     "         [--spill-kv true|false (true: evicted KV blocks go to the host cache)]\n"
                     "         [--checkpoint-policy value|lru (value)] [--session-ttl-ms MS (600000)]\n"
                     "         [--auth-token-file PATH (or $DELTAGATE_WORKER_TOKEN_FILE): the token fronts must send]\n"
                     "         [--vllm-metric-names true|false (false; true: also export vllm:num_requests_{running,waiting}, vllm:kv_cache_usage_perc)]\n"
                     "Memory: on cuda the KV pool gets what the budget min(F x total, free) leaves after the weights,\n"
                     "the workspace and (max-running + spare-slots) state slots; on cpu the defaults (8 running, 8 spare,\n"
                     "1024 KV blocks) are checked against host RAM, and --gpu-memory-utilization sizes the pool there too.\n"
                     "A plan that does not fit (explicit flags included) is an error naming the flag to change.\n"
                     "SIGTERM/SIGINT drain: health NOT_SERVING, refuse new requests (UNAVAILABLE), let running ones finish\n"
                     "for --drain-ms, then end the rest with UNAVAILABLE (the front continues them on another worker), exit.\n");
        return f.ok() ? 0 : 2;
    }
    worker::WorkerOptions opt;
    if (absl::Status st = parse_options(*f, &opt); !st.ok()) {
        std::fprintf(stderr, "deltagate worker: %s\n", std::string(st.message()).c_str());
        return 2;
    }
    // Block the signals in every thread (gRPC's and ours inherit this mask) and take them with sigwait.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

    auto w = worker::WorkerServer::start(opt);
    if (!w.ok()) {
        std::fprintf(stderr, "deltagate worker: %s\n", std::string(w.status().message()).c_str());
        return 1;
    }
    std::printf("deltagate worker: gRPC on %s", (*w)->address().c_str());
    if (!(*w)->metrics_address().empty()) std::printf(", metrics on http://%s/metrics", (*w)->metrics_address().c_str());
    std::printf(" (model %s)\n", opt.model_path.c_str());
    std::fflush(stdout);
    if (opt.auth_token.empty())
        std::fprintf(stderr,
                     "deltagate worker: WARNING: no --auth-token-file (or $%s): anyone who reaches %s can run "
                     "requests here, bypassing the front's authentication and limits\n",
                     auth::kWorkerTokenFileEnv, (*w)->address().c_str());

    int sig = 0;
    sigwait(&sigs, &sig);
    std::fprintf(stderr, "deltagate worker: %s: draining (%d in flight)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                 (*w)->core().in_flight());
    // A second signal stops at once, cancelling what is still running.
    std::thread second([&] {
        int s2 = 0;
        sigwait(&sigs, &s2);
        std::fprintf(stderr, "deltagate worker: second signal: stopping now\n");
        std::_Exit(1);
    });
    second.detach();
    (*w)->drain();
    std::fprintf(stderr, "deltagate worker: drained, exiting\n");
    return 0;
}

}  // namespace

DG_COMMAND("worker", "serve one model over the internal gRPC worker API (deltagate.worker.v1)", run_worker);

}  // namespace dg::cli
