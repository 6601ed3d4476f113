// CPU forward-pass throughput (prefill and decode tok/s) for the tiny and 0.8B shapes, beside the
// bound: decode bytes per token (weights + GDN state + KV) over the read bandwidth measured on a buffer
// of that many bytes (so last-level-cache effects count for the bound as they do for decode) right before
// and after each decode, best pass; prefill FLOPs per token over the achieved FLOP rate. Prints a table;
// never asserts on time.
//
//   bench_engine_cpu [--presets tiny,0.8b] [--type f32|f16|bf16|q8_0|q4_k_m,...] [--backends cpu-exact,cpu]
//                    [--prefill N] [--decode N] [--repeat N] [--peer PATH/llama-bench] [--peer-reps N]
//                    [--rounds N]
// --type and --backends take lists: one row per preset x type x backend, so the exact oracle
// (cpu-exact) and the serving path (cpu: quantised activations for quantised weights) are measured in
// one run on the same files.
// --repeat runs the prefill + decode N times per model (a fresh sequence each time) and reports the best
// of each, which also gives a profiler a long steady run of the same work.
// --peer runs llama.cpp's or ik_llama.cpp's llama-bench (built by hand outside the repository; never part
// of it) on the same GGUF file, with the same thread count and token counts (-p prefill -n decode -t
// threads -r peer-reps -o json), and prints a second table with both side by side: the peer's best
// sample (comparable with our best of --repeat) and its mean.
// --rounds N measures every row N times, ours and then the peer's per row in each round, so the two run
// minutes apart at most: on a shared VM whose bandwidth drifts by 10-30% over minutes, only ratios from
// the same round compare. With a peer, a last table gives each row's median ratio over the rounds.
// Models are written once to $TMPDIR/deltagate-bench/<preset>-<type>.gguf by the same exporter as
// `deltagate make-model`.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "engine/cpu/parallel.h"
#include "engine/model_export.h"
#include "engine/model_source.h"
#include "engine/runner.h"
#include "read_bandwidth.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Multiply-adds per token in the matrices (the attention and delta-rule terms are small at these lengths).
double matmul_flops_per_token(const dg::ModelWeights& w) {
    const dg::ModelConfig& c = w.config;
    auto m = [](const dg::Matrix& x) { return x.empty() ? 0.0 : double(x.rows) * double(x.cols); };
    double macs = m(w.lm_head);
    for (const auto& l : w.layers) {
        if (l.is_attention) macs += m(l.attn.q) + m(l.attn.k) + m(l.attn.v) + m(l.attn.o);
        else macs += m(l.gdn.qkv) + m(l.gdn.z) + m(l.gdn.beta) + m(l.gdn.alpha) + m(l.gdn.out);
        macs += m(l.mlp.gate) + m(l.mlp.up) + m(l.mlp.down);
        if (c.is_moe()) {
            macs += m(l.moe.router) + m(l.moe.shared.gate) + m(l.moe.shared.up) + m(l.moe.shared.down);
            macs += double(c.n_experts_used) * 3.0 * double(c.expert_intermediate) * double(c.hidden);
        }
    }
    return 2.0 * macs;
}

// One llama-bench test's throughput: best sample and mean, tokens per second.
struct PeerResult {
    double best = 0, mean = 0;
};
struct PeerRun {
    bool ok = false;
    std::string error;
    PeerResult prefill, decode;
};

// The numbers after `"key": [` up to `]`, starting the search at `from`.
std::vector<double> json_numbers(const std::string& s, const std::string& key, size_t from) {
    std::vector<double> v;
    size_t k = s.find("\"" + key + "\"", from);
    if (k == std::string::npos) return v;
    size_t b = s.find('[', k), e = s.find(']', b);
    if (b == std::string::npos || e == std::string::npos) return v;
    for (absl::string_view part : absl::StrSplit(absl::string_view(s).substr(b + 1, e - b - 1), ',')) {
        double x;
        if (absl::SimpleAtod(absl::StripAsciiWhitespace(part), &x)) v.push_back(x);
    }
    return v;
}
int64_t json_int(const std::string& s, const std::string& key, size_t from, size_t to) {
    size_t k = s.find("\"" + key + "\":", from);
    if (k == std::string::npos || k > to) return -1;
    int64_t x = -1;
    size_t b = k + key.size() + 3, e = s.find_first_of(",\n}", b);
    (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(s).substr(b, e - b)), &x);
    return x;
}

// Runs the peer's llama-bench on `model` and reads its JSON: one object per test, the prompt test with
// n_gen 0, the generation test with n_prompt 0.
PeerRun run_peer(const std::string& peer, const std::string& model, int64_t n_prefill, int64_t n_decode, int threads,
                 int reps) {
    PeerRun r;
    const std::string cmd = "'" + peer + "' -m '" + model + "' -p " + std::to_string(n_prefill) + " -n " +
                            std::to_string(n_decode) + " -t " + std::to_string(threads) + " -r " + std::to_string(reps) +
                            " -o json 2>/dev/null";
    std::fprintf(stderr, "peer: %s\n", cmd.c_str());
    FILE* f = popen(cmd.c_str(), "r");
    if (!f) {
        r.error = "cannot start " + peer;
        return r;
    }
    std::string out;
    char buf[4096];
    for (size_t got; (got = fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, got);
    const int status = pclose(f);
    if (status != 0) {
        r.error = "llama-bench exited with status " + std::to_string(status);
        return r;
    }
    bool have_p = false, have_n = false;
    for (size_t at = out.find('{'); at != std::string::npos; at = out.find('{', at + 1)) {
        const size_t end = out.find('}', at);
        const int64_t np = json_int(out, "n_prompt", at, end), ng = json_int(out, "n_gen", at, end);
        const std::vector<double> ts = json_numbers(out, "samples_ts", at);
        if (ts.empty() || np < 0 || ng < 0) continue;
        PeerResult pr;
        for (double x : ts) pr.best = std::max(pr.best, x), pr.mean += x / double(ts.size());
        if (ng == 0 && np > 0) r.prefill = pr, have_p = true;
        else if (np == 0 && ng > 0) r.decode = pr, have_n = true;
        at = end;
    }
    r.ok = have_p && have_n;
    if (!r.ok) r.error = "no prompt and generation results in llama-bench's output";
    return r;
}

struct Row {
    std::string preset, type, backend, file;
    double weight_gb, pre_tps, dec_tps, bound;
    int round;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Our row: the prefill and decode of `file` on `kind`, best of n_repeat, printed as a line of the first
// table. The runner (and its memory) is gone when this returns, before the peer runs.
bool measure_ours(const std::string& file, dg::BackendKind kind, const dg::ModelConfig& cfg, absl::string_view preset,
                  const std::string& type, absl::string_view backend, int round, int64_t n_prefill, int64_t n_decode,
                  int64_t n_repeat, Row* row) {
    dg::RunnerOptions ro;
    ro.max_seqs = 1;
    ro.max_tokens_per_seq = n_prefill + n_decode + 1;
    ro.prefill_chunk = int32_t(n_prefill);
    auto r = dg::Runner::open(file, kind, ro);
    if (!r.ok()) {
        std::fprintf(stderr, "%s\n", std::string(r.status().message()).c_str());
        return false;
    }
    dg::Runner& run = **r;
    const dg::ModelWeights& w = run.model().weights();
    // Bytes one decode step must read: all matrices except the embedding table (one row of it),
    // the GDN state read and written, and the KV of the attention layers at the average depth.
    const double weight_bytes = double(w.total_bytes()) - (w.lm_head.data == w.embed.data ? 0.0 : double(w.embed.rows) * w.embed.row_bytes);
    const double kv_bytes = double(cfg.n_attention_layers()) * 2 * cfg.n_kv_heads * cfg.head_dim * 2.0 /*f16*/ *
                            (double(n_prefill) + n_decode / 2.0);
    const double bytes = weight_bytes + 2.0 * double(cfg.state_bytes_per_seq()) + kv_bytes;
    // The bound's read loop runs on a buffer of the step's size right before and right after every
    // decode, and the best pass counts, as the best decode does: both see the same fast and slow moments
    // of the VM's memory (one measurement after all decodes had put single rounds at 67-137% of it).
    dg::bench::ReadLoop read_loop(bytes);
    double bw = 0;
    std::vector<int32_t> prompt;
    for (int64_t i = 0; i < n_prefill; ++i) prompt.push_back(int32_t((i * 7919 + 13) % cfg.vocab_size));
    double t_prefill = 1e30, t_decode = 1e30;
    for (int64_t rep = 0; rep < std::max<int64_t>(1, n_repeat); ++rep) {
        auto seq = run.new_sequence();
        if (!seq.ok()) {
            std::fprintf(stderr, "%s\n", std::string(seq.status().message()).c_str());
            return false;
        }
        auto t0 = Clock::now();
        auto l = run.feed(*seq, prompt, false);
        t_prefill = std::min(t_prefill, seconds_since(t0));
        if (!l.ok()) {
            std::fprintf(stderr, "%s\n", std::string(l.status().message()).c_str());
            return false;
        }
        // Decode as the server runs it: the next token drawn (greedy) from the logits where the backend left
        // them, no copy of the 248,320 logits per token into a new vector (Runner::feed's).
        const dg::SampleRow greedy_row;
        absl::Status decoded = absl::OkStatus();
        bw = std::max(bw, read_loop.best_gbs(2));
        t0 = Clock::now();
        for (int64_t i = 0; i < n_decode && decoded.ok(); ++i)
            decoded = run.feed_sample(*seq, std::vector<int32_t>{int32_t(i % 100)}, {&greedy_row, 1}).status();
        t_decode = std::min(t_decode, seconds_since(t0));
        bw = std::max(bw, read_loop.best_gbs(2));
        if (!decoded.ok()) {
            std::fprintf(stderr, "%s\n", std::string(decoded.message()).c_str());
            return false;
        }
        run.release(*seq);
    }
    const double dec_tps = n_decode / t_decode, pre_tps = n_prefill / t_prefill;
    // Prefill computes the logits of the last token only: lm_head once, the rest per token.
    const double lm_flops = 2.0 * double(w.lm_head.rows) * double(w.lm_head.cols);
    const double prefill_flops = double(n_prefill) * (matmul_flops_per_token(w) - lm_flops) + lm_flops;
    const double bound = bw * 1e9 / bytes;
    std::printf("| %d | %s | %s %.2f GB | %s | %.1f | %.1f | %.2f | %.2f | %.1f | %.1f | %.0f%% |\n", round,
                std::string(preset).c_str(), type.c_str(), weight_bytes / 1e9, std::string(backend).c_str(), pre_tps,
                prefill_flops / t_prefill / 1e9, dec_tps, dec_tps * bytes / 1e9, bw, bound, 100.0 * dec_tps / bound);
    std::fflush(stdout);
    *row = Row{std::string(preset), type, std::string(backend), file, weight_bytes / 1e9, pre_tps, dec_tps, bound, round};
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    std::string presets = "tiny,0.8b", types = "f32", backends = "cpu";
    int64_t n_prefill = 128, n_decode = 32, n_repeat = 1, peer_reps = 5, n_rounds = 1;
    std::string peer;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--presets") presets = v;
        else if (k == "--type") types = v;
        else if (k == "--backends") backends = v;
        else if (k == "--prefill") (void)absl::SimpleAtoi(v, &n_prefill);
        else if (k == "--decode") (void)absl::SimpleAtoi(v, &n_decode);
        else if (k == "--repeat") (void)absl::SimpleAtoi(v, &n_repeat);
        else if (k == "--peer") peer = v;
        else if (k == "--peer-reps") (void)absl::SimpleAtoi(v, &peer_reps);
        else if (k == "--rounds") (void)absl::SimpleAtoi(v, &n_rounds);
        else {
            std::fprintf(stderr, "unknown flag %s\n", k.c_str());
            return 2;
        }
    }
    std::printf("machine: %d threads, read bandwidth %.1f GB/s (512 MiB buffer in 2 MiB pages)\n\n", dg::cpu::num_threads(),
                dg::bench::read_gbs(512.0 * (1 << 20)));
    std::printf("| round | model | weights | backend | prefill tok/s (%lld tok) | prefill GFLOP/s | decode tok/s | decode GB/s | read GB/s | decode bound tok/s | %% of bound |\n",
                (long long)n_prefill);
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    namespace fs = std::filesystem;
    if (!peer.empty() && !fs::exists(peer)) {
        std::fprintf(stderr, "--peer %s: no such file\n", peer.c_str());
        return 2;
    }
    std::vector<Row> rows;
    std::vector<PeerRun> peer_runs;  // rows[i]'s peer run, in the same round
    const fs::path dir = fs::temp_directory_path() / "deltagate-bench";
    fs::create_directories(dir);
    for (int round = 1; round <= std::max<int64_t>(1, n_rounds); ++round)
    for (absl::string_view preset : absl::StrSplit(presets, ','))
    for (absl::string_view type_sv : absl::StrSplit(types, ','))
    for (absl::string_view backend : absl::StrSplit(backends, ',')) {
        const std::string type(type_sv);
        auto kind = dg::backend_kind_from_name(std::string(backend));
        if (!kind.ok()) {
            std::fprintf(stderr, "%s\n", std::string(kind.status().message()).c_str());
            return 1;
        }
        auto cfg = dg::preset_config(std::string(preset));
        if (!cfg.ok()) {
            std::fprintf(stderr, "%s\n", std::string(cfg.status().message()).c_str());
            return 1;
        }
        const fs::path file = dir / (std::string(preset) + "-" + type + ".gguf");
        if (!fs::exists(file)) {
            std::fprintf(stderr, "writing %s ...\n", file.c_str());
            dg::GgufExportOptions opt;
            opt.type = type;
            auto s = dg::export_gguf(dg::random_model(*cfg, 0), file.string(), opt);
            if (!s.ok()) {
                std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
                return 1;
            }
        }
        Row row;
        if (!measure_ours(file.string(), *kind, *cfg, preset, type, backend, round, n_prefill, n_decode, n_repeat, &row))
            return 1;
        rows.push_back(row);
        if (!peer.empty())
            peer_runs.push_back(run_peer(peer, file.string(), n_prefill, n_decode, dg::cpu::num_threads(), int(peer_reps)));
    }
    if (peer.empty()) return 0;
    std::printf("\nSide by side with %s (%d threads, -p %lld -n %lld; peer: best of %lld samples, mean in brackets):\n\n",
                peer.c_str(), dg::cpu::num_threads(), (long long)n_prefill, (long long)n_decode, (long long)peer_reps);
    std::printf("| round | model | weights | backend | deltagate prefill tok/s | peer prefill tok/s | ratio | deltagate decode tok/s | peer decode tok/s | ratio | decode bound tok/s | deltagate %% of bound |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> ratios;  // row key: prefill, decode
    std::vector<std::string> keys;
    for (size_t i = 0; i < rows.size(); ++i) {
        const Row& r = rows[i];
        const PeerRun& p = peer_runs[i];
        if (!p.ok) {
            std::printf("| %d | %s | %s %.2f GB | %s | %.1f | (%s) | | %.2f | | | %.1f | %.0f%% |\n", r.round, r.preset.c_str(),
                        r.type.c_str(), r.weight_gb, r.backend.c_str(), r.pre_tps, p.error.c_str(), r.dec_tps, r.bound,
                        100.0 * r.dec_tps / r.bound);
            continue;
        }
        std::printf("| %d | %s | %s %.2f GB | %s | %.1f | %.1f (%.1f) | %.2f | %.2f | %.2f (%.2f) | %.2f | %.1f | %.0f%% |\n",
                    r.round, r.preset.c_str(), r.type.c_str(), r.weight_gb, r.backend.c_str(), r.pre_tps, p.prefill.best,
                    p.prefill.mean, r.pre_tps / p.prefill.best, r.dec_tps, p.decode.best, p.decode.mean,
                    r.dec_tps / p.decode.best, r.bound, 100.0 * r.dec_tps / r.bound);
        const std::string key = "| " + r.preset + " | " + r.type + " | " + r.backend + " |";
        if (!ratios.count(key)) keys.push_back(key);
        ratios[key].first.push_back(r.pre_tps / p.prefill.best);
        ratios[key].second.push_back(r.dec_tps / p.decode.best);
    }
    if (n_rounds > 1 && !keys.empty()) {
        std::printf("\nMedian over %lld rounds of the same-round ratios (deltagate / peer), with the lowest and highest:\n\n",
                    (long long)n_rounds);
        std::printf("| model | weights | backend | prefill ratio | decode ratio |\n|---|---|---|---|---|\n");
        for (const std::string& k : keys) {
            const auto& [pre, dec] = ratios[k];
            std::printf("%s %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) |\n", k.c_str(), median(pre),
                        *std::min_element(pre.begin(), pre.end()), *std::max_element(pre.begin(), pre.end()), median(dec),
                        *std::min_element(dec.begin(), dec.end()), *std::max_element(dec.begin(), dec.end()));
        }
    }
    return 0;
}
