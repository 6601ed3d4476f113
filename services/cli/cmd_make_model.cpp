// deltagate make-model: a random Qwen3.5 model of any preset shape, as an HF directory and/or a GGUF
// with chosen tensor types. deltagate convert: an HF directory to GGUF.
#include <chrono>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "engine/model_export.h"
#include "engine/model_source.h"
#include "engine/tokenizer/tokenizer.h"
#include "services/cli/command.h"
#include "services/cli/flags.h"

namespace dg::cli {
namespace {

int fail(const char* cmd, const absl::Status& s) {
    std::fprintf(stderr, "deltagate %s: %s\n", cmd, std::string(s.message()).c_str());
    return 1;
}

absl::Status write_gguf(const ModelSource& src, const ParsedFlags& f, const std::string& out, const char* name) {
    GgufExportOptions opt;
    opt.type = f.get("type").value_or("f16");
    opt.name = name;
    std::unique_ptr<tok::Tokenizer> tokenizer;
    if (auto t = f.get("tokenizer")) {
        auto loaded = tok::load_tokenizer(*t);
        if (!loaded.ok()) return loaded.status();
        tokenizer = std::move(*loaded);
        opt.tokenizer = tokenizer.get();
    }
    if (f.has("verbose")) opt.progress = [](const std::string& l) { std::fprintf(stderr, "  %s\n", l.c_str()); };
    const auto t0 = std::chrono::steady_clock::now();
    absl::Status s = export_gguf(src, out, opt);
    if (!s.ok()) return s;
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "wrote %s (%s) in %.1f s\n", out.c_str(), opt.type.c_str(), sec);
    return absl::OkStatus();
}

int run_make_model(const std::vector<std::string>& args) {
    auto f = parse_flags(args, {"preset", "seed", "hf", "hf-type", "gguf", "type", "tokenizer", "row-pool"},
                         {"help", "verbose"});
    if (!f.ok() || f->has("help") || (!f->get("hf") && !f->get("gguf"))) {
        if (!f.ok()) std::fprintf(stderr, "deltagate make-model: %s\n", std::string(f.status().message()).c_str());
        std::fprintf(stderr,
                     "usage: deltagate make-model [--preset %s] [--seed N]\n"
                     "         [--hf DIR [--hf-type f32|f16|bf16]] [--gguf FILE [--type TYPE] [--tokenizer tokenizer.json]]\n"
                     "         [--row-pool N] [--verbose]\n"
                     "TYPE: f32 f16 bf16 q8_0 q4_0 q4_1 q4_k q5_k q6_k q4_k_m. --row-pool N reuses N distinct random rows\n"
                     "per matrix (default 256 for models over 1e9 parameters, so a 27B GGUF writes at disk speed).\n",
                     absl::StrJoin(preset_names(), "|").c_str());
        return f.ok() && f->has("help") ? 0 : 2;
    }
    auto cfg = preset_config(f->get("preset").value_or("tiny"));
    if (!cfg.ok()) return fail("make-model", cfg.status());
    uint64_t seed = 0;
    int64_t pool = -1;
    if (auto s = f->get("seed"); s && !absl::SimpleAtoi(*s, &seed))
        return fail("make-model", absl::InvalidArgumentError("--seed must be a non-negative integer"));
    if (auto p = f->get("row-pool"); p && (!absl::SimpleAtoi(*p, &pool) || pool < 0))
        return fail("make-model", absl::InvalidArgumentError("--row-pool must be a non-negative integer"));
    ModelSource src = random_model(*cfg, seed, 0);
    int64_t params = 0;
    for (const auto& [n, t] : src.tensors) params += t.rows() * t.cols();
    if (pool < 0) pool = params > 1'000'000'000 ? 256 : 0;
    if (pool > 0) src = random_model(*cfg, seed, pool);
    std::fprintf(stderr, "model: %s, %.3g parameters%s\n", f->get("preset").value_or("tiny").c_str(), double(params),
                 pool > 0 ? " (pooled rows)" : "");
    if (auto dir = f->get("hf")) {
        auto t = dtype_from_name(f->get("hf-type").value_or("bf16"));
        if (!t.ok()) return fail("make-model", t.status());
        if (auto s = export_hf(src, *dir, *t); !s.ok()) return fail("make-model", s);
        std::fprintf(stderr, "wrote %s\n", dir->c_str());
    }
    if (auto out = f->get("gguf"))
        if (auto s = write_gguf(src, *f, *out, "deltagate random model"); !s.ok()) return fail("make-model", s);
    return 0;
}

int run_convert(const std::vector<std::string>& args) {
    auto f = parse_flags(args, {"model", "out", "type", "tokenizer"}, {"help", "verbose"});
    if (!f.ok() || f->has("help") || !f->get("model") || !f->get("out")) {
        if (!f.ok()) std::fprintf(stderr, "deltagate convert: %s\n", std::string(f.status().message()).c_str());
        std::fprintf(stderr, "usage: deltagate convert --model HF_DIR --out FILE.gguf [--type TYPE] [--tokenizer PATH]\n");
        return f.ok() && f->has("help") ? 0 : 2;
    }
    auto src = hf_model_source(*f->get("model"));
    if (!src.ok()) return fail("convert", src.status());
    if (auto s = write_gguf(*src, *f, *f->get("out"), "converted by deltagate"); !s.ok()) return fail("convert", s);
    return 0;
}

}  // namespace

DG_COMMAND("make-model", "write a random Qwen3.5 model (HF directory and/or GGUF)", run_make_model);
DG_COMMAND("convert", "convert an HF model directory to GGUF", run_convert);

}  // namespace dg::cli
