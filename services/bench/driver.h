// What the benchmark asks of a server, whatever its API: the model it serves and its limits (probe), one
// streamed generation from token ids, and a fan-out (one shared prefix, several continuations). Two
// implementations: grpc_driver (deltagate.v1.Inference) and openai_driver (any OpenAI-compatible HTTP
// server). Times are taken here, on the client, so every server is measured the same way.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dg::bench {

using Clock = std::chrono::steady_clock;

struct ServerInfo {
    std::string model;        // the model name requests carry
    int vocab_size = 0;       // 0 = the server does not say
    int max_context = 0;      // prompt + completion tokens; 0 = the server does not say
    int max_prompt_tokens = 0;  // a front limit below the context; 0 = none known
    std::string server;       // a short description for results.json ("deltagate gRPC", "llama-server", ...)
    std::string prompt_mode;  // how prompts travel: "token ids" (what every driver here sends)
};

// Per-request options that change what the server may reuse.
struct RequestOptions {
    std::string request_id;
    std::string session_id;  // routing affinity for agent sessions (deltagate), empty = none
    bool cache = true;       // false: ask the server not to reuse cached prefixes (unique cache salt,
                             // llama-server's cache_prompt=false)
};

struct RequestResult {
    bool ok = false;
    std::string error_class;    // "UNAVAILABLE", "http_503", "transport", ... (empty when ok)
    std::string error_message;
    Clock::time_point start{};  // request sent
    double ttft_ms = -1;        // to the first token (-1: none arrived)
    double e2e_ms = -1;         // to the end of the stream
    std::vector<double> itl_ms;  // gaps between token arrivals (a chunk of k tokens: k equal gaps)
    int prompt_tokens = 0;         // tokens this client sent
    int usage_prompt_tokens = -1;  // as the server's usage says (-1: not reported)
    int cached_tokens = -1;        // of those, served from the server's cache (-1: not reported)
    int cached_device = -1, cached_host = -1;  // by tier, when the server says (deltagate)
    int output_tokens = 0;          // generated (usage when reported, else tokens counted on the stream)
    std::vector<int32_t> output_ids;  // when the API returns them (gRPC)
};

class Driver {
public:
    virtual ~Driver() = default;
    // Reaches the server and resolves the model (`want` empty = the first served). A one-line error that
    // says what to fix when the server cannot be reached or does not serve `want`.
    virtual absl::StatusOr<ServerInfo> probe(const std::string& want) = 0;
    virtual RequestResult generate(const std::vector<int32_t>& prompt, int max_tokens, const RequestOptions& opt) = 0;
    // One result per suffix, in order. gRPC: one BatchGenerate; HTTP: parallel requests of prefix + suffix.
    virtual std::vector<RequestResult> fanout(const std::vector<int32_t>& prefix,
                                              const std::vector<std::vector<int32_t>>& suffixes, int max_tokens,
                                              const RequestOptions& opt) = 0;
    virtual std::string fanout_method() const = 0;  // for results.json: how fan-out was sent
};

// Targets: "HOST:PORT" for gRPC; "http://HOST:PORT[/v1]" for OpenAI-compatible HTTP.
std::unique_ptr<Driver> make_grpc_driver(const std::string& target, const std::string& api_key, double deadline_s);
absl::StatusOr<std::unique_ptr<Driver>> make_openai_driver(const std::string& url, const std::string& api_key,
                                                           double deadline_s);

inline double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace dg::bench
