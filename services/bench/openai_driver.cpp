// The driver for any OpenAI-compatible HTTP server (deltagate's front with --http-listen, llama-server,
// vLLM, SGLang): POST /v1/completions with the prompt as a list of token ids (all four accept one), streamed
// (SSE) with stream_options.include_usage so the last event carries usage, including
// usage.prompt_tokens_details.cached_tokens (llama-server's timings.cache_n when that is absent). Each
// `data:` event with a choice is one token arrival. Fan-out is N parallel requests of prefix + suffix.
#include <atomic>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/bench/driver.h"
#include "services/bench/http_client.h"

namespace dg::bench {
namespace {

using json = nlohmann::json;

std::string error_message_of(const std::string& body) {
    json j = json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("error")) {
        const json& e = j["error"];
        if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"];
        if (e.is_string()) return e;
    }
    if (j.is_object() && j.contains("message") && j["message"].is_string()) return j["message"];
    return body.substr(0, 300);
}

int int_at(const json& j, std::initializer_list<const char*> path, int fallback) {
    const json* p = &j;
    for (const char* k : path) {
        if (!p->is_object() || !p->contains(k)) return fallback;
        p = &(*p)[k];
    }
    return p->is_number_integer() ? p->get<int>() : fallback;
}

class OpenAIDriver final : public Driver {
public:
    OpenAIDriver(Url url, std::string display, std::string api_key, double deadline_s)
        : url_(std::move(url)), display_(std::move(display)), api_key_(std::move(api_key)), deadline_s_(deadline_s) {
        root_ = url_.path;
        if (absl::EndsWith(root_, "/v1")) root_.resize(root_.size() - 3);
        if (!api_key_.empty()) headers_.push_back({"Authorization", "Bearer " + api_key_});
    }

    absl::StatusOr<ServerInfo> probe(const std::string& want) override {
        auto r = http_request(url_, "GET", url_.path + "/models", "", headers_, 10);
        if (!r.ok())
            return absl::UnavailableError(absl::StrCat("cannot reach an OpenAI-compatible server at ", display_, " (",
                                                       r.status().message(),
                                                       "): is it running, and is --openai right (http://HOST:PORT/v1)?"));
        if (r->status == 401 || r->status == 403)
            return absl::PermissionDeniedError(absl::StrCat(display_, " refused the request (HTTP ", r->status,
                                                            "): pass its key with --api-key"));
        if (r->status != 200)
            return absl::FailedPreconditionError(absl::StrCat("GET ", display_, "/models answered HTTP ", r->status, ": ",
                                                              error_message_of(r->body)));
        const json j = json::parse(r->body, nullptr, false);
        if (!j.is_object() || !j.contains("data") || !j["data"].is_array() || j["data"].empty())
            return absl::FailedPreconditionError(absl::StrCat(display_, "/models lists no model"));
        const json* m = nullptr;
        std::string names;
        for (const json& d : j["data"]) {
            const std::string id = d.value("id", "");
            absl::StrAppend(&names, names.empty() ? "" : ", ", id);
            if (!m && (want.empty() || id == want)) m = &d;
        }
        if (!m)
            return absl::NotFoundError(absl::StrCat("--model ", want, ": ", display_, " does not serve it (it serves: ",
                                                    names, ")"));
        ServerInfo info;
        info.model = (*m).value("id", "");
        info.vocab_size = int_at(*m, {"meta", "vocab_size"}, int_at(*m, {"meta", "n_vocab"}, 0));
        info.max_context = int_at(*m, {"max_model_len"}, 0);  // vLLM, deltagate
        std::string server = "OpenAI-compatible HTTP";
        // llama-server: /props has the context each slot serves (what a request may use).
        if (auto p = http_request(url_, "GET", root_ + "/props", "", headers_, 10); p.ok() && p->status == 200) {
            const json pj = json::parse(p->body, nullptr, false);
            if (pj.is_object()) {
                const int n_ctx = int_at(pj, {"default_generation_settings", "n_ctx"}, int_at(pj, {"n_ctx"}, 0));
                if (n_ctx > 0) info.max_context = n_ctx;
                if (pj.contains("default_generation_settings")) server = "llama-server";  // what /props is
                if (pj.contains("build_info") && pj["build_info"].is_string())
                    server = absl::StrCat("llama-server ", pj["build_info"].get<std::string>());
            }
        } else if (auto v = http_request(url_, "GET", root_ + "/version", "", headers_, 10); v.ok() && v->status == 200) {
            const json vj = json::parse(v->body, nullptr, false);
            if (vj.is_object() && vj.contains("server") && vj["server"].is_string())
                server = absl::StrCat(vj["server"].get<std::string>(), " ", vj.value("version", ""));
        }
        if (info.max_context == 0) info.max_context = int_at(*m, {"meta", "n_ctx_train"}, 0);
        info.server = absl::StrCat(server, " at ", display_);
        info.prompt_mode = "token ids (/v1/completions)";
        model_ = info.model;
        return info;
    }

    RequestResult generate(const std::vector<int32_t>& prompt, int max_tokens, const RequestOptions& opt) override {
        json body = {{"model", model_},
                     {"prompt", prompt},
                     {"max_tokens", max_tokens},
                     {"temperature", 0},
                     {"stream", true},
                     {"stream_options", {{"include_usage", true}}},
                     {"ignore_eos", true}};  // vLLM, llama-server and deltagate: exactly max_tokens
        if (!opt.session_id.empty()) body["session_id"] = opt.session_id;
        if (!opt.cache) {
            body["cache_salt"] = absl::StrCat("bench-nocache-", opt.request_id, "-", salt_seq_++);  // vLLM, deltagate
            body["cache_prompt"] = false;                                                   // llama-server
        }
        RequestResult r;
        r.prompt_tokens = int(prompt.size());
        r.start = Clock::now();
        Clock::time_point last{};
        int counted = 0;
        bool done = false;
        std::string stream_error;
        auto on_event = [&](std::string_view data) {
            const Clock::time_point now = Clock::now();
            if (data == "[DONE]") {
                done = true;
                return false;
            }
            const json j = json::parse(data, nullptr, false);
            if (!j.is_object()) return true;
            if (j.contains("error")) {
                stream_error = error_message_of(std::string(data));
                return false;
            }
            if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
                const json& c = j["choices"][0];
                const bool finished = c.contains("finish_reason") && !c["finish_reason"].is_null();
                const bool has_text = c.contains("text") && c["text"].is_string() && !c["text"].get<std::string>().empty();
                if (!finished || has_text) {  // a token arrived (the closing chunk carries none)
                    if (r.ttft_ms < 0) r.ttft_ms = ms_between(r.start, now);
                    else r.itl_ms.push_back(ms_between(last, now));
                    last = now;
                    ++counted;
                }
            }
            if (j.contains("usage") && j["usage"].is_object()) {
                const json& u = j["usage"];
                r.usage_prompt_tokens = int_at(u, {"prompt_tokens"}, -1);
                r.output_tokens = int_at(u, {"completion_tokens"}, counted);
                r.cached_tokens = int_at(u, {"prompt_tokens_details", "cached_tokens"}, -1);
            }
            if (r.cached_tokens < 0 && j.contains("timings")) r.cached_tokens = int_at(j["timings"], {"cache_n"}, -1);
            return true;
        };
        auto resp = http_request(url_, "POST", url_.path + "/completions", body.dump(), headers_, deadline_s_, on_event);
        r.e2e_ms = ms_between(r.start, Clock::now());
        if (r.output_tokens == 0) r.output_tokens = counted;
        if (!resp.ok()) {
            r.error_class = "transport";
            r.error_message = std::string(resp.status().message());
        } else if (resp->status != 200) {
            r.error_class = absl::StrCat("http_", resp->status);
            r.error_message = error_message_of(resp->body);
        } else if (!stream_error.empty()) {
            r.error_class = "stream_error";
            r.error_message = stream_error;
        } else if (!done) {
            r.error_class = "truncated";
            r.error_message = "the stream ended without data: [DONE]";
        } else {
            r.ok = true;
        }
        return r;
    }

    std::vector<RequestResult> fanout(const std::vector<int32_t>& prefix,
                                      const std::vector<std::vector<int32_t>>& suffixes, int max_tokens,
                                      const RequestOptions& opt) override {
        std::vector<RequestResult> out(suffixes.size());
        std::vector<std::thread> threads;
        for (size_t i = 0; i < suffixes.size(); ++i)
            threads.emplace_back([&, i] {
                std::vector<int32_t> p = prefix;
                p.insert(p.end(), suffixes[i].begin(), suffixes[i].end());
                RequestOptions o = opt;
                o.request_id = absl::StrCat(opt.request_id, "-", i);
                out[i] = generate(p, max_tokens, o);
            });
        for (auto& t : threads) t.join();
        return out;
    }

    std::string fanout_method() const override { return "parallel /v1/completions requests (prefix + suffix each)"; }

private:
    Url url_;
    std::string display_, api_key_, root_, model_;
    double deadline_s_;
    std::vector<std::pair<std::string, std::string>> headers_;
    std::atomic<uint64_t> salt_seq_{0};
};

}  // namespace

absl::StatusOr<std::unique_ptr<Driver>> make_openai_driver(const std::string& url, const std::string& api_key,
                                                           double deadline_s) {
    auto u = parse_http_url(url);
    if (!u.ok()) return u.status();
    std::string display = url;
    while (!display.empty() && display.back() == '/') display.pop_back();
    return std::unique_ptr<Driver>(new OpenAIDriver(*u, display, api_key, deadline_s));
}

}  // namespace dg::bench
