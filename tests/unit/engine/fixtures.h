// Access to the golden fixtures (tests/golden/fixtures/, written by tests/golden/make_fixtures.py from
// an independent reference) for the engine tests.
#pragma once

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace dg::testing {

inline std::string fixture_dir(const std::string& name) { return std::string(DG_SOURCE_DIR) + "/tests/golden/fixtures/" + name; }

struct GoldenCase {
    std::vector<int32_t> tokens;
    std::vector<float> logits;  // [rows, vocab]
    int64_t vocab = 0;
};

struct Golden {
    std::vector<GoldenCase> cases;
    std::vector<int32_t> gen_prompt, gen_greedy;
    std::vector<float> gen_margins;
};

inline Golden load_golden(const std::string& name) {
    const std::string dir = fixture_dir(name);
    std::ifstream in(dir + "/golden.json");
    nlohmann::json j = nlohmann::json::parse(in);
    Golden g;
    for (const auto& c : j["cases"]) {
        GoldenCase gc;
        gc.tokens = c["tokens"].get<std::vector<int32_t>>();
        gc.vocab = c["vocab"].get<int64_t>();
        gc.logits.resize(gc.tokens.size() * gc.vocab);
        std::ifstream f(dir + "/" + c["logits_file"].get<std::string>(), std::ios::binary);
        f.read(reinterpret_cast<char*>(gc.logits.data()), gc.logits.size() * sizeof(float));
        g.cases.push_back(std::move(gc));
    }
    g.gen_prompt = j["generate"]["prompt"].get<std::vector<int32_t>>();
    g.gen_greedy = j["generate"]["greedy"].get<std::vector<int32_t>>();
    g.gen_margins = j["generate"]["margins"].get<std::vector<float>>();
    return g;
}

struct Diff {
    double max_abs = 0, scale = 0;  // scale: std of the reference logits
    int argmax_mismatch = 0;
    double rel() const { return max_abs / scale; }
};

// Compares logits rows; an argmax mismatch only counts where the reference's top-1 margin exceeds
// `margin` (near-ties may flip under rounding noise).
inline Diff compare(const std::vector<float>& got, const std::vector<float>& want, int64_t vocab, double margin = 0.05) {
    Diff d;
    double sum = 0, sq = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        d.max_abs = std::max(d.max_abs, std::abs(double(got[i]) - want[i]));
        sum += want[i];
        sq += double(want[i]) * want[i];
    }
    const double n = double(want.size());
    d.scale = std::sqrt(std::max(sq / n - (sum / n) * (sum / n), 1e-12));
    for (size_t r = 0; r < want.size() / vocab; ++r) {
        const float* w = want.data() + r * vocab;
        const float* g = got.data() + r * vocab;
        int64_t aw = 0, ag = 0;
        for (int64_t i = 1; i < vocab; ++i) {
            if (w[i] > w[aw]) aw = i;
            if (g[i] > g[ag]) ag = i;
        }
        float second = -INFINITY;
        for (int64_t i = 0; i < vocab; ++i)
            if (i != aw) second = std::max(second, w[i]);
        if (aw != ag && w[aw] - second > margin) ++d.argmax_mismatch;
    }
    return d;
}

}  // namespace dg::testing
