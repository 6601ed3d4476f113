#include "services/front/anthropic_api.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "services/common/status_http.h"

namespace dg::front::http {
namespace {


// Text of a string or of an array of {"type":"text"} blocks.
bool block_text(const json& c, const std::string& where, std::string* out, ApiError* err) {
    if (c.is_string()) {
        *out += c.get<std::string>();
        return true;
    }
    if (!c.is_array()) return bad_request(err, where, "'", where, "' must be a string or an array of content blocks");
    for (size_t k = 0; k < c.size(); ++k) {
        const json& b = c[k];
        const std::string bw = absl::StrCat(where, "[", k, "]");
        std::string type, text;
        if (!opt_string(b, "type", bw, "", &type, err) || !opt_string(b, "text", bw, "", &text, err)) return false;
        if (type != "text" || !b.contains("text"))
            return bad_request(err, where, "'", where, "' may hold only text blocks here");
        *out += text;
    }
    return true;
}

}  // namespace

std::string anthropic_error_body(const ApiError& e) {
    return json{{"type", "error"}, {"error", {{"type", anthropic_error_type(e.status)}, {"message", e.message}}}}.dump(
        -1, ' ', false, json::error_handler_t::replace);
}

bool parse_messages_request(const json& b, bool prefix_stable_default, ParsedMessages* out, ApiError* err) {
    if (!b.is_object()) return bad_request(err, "", "the request body must be a JSON object");
    v1::GenerateRequest& r = out->request;
    if (!b.contains("model") || !b["model"].is_string()) return bad_request(err, "model", "'model' is required (a string)");
    r.set_model(b["model"].get<std::string>());
    if (!b.contains("max_tokens") || !b["max_tokens"].is_number_integer() || b["max_tokens"].get<int64_t>() < 1)
        return bad_request(err, "max_tokens", "'max_tokens' is required: an integer >= 1");
    r.mutable_stop()->set_max_tokens(int32_t(std::min<int64_t>(b["max_tokens"].get<int64_t>(), INT32_MAX)));
    if (auto it = b.find("stop_sequences"); it != b.end() && !it->is_null()) {
        if (!it->is_array()) return bad_request(err, "stop_sequences", "'stop_sequences' must be an array of strings");
        for (const auto& s : *it) {
            if (!s.is_string()) return bad_request(err, "stop_sequences", "'stop_sequences' must be an array of strings");
            r.mutable_stop()->add_stop(s.get<std::string>());
        }
    }
    v1::SamplingParams* sp = r.mutable_sampling();
    sp->set_temperature(1.0f);  // Anthropic's default
    if (auto it = b.find("temperature"); it != b.end() && !it->is_null()) {
        if (!it->is_number()) return bad_request(err, "temperature", "'temperature' must be a number");
        sp->set_temperature(it->get<float>());
    }
    if (auto it = b.find("top_p"); it != b.end() && !it->is_null()) {
        if (!it->is_number()) return bad_request(err, "top_p", "'top_p' must be a number");
        sp->set_top_p(it->get<float>());
    }
    if (auto it = b.find("top_k"); it != b.end() && !it->is_null()) {
        if (!it->is_number_integer()) return bad_request(err, "top_k", "'top_k' must be an integer");
        sp->set_top_k(std::max(0, it->get<int32_t>()));
    }
    if (auto it = b.find("stream"); it != b.end() && !it->is_null()) {
        if (!it->is_boolean()) return bad_request(err, "stream", "'stream' must be true or false");
        out->stream = it->get<bool>();
    }
    r.set_return_text(true);
    if (auto it = b.find("metadata"); it != b.end() && it->is_object() && it->contains("user_id") &&
                                      (*it)["user_id"].is_string())
        r.mutable_cache()->set_session_id((*it)["user_id"].get<std::string>());

    v1::Chat* chat = r.mutable_prompt()->mutable_chat();
    if (auto it = b.find("system"); it != b.end() && !it->is_null()) {
        v1::ChatMessage* m = chat->add_messages();
        m->set_role("system");
        if (!block_text(*it, "system", m->mutable_content(), err)) return false;
    }
    auto msgs = b.find("messages");
    if (msgs == b.end() || !msgs->is_array() || msgs->empty())
        return bad_request(err, "messages", "'messages' must be a non-empty array");
    for (size_t k = 0; k < msgs->size(); ++k) {
        const json& m = (*msgs)[k];
        const std::string where = absl::StrCat("messages[", k, "]");
        std::string role;
        if (!opt_string(m, "role", where, "", &role, err)) return false;
        if (role != "user" && role != "assistant")
            return bad_request(err, where + ".role", "'", where, ".role' must be 'user' or 'assistant'");
        const json content = m.value("content", json());
        if (content.is_string()) {
            v1::ChatMessage* cm = chat->add_messages();
            cm->set_role(role);
            cm->set_content(content.get<std::string>());
            continue;
        }
        if (!content.is_array()) return bad_request(err, where + ".content", "'", where, ".content' must be a string or an array");
        // Tool results become tool messages (before the user's other text, as they answer the calls).
        v1::ChatMessage turn;
        turn.set_role(role);
        for (size_t j = 0; j < content.size(); ++j) {
            const json& blk = content[j];
            const std::string bw = absl::StrCat(where, ".content[", j, "]");
            std::string type, text;
            if (!opt_string(blk, "type", bw, "", &type, err)) return false;
            if (type == "text") {
                if (!opt_string(blk, "text", bw, "", &text, err)) return false;
                turn.mutable_content()->append(text);
            } else if (type == "thinking" && role == "assistant") {
                if (!opt_string(blk, "thinking", bw, "", &text, err)) return false;
                turn.mutable_reasoning_content()->append(text);
            } else if (type == "redacted_thinking" && role == "assistant") {
                // Nothing readable to render.
            } else if (type == "tool_use" && role == "assistant") {
                if (!opt_string(blk, "name", bw, "", &text, err)) return false;
                v1::ToolCall* tc = turn.add_tool_calls();
                tc->set_name(text);
                tc->set_arguments_json(blk.value("input", json::object()).dump());
            } else if (type == "tool_result" && role == "user") {
                v1::ChatMessage* tm = chat->add_messages();
                tm->set_role("tool");
                const json c = blk.value("content", json(""));
                if (!block_text(c, bw + ".content", tm->mutable_content(), err)) return false;
            } else {
                return bad_request(err, bw, "'", bw, "' has type '", type, "', which is not supported here (text, thinking, "
                            "tool_use in assistant turns, tool_result in user turns)");
            }
        }
        if (!turn.content().empty() || turn.tool_calls_size() > 0 || !turn.reasoning_content().empty() ||
            role == "assistant")
            *chat->add_messages() = std::move(turn);
    }
    std::string choice = "auto";
    if (auto it = b.find("tool_choice"); it != b.end() && it->is_object())
        if (!opt_string(*it, "type", "tool_choice", "auto", &choice, err)) return false;
    if (choice != "auto" && choice != "none")
        return bad_request(err, "tool_choice", "'tool_choice' type '", choice,
                    "' is not supported: this server cannot force a tool call (no constrained decoding); use auto or none");
    if (auto it = b.find("tools"); it != b.end() && !it->is_null()) {
        if (!it->is_array()) return bad_request(err, "tools", "'tools' must be an array");
        if (choice != "none")
            for (size_t t = 0; t < it->size(); ++t) {
                const json& tool = (*it)[t];
                if (!tool.is_object() || !tool.contains("name") || !tool["name"].is_string())
                    return bad_request(err, absl::StrCat("tools[", t, "]"), "'tools[", t, "]' needs a 'name'");
                json fn = {{"name", tool["name"]}};
                if (tool.contains("description")) fn["description"] = tool["description"];
                fn["parameters"] = tool.value("input_schema", json::object());
                chat->add_tools()->set_json(json{{"type", "function"}, {"function", fn}}.dump());
            }
    }
    // Thinking is off unless asked for, as in Anthropic's API.
    bool thinking = false;
    if (auto it = b.find("thinking"); it != b.end() && it->is_object()) {
        std::string type;
        if (!opt_string(*it, "type", "thinking", "", &type, err)) return false;
        thinking = type == "enabled";
    }
    chat->set_enable_thinking(thinking);
    chat->set_prefix_stable(prefix_stable_default);
    return true;
}

AnthropicEncoder::AnthropicEncoder(const ParsedMessages& req, std::string model)
    : req_(req), model_(std::move(model)), id_(random_id("msg_", "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")) {}

std::string AnthropicEncoder::event(const char* name, const json& data) {
    return absl::StrCat("event: ", name, "\ndata: ", data.dump(-1, ' ', false, json::error_handler_t::replace), "\n\n");
}

const char* AnthropicEncoder::stop_reason() const {
    switch (finish_) {
    case v1::FINISH_REASON_LENGTH: return "max_tokens";
    case v1::FINISH_REASON_TOOL_CALLS: return "tool_use";
    default: return matched_stop_.empty() ? "end_turn" : "stop_sequence";
    }
}

json AnthropicEncoder::usage_json() const {
    const v1::Usage& u = final_.usage();
    const int cached = u.cached_tokens_device() + u.cached_tokens_host();
    return {{"input_tokens", std::max(0, u.prompt_tokens() - cached)},
            {"cache_creation_input_tokens", 0},
            {"cache_read_input_tokens", cached},
            {"output_tokens", u.completion_tokens()}};
}

std::string AnthropicEncoder::close_block() {
    if (open_ == Block::kNone) return "";
    open_ = Block::kNone;
    return event("content_block_stop", {{"type", "content_block_stop"}, {"index", next_block_ - 1}});
}

std::string AnthropicEncoder::open_block(Block b) {
    if (open_ == b) return "";
    std::string out = close_block();
    open_ = b;
    json block = b == Block::kThinking ? json{{"type", "thinking"}, {"thinking", ""}, {"signature", ""}}
                                       : json{{"type", "text"}, {"text", ""}};
    out += event("content_block_start", {{"type", "content_block_start"}, {"index", next_block_++}, {"content_block", block}});
    return out;
}

std::string AnthropicEncoder::stream_frames(const v1::GenerateResponse& msg) {
    std::string out;
    if (!started_) {
        started_ = true;
        out += event("message_start",
                     {{"type", "message_start"},
                      {"message", {{"id", id_}, {"type", "message"}, {"role", "assistant"}, {"content", json::array()},
                                   {"model", model_}, {"stop_reason", nullptr}, {"stop_sequence", nullptr},
                                   {"usage", {{"input_tokens", 0}, {"output_tokens", 0}}}}}});
    }
    if (msg.has_delta()) {
        const v1::Delta& d = msg.delta();
        if (!d.reasoning_text().empty()) {
            out += open_block(Block::kThinking);
            out += event("content_block_delta", {{"type", "content_block_delta"}, {"index", next_block_ - 1},
                                                 {"delta", {{"type", "thinking_delta"}, {"thinking", d.reasoning_text()}}}});
        }
        if (!d.text().empty()) {
            out += open_block(Block::kText);
            out += event("content_block_delta", {{"type", "content_block_delta"}, {"index", next_block_ - 1},
                                                 {"delta", {{"type", "text_delta"}, {"text", d.text()}}}});
        }
        // Tool calls as they are generated: a tool_use block per call, its input as input_json_delta pieces.
        for (const auto& tc : d.tool_calls()) {
            if (open_ != Block::kToolUse || open_tool_call_ != tc.index()) {
                out += close_block();
                open_ = Block::kToolUse;
                open_tool_call_ = tc.index();
                out += event("content_block_start",
                             {{"type", "content_block_start"}, {"index", next_block_++},
                              {"content_block", {{"type", "tool_use"}, {"id", absl::StrCat(id_, "_tool", tool_seq_++)},
                                                 {"name", tc.name()}, {"input", json::object()}}}});
            }
            if (!tc.arguments_json().empty())
                out += event("content_block_delta", {{"type", "content_block_delta"}, {"index", next_block_ - 1},
                                                     {"delta", {{"type", "input_json_delta"},
                                                                {"partial_json", tc.arguments_json()}}}});
        }
    } else if (msg.has_finished()) {
        const v1::Finished& f = msg.finished();
        finish_ = f.finish_reason();
        matched_stop_ = f.matched_stop();
        out += close_block();  // its tool calls were streamed as they were generated (Delta.tool_calls)
    } else if (msg.has_final()) {
        has_final_ = true;
        final_ = msg.final();
    }
    return out;
}

std::string AnthropicEncoder::stream_end() {
    std::string out;
    if (!started_) out += stream_frames(v1::GenerateResponse());
    out += close_block();
    out += event("message_delta", {{"type", "message_delta"},
                                   {"delta", {{"stop_reason", stop_reason()},
                                              {"stop_sequence", matched_stop_.empty() ? json(nullptr) : json(matched_stop_)}}},
                                   {"usage", usage_json()}});
    out += event("message_stop", {{"type", "message_stop"}});
    return out;
}

std::string AnthropicEncoder::error_frame(const ApiError& e) const {
    return absl::StrCat("event: error\ndata: ", anthropic_error_body(e), "\n\n");
}

void AnthropicEncoder::add(const v1::GenerateResponse& msg) {
    if (msg.has_delta()) {
        text_ += msg.delta().text();
        thinking_ += msg.delta().reasoning_text();
    } else if (msg.has_finished()) {
        const v1::Finished& f = msg.finished();
        finish_ = f.finish_reason();
        matched_stop_ = f.matched_stop();
        for (const auto& tc : f.tool_calls()) {
            json input = json::parse(tc.arguments_json(), nullptr, false);
            if (input.is_discarded()) input = json::object();
            tool_uses_.push_back({{"type", "tool_use"}, {"id", absl::StrCat(id_, "_tool", tool_seq_++)},
                                  {"name", tc.name()}, {"input", std::move(input)}});
        }
    } else if (msg.has_final()) {
        has_final_ = true;
        final_ = msg.final();
    }
}

std::string AnthropicEncoder::whole_body() const {
    json content = json::array();
    if (!thinking_.empty()) content.push_back({{"type", "thinking"}, {"thinking", thinking_}, {"signature", ""}});
    if (!text_.empty() || tool_uses_.empty()) content.push_back({{"type", "text"}, {"text", text_}});
    for (const auto& t : tool_uses_) content.push_back(t);
    json j = {{"id", id_},
              {"type", "message"},
              {"role", "assistant"},
              {"model", model_},
              {"content", std::move(content)},
              {"stop_reason", stop_reason()},
              {"stop_sequence", matched_stop_.empty() ? json(nullptr) : json(matched_stop_)},
              {"usage", usage_json()}};
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace dg::front::http
