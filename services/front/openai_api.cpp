#include "services/front/openai_api.h"

#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "services/common/status_http.h"

namespace dg::front::http {
namespace {

// Optional typed fields: absent or null = not set. A value of the wrong type is an error naming the field.
bool get_number(const json& b, const char* key, double* out, bool* set, ApiError* err) {
    *set = false;
    auto it = b.find(key);
    if (it == b.end() || it->is_null()) return true;
    if (!it->is_number()) return bad_request(err, key, "'", key, "' must be a number");
    *out = it->get<double>();
    *set = true;
    return true;
}
bool get_int(const json& b, const char* key, int64_t* out, bool* set, ApiError* err) {
    *set = false;
    auto it = b.find(key);
    if (it == b.end() || it->is_null()) return true;
    if (!it->is_number_integer() && !it->is_number_unsigned())
        return bad_request(err, key, "'", key, "' must be an integer");
    *out = it->get<int64_t>();
    *set = true;
    return true;
}
bool get_bool(const json& b, const char* key, bool* out, ApiError* err) {
    auto it = b.find(key);
    if (it == b.end() || it->is_null()) return true;
    if (!it->is_boolean()) return bad_request(err, key, "'", key, "' must be true or false");
    *out = it->get<bool>();
    return true;
}

// Sampling, stop, logprobs and cache fields shared by chat and completions.
bool parse_common(const json& b, ParsedGenerate* out, ApiError* err) {
    v1::GenerateRequest& r = out->request;
    if (auto it = b.find("model"); it != b.end() && !it->is_null()) {
        if (!it->is_string()) return bad_request(err, "model", "'model' must be a string");
        r.set_model(it->get<std::string>());
    }
    double d;
    int64_t i;
    bool set;
    v1::SamplingParams* sp = r.mutable_sampling();
    // OpenAI's default temperature is 1 (ours, 0, is greedy): an HTTP request that sets none samples.
    if (!get_number(b, "temperature", &d, &set, err)) return false;
    sp->set_temperature(set ? float(d) : 1.0f);
    if (!get_number(b, "top_p", &d, &set, err)) return false;
    if (set) sp->set_top_p(float(d));
    if (!get_int(b, "top_k", &i, &set, err)) return false;
    if (set) sp->set_top_k(i < 0 ? 0 : int32_t(i));  // llama.cpp/vLLM: -1 = off
    if (!get_number(b, "min_p", &d, &set, err)) return false;
    if (set) sp->set_min_p(float(d));
    if (!get_number(b, "repetition_penalty", &d, &set, err)) return false;
    if (set) sp->set_repetition_penalty(float(d));
    if (!get_number(b, "presence_penalty", &d, &set, err)) return false;
    if (set) sp->set_presence_penalty(float(d));
    if (!get_number(b, "frequency_penalty", &d, &set, err)) return false;
    if (set) sp->set_frequency_penalty(float(d));
    if (!get_int(b, "seed", &i, &set, err)) return false;
    if (set) sp->set_seed(uint64_t(i));

    v1::StopCriteria* st = r.mutable_stop();
    int64_t max_tokens = 0;
    bool have_max = false;
    if (!get_int(b, "max_completion_tokens", &max_tokens, &have_max, err)) return false;
    if (!have_max && !get_int(b, "max_tokens", &max_tokens, &have_max, err)) return false;
    if (have_max) {
        if (max_tokens < 1) return bad_request(err, "max_tokens", "'max_tokens' = ", max_tokens, ": must be >= 1");
        st->set_max_tokens(int32_t(std::min<int64_t>(max_tokens, INT32_MAX)));
    }
    if (auto it = b.find("stop"); it != b.end() && !it->is_null()) {
        if (it->is_string()) {
            st->add_stop(it->get<std::string>());
        } else if (it->is_array()) {
            for (const auto& s : *it) {
                if (!s.is_string()) return bad_request(err, "stop", "'stop' must be a string or an array of strings");
                st->add_stop(s.get<std::string>());
            }
        } else {
            return bad_request(err, "stop", "'stop' must be a string or an array of strings");
        }
    }
    if (auto it = b.find("stop_token_ids"); it != b.end() && it->is_array())
        for (const auto& t : *it) {
            if (!t.is_number_integer()) return bad_request(err, "stop_token_ids", "'stop_token_ids' must hold integers");
            st->add_stop_token_ids(t.get<int32_t>());
        }
    bool flag = false;
    if (!get_bool(b, "ignore_eos", &flag, err)) return false;
    st->set_ignore_eos(flag);
    flag = false;
    if (!get_bool(b, "include_stop_str_in_output", &flag, err)) return false;
    st->set_include_stop_str(flag);

    if (!get_int(b, "n", &i, &set, err)) return false;
    if (set) {
        if (i < 1) return bad_request(err, "n", "'n' = ", i, ": must be >= 1");
        r.set_n(int32_t(std::min<int64_t>(i, INT32_MAX)));
    }
    if (!get_bool(b, "stream", &out->stream, err)) return false;
    if (auto it = b.find("stream_options"); it != b.end() && it->is_object())
        if (!get_bool(*it, "include_usage", &out->include_usage, err)) return false;
    if (auto it = b.find("logit_bias"); it != b.end() && !it->is_null() && !it->empty())
        return bad_request(err, "logit_bias", "'logit_bias' is not supported by this server");
    if (auto it = b.find("response_format"); it != b.end() && it->is_object()) {
        const std::string type = it->value("type", "text");
        if (type != "text")
            return bad_request(err, "response_format",
                        "'response_format' type '", type,
                        "' is not supported: this server has no constrained decoding (only 'text')");
    }
    // Cache and routing: vLLM's cache_salt; session_id keeps a conversation on one worker.
    if (auto it = b.find("cache_salt"); it != b.end() && it->is_string())
        r.mutable_cache()->set_cache_salt(it->get<std::string>());
    if (auto it = b.find("session_id"); it != b.end() && it->is_string())
        r.mutable_cache()->set_session_id(it->get<std::string>());
    if (!get_int(b, "priority", &i, &set, err)) return false;
    if (set) r.set_priority(int32_t(i));
    r.set_return_text(true);
    return true;
}

// A message's content: a string, or an array of {"type":"text","text":...} parts (joined).
bool content_text(const json& c, const std::string& where, std::string* out, ApiError* err) {
    if (c.is_null()) return true;
    if (c.is_string()) {
        *out = c.get<std::string>();
        return true;
    }
    if (!c.is_array()) return bad_request(err, where, "'", where, "' must be a string or an array of content parts");
    for (size_t k = 0; k < c.size(); ++k) {
        const json& part = c[k];
        std::string type;
        if (!opt_string(part, "type", absl::StrCat(where, "[", k, "]"), "", &type, err)) return false;
        if (type != "text" || !part.contains("text") || !part["text"].is_string())
            return bad_request(err, where, "'", where, "[", k, "]' has type '", type,
                        "': only text content parts are supported (this model reads text only)");
        *out += part["text"].get<std::string>();
    }
    return true;
}


}  // namespace

bool opt_string(const json& obj, const char* key, const std::string& where, const char* fallback, std::string* out,
                ApiError* err) {
    *out = fallback;
    if (!obj.is_object()) return true;
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return true;
    const std::string field = where.empty() ? std::string(key) : absl::StrCat(where, ".", key);
    if (!it->is_string()) return bad_request(err, field, "'", field, "' must be a string");
    *out = it->get<std::string>();
    return true;
}

std::string openai_error_body(const ApiError& e) {
    json j = {{"error",
               {{"message", e.message},
                {"type", openai_error_type(e.status)},
                {"param", e.param.empty() ? json(nullptr) : json(e.param)},
                {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool parse_chat_request(const json& b, bool prefix_stable_default, ParsedGenerate* out, ApiError* err) {
    if (!b.is_object()) return bad_request(err, "", "the request body must be a JSON object");
    out->chat = true;
    if (!parse_common(b, out, err)) return false;
    v1::Chat* chat = out->request.mutable_prompt()->mutable_chat();
    auto msgs = b.find("messages");
    if (msgs == b.end() || !msgs->is_array() || msgs->empty())
        return bad_request(err, "messages", "'messages' must be a non-empty array");
    for (size_t k = 0; k < msgs->size(); ++k) {
        const json& m = (*msgs)[k];
        const std::string where = absl::StrCat("messages[", k, "]");
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
            return bad_request(err, where, "'", where, "' must be an object with a string 'role'");
        v1::ChatMessage* cm = chat->add_messages();
        std::string role = m["role"].get<std::string>();
        if (role == "developer") role = "system";  // OpenAI's newer name for the system role
        cm->set_role(role);
        if (!content_text(m.value("content", json()), where + ".content", cm->mutable_content(), err)) return false;
        for (const char* rk : {"reasoning_content", "reasoning"})
            if (auto it = m.find(rk); it != m.end() && it->is_string() && cm->reasoning_content().empty())
                cm->set_reasoning_content(it->get<std::string>());
        if (auto it = m.find("name"); it != m.end() && it->is_string()) cm->set_name(it->get<std::string>());
        if (auto tcs = m.find("tool_calls"); tcs != m.end() && !tcs->is_null()) {
            if (!tcs->is_array()) return bad_request(err, where + ".tool_calls", "'tool_calls' must be an array");
            for (size_t t = 0; t < tcs->size(); ++t) {
                const json& tc = (*tcs)[t];
                const std::string tw = absl::StrCat(where, ".tool_calls[", t, "]");
                if (!tc.is_object() || !tc.contains("function") || !tc["function"].is_object() ||
                    !tc["function"].contains("name") || !tc["function"]["name"].is_string())
                    return bad_request(err, tw, "'", tw, "' must be {\"type\":\"function\",\"function\":{\"name\",\"arguments\"}}");
                v1::ToolCall* out_tc = cm->add_tool_calls();
                out_tc->set_name(tc["function"]["name"].get<std::string>());
                const json& args = tc["function"].value("arguments", json("{}"));
                out_tc->set_arguments_json(args.is_string() ? args.get<std::string>() : args.dump());
            }
        }
    }
    const json none = json();
    const json& tools = b.contains("tools") ? b["tools"] : none;
    std::string tool_choice = "auto";
    if (auto it = b.find("tool_choice"); it != b.end() && !it->is_null()) {
        if (it->is_string()) tool_choice = it->get<std::string>();
        else tool_choice = "named";
    }
    if (tool_choice != "auto" && tool_choice != "none")
        return bad_request(err, "tool_choice", "'tool_choice' = ", tool_choice == "named" ? "a named function" : tool_choice,
                    " is not supported: this server cannot force a tool call (no constrained decoding); use "
                    "'auto' or 'none'");
    if (!tools.is_null()) {
        if (!tools.is_array()) return bad_request(err, "tools", "'tools' must be an array");
        // tool_choice none: the model is not shown the tools (and so calls none).
        if (tool_choice != "none")
            for (size_t t = 0; t < tools.size(); ++t) {
                if (!tools[t].is_object() || !tools[t].contains("function"))
                    return bad_request(err, absl::StrCat("tools[", t, "]"), "'tools[", t,
                                "]' must be {\"type\":\"function\",\"function\":{...}}");
                chat->add_tools()->set_json(tools[t].dump());
            }
    }
    bool prefix_stable = prefix_stable_default;
    if (!get_bool(b, "prefix_stable", &prefix_stable, err)) return false;
    if (auto it = b.find("chat_template_kwargs"); it != b.end() && it->is_object()) {
        if (auto e = it->find("enable_thinking"); e != it->end()) {
            if (!e->is_boolean())
                return bad_request(err, "chat_template_kwargs.enable_thinking", "'enable_thinking' must be true or false");
            chat->set_enable_thinking(e->get<bool>());
        }
        if (!get_bool(*it, "prefix_stable", &prefix_stable, err)) return false;
    }
    chat->set_prefix_stable(prefix_stable);
    bool logprobs = false;
    if (!get_bool(b, "logprobs", &logprobs, err)) return false;
    int64_t top = 0;
    bool set = false;
    if (!get_int(b, "top_logprobs", &top, &set, err)) return false;
    if (set && !logprobs) return bad_request(err, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (logprobs) {
        out->logprobs_top = int(top);
        out->request.mutable_logprobs()->set_logprobs(true);
        out->request.mutable_logprobs()->set_top_logprobs(int32_t(top));
    }
    return true;
}

bool parse_completion_request(const json& b, ParsedGenerate* out, ApiError* err) {
    if (!b.is_object()) return bad_request(err, "", "the request body must be a JSON object");
    if (!parse_common(b, out, err)) return false;
    auto p = b.find("prompt");
    if (p == b.end() || p->is_null()) return bad_request(err, "prompt", "'prompt' is required (text or token ids)");
    const json* prompt = &*p;
    // A batch of one prompt is that prompt; a batch of several is refused (send one request each, or n).
    if (prompt->is_array() && !prompt->empty() && (prompt->front().is_string() || prompt->front().is_array())) {
        if (prompt->size() != 1)
            return bad_request(err, "prompt", "'prompt' holds ", prompt->size(),
                        " prompts: this server takes one prompt per request (send several requests)");
        prompt = &prompt->front();
    }
    if (prompt->is_string()) {
        out->request.mutable_prompt()->set_text(prompt->get<std::string>());
    } else if (prompt->is_array()) {
        auto* ids = out->request.mutable_prompt()->mutable_token_ids();
        for (const auto& t : *prompt) {
            if (!t.is_number_integer()) return bad_request(err, "prompt", "'prompt' must be a string or an array of token ids");
            ids->add_ids(t.get<int32_t>());
        }
    } else {
        return bad_request(err, "prompt", "'prompt' must be a string or an array of token ids");
    }
    bool echo = false;
    if (!get_bool(b, "echo", &echo, err)) return false;
    if (echo) return bad_request(err, "echo", "'echo' is not supported by this server");
    if (auto it = b.find("suffix"); it != b.end() && !it->is_null())
        return bad_request(err, "suffix", "'suffix' is not supported by this server");
    if (auto it = b.find("best_of"); it != b.end() && !it->is_null() && *it != 1)
        return bad_request(err, "best_of", "'best_of' is not supported by this server (use n)");
    int64_t lp = 0;
    bool set = false;
    if (!get_int(b, "logprobs", &lp, &set, err)) return false;
    if (set) {
        out->logprobs_top = int(lp);
        out->request.mutable_logprobs()->set_logprobs(true);
        out->request.mutable_logprobs()->set_top_logprobs(int32_t(lp));
    }
    return true;
}

const char* openai_finish_reason(v1::FinishReason r) {
    switch (r) {
    case v1::FINISH_REASON_LENGTH: return "length";
    case v1::FINISH_REASON_TOOL_CALLS: return "tool_calls";
    case v1::FINISH_REASON_ERROR: return "error";
    case v1::FINISH_REASON_CANCELLED: return "abort";
    default: return "stop";
    }
}

OpenAIEncoder::OpenAIEncoder(const ParsedGenerate& req, const tok::Tokenizer* tok, std::string model)
    : req_(req),
      tok_(tok),
      model_(std::move(model)),
      id_(random_id(req.chat ? "chatcmpl-" : "cmpl-", "0123456789abcdef")),
      created_(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                   .count()) {
    choices_.resize(size_t(std::max(1, req.request.n())));
}

std::string OpenAIEncoder::frame(const json& j) {
    return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

json OpenAIEncoder::chunk(json choices) const {
    json j = {{"id", id_},
              {"object", req_.chat ? "chat.completion.chunk" : "text_completion"},
              {"created", created_},
              {"model", model_},
              {"choices", std::move(choices)}};
    if (req_.include_usage) j["usage"] = nullptr;
    return j;
}

json OpenAIEncoder::logprob_entries(const v1::Delta& d) const {
    auto text_of = [&](int32_t id) {
        if (!tok_) return std::string();
        auto t = tok_->decode({id});
        return t.ok() ? *t : std::string();
    };
    auto bytes = [](const std::string& s) {
        json a = json::array();
        for (unsigned char c : s) a.push_back(int(c));
        return a;
    };
    json out = json::array();
    for (int k = 0; k < d.logprobs_size(); ++k) {
        const std::string t = text_of(d.logprobs(k).token_id());
        json e = {{"token", t}, {"logprob", d.logprobs(k).logprob()}, {"bytes", bytes(t)}};
        json top = json::array();
        if (k < d.top_logprobs_size())
            for (const auto& c : d.top_logprobs(k).candidates()) {
                const std::string ct = text_of(c.token_id());
                top.push_back({{"token", ct}, {"logprob", c.logprob()}, {"bytes", bytes(ct)}});
            }
        e["top_logprobs"] = std::move(top);
        out.push_back(std::move(e));
    }
    return out;
}

// Legacy completions logprobs: {"tokens","token_logprobs","top_logprobs","text_offset"} from entries.
static json legacy_logprobs(const json& entries) {
    json l = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
    for (const auto& e : entries) {
        l["tokens"].push_back(e["token"]);
        l["token_logprobs"].push_back(e["logprob"]);
        json top = json::object();
        for (const auto& c : e["top_logprobs"]) top[c["token"].get<std::string>()] = c["logprob"];
        l["top_logprobs"].push_back(std::move(top));
    }
    return l;
}

std::string OpenAIEncoder::new_tool_call_id() {
    return absl::StrCat("call_", id_.substr(id_.size() - 8), "_", tool_call_seq_++);
}

std::string OpenAIEncoder::stream_frames(const v1::GenerateResponse& msg) {
    std::string out;
    if (msg.has_delta()) {
        const v1::Delta& d = msg.delta();
        if (d.index() < 0 || size_t(d.index()) >= choices_.size()) return out;
        Choice& c = choices_[size_t(d.index())];
        json choice = {{"index", d.index()}};
        if (req_.chat) {
            json delta = json::object();
            if (!c.role_sent) {
                delta["role"] = "assistant";
                c.role_sent = true;
            }
            if (!d.reasoning_text().empty()) {
                delta["reasoning_content"] = d.reasoning_text();
                delta["reasoning"] = d.reasoning_text();
            }
            if (!d.text().empty()) delta["content"] = d.text();
            // Tool calls as OpenAI streams them: the first piece of a call has its id, type and name, the
            // later ones only argument text; consecutive pieces of one call are sent as one.
            json calls = json::array();
            for (const auto& tc : d.tool_calls()) {
                if (!tc.name().empty() || c.call_ids.size() <= size_t(tc.index())) {
                    c.call_ids.resize(std::max(c.call_ids.size(), size_t(tc.index()) + 1));
                    c.call_ids[size_t(tc.index())] = new_tool_call_id();
                    calls.push_back({{"index", tc.index()}, {"id", c.call_ids[size_t(tc.index())]}, {"type", "function"},
                                     {"function", {{"name", tc.name()}, {"arguments", tc.arguments_json()}}}});
                } else if (!calls.empty() && calls.back()["index"] == tc.index()) {
                    calls.back()["function"]["arguments"] =
                        calls.back()["function"]["arguments"].get<std::string>() + tc.arguments_json();
                } else {
                    calls.push_back({{"index", tc.index()}, {"function", {{"arguments", tc.arguments_json()}}}});
                }
            }
            if (!calls.empty()) delta["tool_calls"] = std::move(calls);
            if (delta.size() == 1 && delta.contains("role")) delta["content"] = "";
            choice["delta"] = std::move(delta);
            choice["logprobs"] = req_.logprobs_top >= 0 ? json{{"content", logprob_entries(d)}} : json(nullptr);
        } else {
            choice["text"] = d.text();
            choice["logprobs"] = req_.logprobs_top >= 0 ? legacy_logprobs(logprob_entries(d)) : json(nullptr);
        }
        choice["finish_reason"] = nullptr;
        if (req_.chat && choice["delta"].empty()) return out;
        out += frame(chunk(json::array({std::move(choice)})));
    } else if (msg.has_finished()) {
        const v1::Finished& f = msg.finished();
        if (f.index() < 0 || size_t(f.index()) >= choices_.size()) return out;
        // Its tool calls were streamed as they were generated (Delta.tool_calls).
        json choice = {{"index", f.index()}};
        if (req_.chat) choice["delta"] = json::object();
        else choice["text"] = "";
        choice["logprobs"] = nullptr;
        choice["finish_reason"] = openai_finish_reason(f.finish_reason());
        if (!f.matched_stop().empty()) choice["stop_reason"] = f.matched_stop();
        out += frame(chunk(json::array({std::move(choice)})));
    } else if (msg.has_final()) {
        has_final_ = true;
        final_ = msg.final();
    }
    return out;
}

json OpenAIEncoder::usage_json() const {
    const v1::Usage& u = final_.usage();
    return {{"prompt_tokens", u.prompt_tokens()},
            {"completion_tokens", u.completion_tokens()},
            {"total_tokens", u.prompt_tokens() + u.completion_tokens()},
            {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens_device() + u.cached_tokens_host()}}},
            {"completion_tokens_details", {{"reasoning_tokens", u.reasoning_tokens()}}}};
}

// llama-server's "timings" object, from the front's Final.
static json timings_json(const v1::Final& f) {
    const v1::Usage& u = f.usage();
    const v1::Timings& t = f.timings();
    const int cached = u.cached_tokens_device() + u.cached_tokens_host();
    const int prompt_n = std::max(0, u.prompt_tokens() - cached);
    auto per = [](double ms, int n) { return n > 0 ? ms / n : 0.0; };
    auto rate = [](double ms, int n) { return ms > 0 ? 1000.0 * n / ms : 0.0; };
    return {{"cache_n", cached},
            {"prompt_n", prompt_n},
            {"prompt_ms", t.prefill_ms()},
            {"prompt_per_token_ms", per(t.prefill_ms(), prompt_n)},
            {"prompt_per_second", rate(t.prefill_ms(), prompt_n)},
            {"predicted_n", u.completion_tokens()},
            {"predicted_ms", t.decode_ms()},
            {"predicted_per_token_ms", per(t.decode_ms(), u.completion_tokens())},
            {"predicted_per_second", rate(t.decode_ms(), u.completion_tokens())}};
}

std::string OpenAIEncoder::stream_end() {
    std::string out;
    if (has_final_ && req_.include_usage) {
        json j = chunk(json::array());
        j["usage"] = usage_json();
        j["timings"] = timings_json(final_);
        out += frame(j);
    }
    return out + "data: [DONE]\n\n";
}

void OpenAIEncoder::add(const v1::GenerateResponse& msg) {
    if (msg.has_delta()) {
        const v1::Delta& d = msg.delta();
        if (d.index() < 0 || size_t(d.index()) >= choices_.size()) return;
        Choice& c = choices_[size_t(d.index())];
        c.content += d.text();
        c.reasoning += d.reasoning_text();
        if (req_.logprobs_top >= 0)
            for (auto& e : logprob_entries(d)) c.logprobs.push_back(std::move(e));
    } else if (msg.has_finished()) {
        const v1::Finished& f = msg.finished();
        if (f.index() < 0 || size_t(f.index()) >= choices_.size()) return;
        Choice& c = choices_[size_t(f.index())];
        c.finish_reason = openai_finish_reason(f.finish_reason());
        for (const auto& tc : f.tool_calls())
            c.tool_calls.push_back({{"id", new_tool_call_id()},
                                    {"type", "function"},
                                    {"function", {{"name", tc.name()}, {"arguments", tc.arguments_json()}}}});
    } else if (msg.has_final()) {
        has_final_ = true;
        final_ = msg.final();
    }
}

std::string OpenAIEncoder::whole_body() const {
    json choices = json::array();
    for (size_t k = 0; k < choices_.size(); ++k) {
        const Choice& c = choices_[k];
        json choice = {{"index", k}};
        if (req_.chat) {
            json m = {{"role", "assistant"}, {"content", c.content.empty() && !c.tool_calls.empty() ? json(nullptr) : json(c.content)}};
            if (!c.reasoning.empty()) {
                m["reasoning_content"] = c.reasoning;
                m["reasoning"] = c.reasoning;
            }
            if (!c.tool_calls.empty()) m["tool_calls"] = c.tool_calls;
            choice["message"] = std::move(m);
            choice["logprobs"] = req_.logprobs_top >= 0 ? json{{"content", c.logprobs}} : json(nullptr);
        } else {
            choice["text"] = c.content;
            choice["logprobs"] = req_.logprobs_top >= 0 ? legacy_logprobs(c.logprobs) : json(nullptr);
        }
        choice["finish_reason"] = c.finish_reason.empty() ? json(nullptr) : json(c.finish_reason);
        choices.push_back(std::move(choice));
    }
    json j = {{"id", id_},
              {"object", req_.chat ? "chat.completion" : "text_completion"},
              {"created", created_},
              {"model", model_},
              {"choices", std::move(choices)},
              {"usage", usage_json()},
              {"timings", timings_json(final_)}};
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string random_id(const char* prefix, std::string_view alphabet) {
    thread_local std::mt19937_64 gen(std::random_device{}());
    std::string s = prefix;
    for (int i = 0; i < 24; ++i) s += alphabet[gen() % alphabet.size()];
    return s;
}

}  // namespace dg::front::http
