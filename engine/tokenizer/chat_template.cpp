#include "engine/tokenizer/chat_template.h"

#include <cmath>

#include "absl/strings/str_format.h"
#include "engine/status.h"
#include "engine/tokenizer/unicode.h"

namespace dg::tok {

namespace {

constexpr std::string_view kToolsHeader = "# Tools\n\nYou have access to the following functions:\n\n<tools>";
constexpr std::string_view kToolsFooter =
    "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n"
    "- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested "
    "within <tool_call></tool_call> XML tags\n- Required parameters MUST be specified\n"
    "- You may provide optional reasoning for your function call in natural language BEFORE the function call, "
    "but NOT after\n- If there is no function call available, answer the question like normal with your current "
    "knowledge and do not tell the user about function calls\n</IMPORTANT>";
constexpr std::string_view kThinkPrompt = "<think>\n";
constexpr std::string_view kNoThinkPrompt = "<think>\n\n</think>\n\n";

// Python str.isspace(): White_Space plus the ASCII information separators 0x1C-0x1F.
bool py_space(char32_t c) { return (c >= 0x1C && c <= 0x1F) || (char_class(c) & kCatWs); }

std::string lstrip_nl(std::string_view s) {
    while (!s.empty() && s.front() == '\n') s.remove_prefix(1);
    return std::string(s);
}
std::string rstrip_nl(std::string_view s) {
    while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
    return std::string(s);
}
bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) { return s.size() >= p.size() && s.substr(s.size() - p.size()) == p; }

void dump_string(std::string& out, const std::string& s) {
    out.push_back('"');
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (c < 0x20) out += absl::StrFormat("\\u%04x", c);
                else out.push_back(static_cast<char>(c));
        }
    }
    out.push_back('"');
}

void dump(std::string& out, const ojson& v) {
    switch (v.type()) {
        case ojson::value_t::object: {
            out.push_back('{');
            bool first = true;
            for (auto it = v.begin(); it != v.end(); ++it) {
                if (!first) out += ", ";
                first = false;
                dump_string(out, it.key());
                out += ": ";
                dump(out, it.value());
            }
            out.push_back('}');
            break;
        }
        case ojson::value_t::array: {
            out.push_back('[');
            for (size_t i = 0; i < v.size(); ++i) {
                if (i) out += ", ";
                dump(out, v[i]);
            }
            out.push_back(']');
            break;
        }
        case ojson::value_t::string: dump_string(out, v.get_ref<const std::string&>()); break;
        case ojson::value_t::boolean: out += v.get<bool>() ? "true" : "false"; break;
        case ojson::value_t::null: out += "null"; break;
        case ojson::value_t::number_float: {
            double d = v.get<double>();
            if (std::isnan(d)) out += "NaN";
            else if (std::isinf(d)) out += d > 0 ? "Infinity" : "-Infinity";
            else out += v.dump();  // shortest round-trip digits, as Python's float repr
            break;
        }
        default: out += v.dump();  // integers
    }
}

struct Segment {
    std::string text;
    const std::vector<int32_t>* ids = nullptr;  // verbatim ids instead of encoding `text`
};

absl::StatusOr<ojson> call_arguments(const ToolCall& tc) {
    if (tc.arguments.is_object()) return tc.arguments;
    if (tc.arguments.is_string()) {
        ojson parsed = ojson::parse(tc.arguments.get<std::string>(), nullptr, false);
        if (!parsed.is_discarded() && parsed.is_object()) return parsed;
    }
    if (tc.arguments.is_null()) return ojson::object();
    return absl::InvalidArgumentError("tool call '" + tc.name + "': arguments must be a JSON object");
}

absl::StatusOr<std::vector<Segment>> render(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) {
    if (msgs.empty()) return absl::InvalidArgumentError("No messages provided.");
    const bool preserve = opt.preserve_thinking || opt.prefix_stable;
    std::vector<Segment> segs;
    auto add = [&](std::string s) { segs.push_back({std::move(s)}); };
    auto& tools = opt.tools;

    if (!tools.empty()) {
        std::string s = "<|im_start|>system\n";
        s += kToolsHeader;
        for (const auto& t : tools) s += "\n" + py_json_dumps(t);
        s += kToolsFooter;
        if (msgs[0].role == "system") {
            std::string c = py_strip(msgs[0].content);
            if (!c.empty()) s += "\n\n" + c;
        }
        s += "<|im_end|>\n";
        add(std::move(s));
    } else if (msgs[0].role == "system") {
        add("<|im_start|>system\n" + py_strip(msgs[0].content) + "<|im_end|>\n");
    }

    // The last real user query: assistant turns after it keep their reasoning (official behaviour).
    std::optional<size_t> last_query;
    for (size_t k = msgs.size(); k-- > 0;) {
        if (msgs[k].role != "user") continue;
        std::string c = py_strip(msgs[k].content);
        if (!(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>"))) {
            last_query = k;
            break;
        }
    }
    if (!last_query) return absl::InvalidArgumentError("No user query found in messages.");

    for (size_t i = 0; i < msgs.size(); ++i) {
        const ChatMessage& m = msgs[i];
        std::string content = py_strip(m.content);
        if (m.role == "system") {
            if (i != 0) return absl::InvalidArgumentError("System message must be at the beginning.");
        } else if (m.role == "user") {
            add("<|im_start|>user\n" + content + "<|im_end|>\n");
        } else if (m.role == "assistant") {
            std::string reasoning;
            if (m.reasoning_content) {
                reasoning = *m.reasoning_content;
            } else if (size_t at = content.find("</think>"); at != std::string::npos) {
                std::string before = rstrip_nl(content.substr(0, at));
                size_t open = before.rfind("<think>");
                reasoning = lstrip_nl(open == std::string::npos ? before : before.substr(open + 7));
                content = lstrip_nl(content.substr(content.rfind("</think>") + 8));
            }
            reasoning = py_strip(reasoning);
            std::string body;
            std::string head = "<|im_start|>assistant\n";
            if (preserve || i > *last_query) {
                if (opt.prefix_stable) {
                    // Cut where the generation prompt ended, so the prompt's ids are a prefix of these.
                    bool thinking = m.thinking.value_or(!reasoning.empty());
                    if (thinking) {
                        head += kThinkPrompt;
                        body = reasoning + "\n</think>\n\n" + content;
                    } else {
                        head += kNoThinkPrompt;
                        body = reasoning.empty() ? content : reasoning + "\n</think>\n\n" + content;  // unusual
                    }
                } else {
                    body = "<think>\n" + reasoning + "\n</think>\n\n" + content;
                }
            } else {
                body = content;
            }
            for (size_t k = 0; k < m.tool_calls.size(); ++k) {
                const ToolCall& tc = m.tool_calls[k];
                if (k == 0) body += py_strip(content).empty() ? "" : "\n\n";
                else body += "\n";
                body += "<tool_call>\n<function=" + tc.name + ">\n";
                DG_ASSIGN_OR_RETURN(ojson args, call_arguments(tc));
                for (auto it = args.begin(); it != args.end(); ++it) {
                    body += "<parameter=" + it.key() + ">\n";
                    body += it.value().is_string() ? it.value().get<std::string>() : py_json_dumps(it.value());
                    body += "\n</parameter>\n";
                }
                body += "</function>\n</tool_call>";
            }
            if (opt.prefix_stable) {
                add(std::move(head));
                if (!m.generated_ids.empty()) segs.push_back({"", &m.generated_ids});
                else add(std::move(body));
                add("<|im_end|>\n");
            } else {
                add(head + body + "<|im_end|>\n");
            }
        } else if (m.role == "tool") {
            std::string s;
            if (i > 0 && msgs[i - 1].role != "tool") s += "<|im_start|>user";
            s += "\n<tool_response>\n" + content + "\n</tool_response>";
            if (i + 1 == msgs.size() || msgs[i + 1].role != "tool") s += "<|im_end|>\n";
            add(std::move(s));
        } else {
            return absl::InvalidArgumentError("Unexpected message role '" + m.role + "'.");
        }
    }
    if (opt.add_generation_prompt)
        add(std::string("<|im_start|>assistant\n") + std::string(opt.enable_thinking ? kThinkPrompt : kNoThinkPrompt));
    return segs;
}

}  // namespace

std::string py_json_dumps(const ojson& v) {
    std::string out;
    dump(out, v);
    return out;
}

std::string py_strip(std::string_view s) {
    size_t b = 0, e = s.size();
    char32_t c;
    while (b < e) {
        size_t len = utf8_decode(s, b, &c);
        if (!len || !py_space(c)) break;
        b += len;
    }
    while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
        size_t len = utf8_decode(s, start, &c);
        if (!len || start + len != e || !py_space(c)) break;
        e = start;
    }
    return std::string(s.substr(b, e - b));
}

absl::StatusOr<std::string> render_chat(const std::vector<ChatMessage>& messages, const ChatOptions& opt) {
    DG_ASSIGN_OR_RETURN(auto segs, render(messages, opt));
    std::string out;
    for (const auto& s : segs) {
        if (s.ids) return absl::InvalidArgumentError("render_chat: generated_ids need render_chat_ids");
        out += s.text;
    }
    return out;
}

absl::StatusOr<std::vector<int32_t>> render_chat_ids(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                                                     const ChatOptions& opt) {
    DG_ASSIGN_OR_RETURN(auto segs, render(messages, opt));
    std::vector<int32_t> ids;
    if (!opt.prefix_stable) {
        std::string text;
        for (const auto& s : segs) text += s.text;
        DG_RETURN_IF_ERROR(tok.encode_append(text, {}, ids));
        return ids;
    }
    for (const auto& s : segs) {
        if (s.ids) {
            for (int32_t id : *s.ids) DG_RETURN_IF_ERROR(tok.token_bytes(id).status());
            ids.insert(ids.end(), s.ids->begin(), s.ids->end());
        } else {
            DG_RETURN_IF_ERROR(tok.encode_append(s.text, {}, ids));
        }
    }
    return ids;
}

}  // namespace dg::tok
