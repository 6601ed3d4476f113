#include "services/front/request_builder.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace dg::front {
namespace {

absl::Status invalid(auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); }

int32_t prompt_limit(const ModelFacts& model, const FrontLimits& limits) {
    int32_t lim = model.max_context > 0 ? model.max_context - 1 : INT32_MAX;  // leave room for one token
    if (limits.max_prompt_tokens > 0) lim = std::min(lim, limits.max_prompt_tokens);
    return lim;
}

absl::Status check_ids(const std::vector<int32_t>& ids, const ModelFacts& model, const char* what) {
    for (size_t i = 0; i < ids.size(); ++i)
        if (ids[i] < 0 || (model.vocab_size > 0 && ids[i] >= model.vocab_size))
            return invalid(what, "[", i, "] = ", ids[i], " is not a token id of this model (vocabulary 0..",
                           model.vocab_size - 1, ")");
    return absl::OkStatus();
}

absl::Status too_long(size_t n, int32_t lim, const FrontLimits& limits) {
    const bool by_flag = limits.max_prompt_tokens > 0 && lim == limits.max_prompt_tokens;
    return invalid("prompt is ", n > size_t(lim) + 1 ? "" : "at least ", n, " tokens; the limit is ", lim,
                   by_flag ? " (--max-prompt-tokens of the front)" : " (the model's context minus one)",
                   ": shorten the prompt");
}

absl::Status no_tokenizer() {
    return absl::FailedPreconditionError(
        "this front has no tokenizer for the model (start it with --tokenizer tokenizer.json, or use a GGUF "
        "with an embedded vocabulary): send prompt.token_ids instead of text or chat");
}

// Encodes user text literally (never parsing <|im_start|> and friends out of untrusted text).
absl::Status encode_text(const tok::Tokenizer& tok, const std::string& text, int32_t lim, const FrontLimits& limits,
                         std::vector<int32_t>& out) {
    tok::EncodeOptions opt;
    opt.special = tok::SpecialTokens::kNone;
    opt.invalid_utf8 = tok::InvalidUtf8::kError;
    opt.max_tokens = size_t(lim) + 1 > out.size() ? size_t(lim) + 1 - out.size() : 1;
    absl::Status s = tok.encode_append(text, opt, out);
    if (absl::IsOutOfRange(s)) return too_long(size_t(lim) + 1, lim, limits);
    if (!s.ok()) return invalid("prompt text: ", s.message());
    return absl::OkStatus();
}

absl::StatusOr<tok::ojson> parse_json(const std::string& text, const std::string& what) {
    tok::ojson j = tok::ojson::parse(text, nullptr, false);
    if (j.is_discarded()) return invalid(what, " is not valid JSON: '", text.substr(0, 80), "'");
    return j;
}

absl::StatusOr<BuiltPrompt> build_chat(const v1::Chat& chat, const tok::Tokenizer& tok, const std::string* suffix) {
    BuiltPrompt out;
    out.chat = true;
    std::vector<tok::ChatMessage> msgs;
    for (int i = 0; i < chat.messages_size(); ++i) {
        const auto& m = chat.messages(i);
        if (m.role() != "system" && m.role() != "user" && m.role() != "assistant" && m.role() != "tool")
            return invalid("chat.messages[", i, "].role = '", m.role(), "': use system, user, assistant or tool");
        tok::ChatMessage cm;
        cm.role = m.role();
        cm.content = m.content();
        if (!m.reasoning_content().empty()) cm.reasoning_content = m.reasoning_content();
        for (int j = 0; j < m.tool_calls_size(); ++j) {
            tok::ToolCall tc;
            tc.name = m.tool_calls(j).name();
            const std::string& args = m.tool_calls(j).arguments_json();
            if (!args.empty()) {
                auto a = parse_json(args, absl::StrCat("chat.messages[", i, "].tool_calls[", j, "].arguments_json"));
                if (!a.ok()) return a.status();
                tc.arguments = std::move(*a);
            }
            cm.tool_calls.push_back(std::move(tc));
        }
        msgs.push_back(std::move(cm));
    }
    if (suffix && !suffix->empty()) msgs.push_back({.role = "user", .content = *suffix});
    if (msgs.empty()) return invalid("chat.messages is empty: give at least one message");
    tok::ChatOptions opt;
    for (int i = 0; i < chat.tools_size(); ++i) {
        auto t = parse_json(chat.tools(i).json(), absl::StrCat("chat.tools[", i, "].json"));
        if (!t.ok()) return t.status();
        if (!t->is_object()) return invalid("chat.tools[", i, "].json must be a JSON object (an OpenAI tool)");
        opt.tools.push_back(std::move(*t));
    }
    opt.enable_thinking = !chat.has_enable_thinking() || chat.enable_thinking();
    opt.prefix_stable = chat.prefix_stable();
    auto ids = tok::render_chat_ids(tok, msgs, opt);
    if (!ids.ok()) return invalid("chat: ", ids.status().message());
    out.ids = std::move(*ids);
    out.thinking = opt.enable_thinking;
    out.tools = std::move(opt.tools);
    return out;
}

}  // namespace

absl::StatusOr<BuiltPrompt> build_prompt(const v1::Prompt& p, const tok::Tokenizer* tok, const ModelFacts& model,
                                         const FrontLimits& limits, const std::string* suffix_text,
                                         const std::vector<int32_t>* suffix_ids) {
    const int32_t lim = prompt_limit(model, limits);
    BuiltPrompt out;
    switch (p.input_case()) {
    case v1::Prompt::kText:
        if (!tok) return no_tokenizer();
        if (auto s = encode_text(*tok, p.text(), lim, limits, out.ids); !s.ok()) return s;
        break;
    case v1::Prompt::kTokenIds:
        out.ids.assign(p.token_ids().ids().begin(), p.token_ids().ids().end());
        if (auto s = check_ids(out.ids, model, "prompt.token_ids.ids"); !s.ok()) return s;
        break;
    case v1::Prompt::kChat: {
        if (!tok) return no_tokenizer();
        auto c = build_chat(p.chat(), *tok, suffix_text);
        if (!c.ok()) return c.status();
        out = std::move(*c);
        suffix_text = nullptr;  // consumed as a user turn
        break;
    }
    case v1::Prompt::INPUT_NOT_SET:
        if ((!suffix_text || suffix_text->empty()) && (!suffix_ids || suffix_ids->empty()))
            return invalid("the prompt is empty: set prompt.text, prompt.token_ids or prompt.chat");
        break;
    }
    if (suffix_text && !suffix_text->empty()) {
        if (!tok) return no_tokenizer();
        if (auto s = encode_text(*tok, *suffix_text, lim, limits, out.ids); !s.ok()) return s;
    }
    if (suffix_ids && !suffix_ids->empty()) {
        if (auto s = check_ids(*suffix_ids, model, "continuation token_ids"); !s.ok()) return s;
        out.ids.insert(out.ids.end(), suffix_ids->begin(), suffix_ids->end());
    }
    if (out.ids.empty()) return invalid("the prompt encodes to no tokens: give some text or token ids");
    if (out.ids.size() > size_t(lim)) return too_long(out.ids.size(), lim, limits);
    return out;
}

absl::Status validate_sampling(const v1::SamplingParams& s) {
    auto finite = [](float v) { return std::isfinite(v); };
    if (!finite(s.temperature()) || s.temperature() < 0)
        return invalid("sampling.temperature = ", s.temperature(), ": must be >= 0 (0 = greedy)");
    if (!finite(s.top_p()) || s.top_p() < 0 || s.top_p() > 1)
        return invalid("sampling.top_p = ", s.top_p(), ": must be in (0, 1] (0 or 1 = off)");
    if (s.top_k() < 0) return invalid("sampling.top_k = ", s.top_k(), ": must be >= 0 (0 = off)");
    if (!finite(s.min_p()) || s.min_p() < 0 || s.min_p() >= 1)
        return invalid("sampling.min_p = ", s.min_p(), ": must be in [0, 1)");
    if (!finite(s.repetition_penalty()) || s.repetition_penalty() < 0)
        return invalid("sampling.repetition_penalty = ", s.repetition_penalty(), ": must be > 0 (0 or 1 = off)");
    if (!finite(s.presence_penalty()) || std::fabs(s.presence_penalty()) > 2)
        return invalid("sampling.presence_penalty = ", s.presence_penalty(), ": must be in [-2, 2]");
    if (!finite(s.frequency_penalty()) || std::fabs(s.frequency_penalty()) > 2)
        return invalid("sampling.frequency_penalty = ", s.frequency_penalty(), ": must be in [-2, 2]");
    return absl::OkStatus();
}

absl::Status validate_stop(const v1::StopCriteria& s, const ModelFacts& model, const FrontLimits& limits) {
    if (s.max_tokens() < 0) return invalid("stop.max_tokens = ", s.max_tokens(), ": must be >= 0 (0 = as many as allowed)");
    if (s.max_tokens() > limits.max_tokens)
        return invalid("stop.max_tokens = ", s.max_tokens(), " is over this front's limit of ", limits.max_tokens,
                       " (--max-tokens): ask for fewer");
    if (s.stop_size() > limits.max_stop_strings)
        return invalid(s.stop_size(), " stop strings; at most ", limits.max_stop_strings, " are allowed");
    for (int i = 0; i < s.stop_size(); ++i) {
        if (s.stop(i).empty()) return invalid("stop.stop[", i, "] is empty");
        if (int64_t(s.stop(i).size()) > limits.max_stop_bytes)
            return invalid("stop.stop[", i, "] is ", s.stop(i).size(), " bytes; at most ", limits.max_stop_bytes);
    }
    std::vector<int32_t> ids(s.stop_token_ids().begin(), s.stop_token_ids().end());
    return check_ids(ids, model, "stop.stop_token_ids");
}

absl::Status validate_logprobs(const v1::LogprobOptions& l, const FrontLimits& limits) {
    if (l.top_logprobs() < 0 || l.top_logprobs() > limits.max_top_logprobs)
        return invalid("logprobs.top_logprobs = ", l.top_logprobs(), ": must be in [0, ", limits.max_top_logprobs, "]");
    return absl::OkStatus();
}

absl::StatusOr<int32_t> resolve_max_tokens(const v1::StopCriteria& s, size_t prompt_len, const ModelFacts& model,
                                           const FrontLimits& limits) {
    const int64_t room = model.max_context > 0 ? int64_t(model.max_context) - int64_t(prompt_len) : INT32_MAX;
    if (room <= 0) return invalid("the prompt (", prompt_len, " tokens) fills the model's context of ", model.max_context);
    if (s.max_tokens() == 0) return int32_t(std::min<int64_t>(limits.max_tokens, room));
    if (s.max_tokens() > room)
        return invalid("prompt (", prompt_len, " tokens) + stop.max_tokens (", s.max_tokens(),
                       ") exceeds the model's context of ", model.max_context, ": ask for at most ", room, " tokens");
    return s.max_tokens();
}

absl::Status validate_model_name(const std::string& requested, const ModelFacts& model) {
    if (requested.empty() || requested == model.name) return absl::OkStatus();
    return absl::NotFoundError(absl::StrCat("model '", requested, "' is not served here; this front serves '",
                                            model.name, "' (see ListModels), or leave `model` empty"));
}

void to_worker_sampling(const v1::SamplingParams& s, uint64_t random_seed, worker::v1::SamplingParams* out) {
    out->set_temperature(s.temperature());
    out->set_top_k(s.top_k());
    out->set_top_p(s.top_p());
    out->set_min_p(s.min_p());
    out->set_seed(s.has_seed() ? s.seed() : random_seed);
    out->set_repetition_penalty(s.repetition_penalty());
    out->set_presence_penalty(s.presence_penalty());
    out->set_frequency_penalty(s.frequency_penalty());
}

}  // namespace dg::front
