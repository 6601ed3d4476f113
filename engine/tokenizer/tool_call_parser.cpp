#include "engine/tokenizer/tool_call_parser.h"

#include "absl/strings/str_format.h"

namespace dg::tok {

namespace {

constexpr std::string_view kOpen = "<tool_call>", kClose = "</tool_call>";

// The schema type of `param` in tool `name`, or "" when unknown.
std::string param_type(const std::vector<ojson>& tools, const std::string& name, const std::string& param) {
    for (const auto& t : tools) {
        const ojson& f = t.contains("function") ? t["function"] : t;
        if (!f.is_object() || f.value("name", "") != name) continue;
        if (!f.contains("parameters") || !f["parameters"].contains("properties")) return "";
        const ojson& props = f["parameters"]["properties"];
        if (!props.contains(param) || !props[param].contains("type")) return "";
        const ojson& ty = props[param]["type"];
        return ty.is_string() ? ty.get<std::string>() : "";
    }
    return "";
}

std::string strip_one_nl(std::string_view v) {
    if (!v.empty() && v.front() == '\n') v.remove_prefix(1);
    if (!v.empty() && v.back() == '\n') v.remove_suffix(1);
    return std::string(v);
}

absl::StatusOr<ToolCall> parse_block(std::string_view block, const std::vector<ojson>& tools) {
    size_t f = block.find("<function=");
    if (f == std::string_view::npos) return absl::InvalidArgumentError("tool call without <function=NAME>");
    size_t name_end = block.find('>', f);
    if (name_end == std::string_view::npos) return absl::InvalidArgumentError("unterminated <function= tag");
    ToolCall call;
    call.name = std::string(block.substr(f + 10, name_end - f - 10));
    if (call.name.empty()) return absl::InvalidArgumentError("tool call with an empty function name");
    size_t fend = block.find("</function>", name_end);
    if (fend == std::string_view::npos) return absl::InvalidArgumentError("function '" + call.name + "' is not closed");
    std::string_view body = block.substr(name_end + 1, fend - name_end - 1);
    size_t pos = 0;
    while ((pos = body.find("<parameter=", pos)) != std::string_view::npos) {
        size_t key_end = body.find('>', pos);
        if (key_end == std::string_view::npos) return absl::InvalidArgumentError("unterminated <parameter= tag");
        std::string key(body.substr(pos + 11, key_end - pos - 11));
        size_t vend = body.find("</parameter>", key_end);
        if (vend == std::string_view::npos)
            return absl::InvalidArgumentError("parameter '" + key + "' of '" + call.name + "' is not closed");
        std::string value = strip_one_nl(body.substr(key_end + 1, vend - key_end - 1));
        std::string type = param_type(tools, call.name, key);
        ojson v = value;
        if (!type.empty() && type != "string") {
            ojson parsed = ojson::parse(value, nullptr, false);
            if (!parsed.is_discarded()) v = std::move(parsed);
        }
        call.arguments[key] = std::move(v);
        pos = vend + 12;
    }
    return call;
}

}  // namespace

absl::StatusOr<ParsedToolCalls> parse_tool_calls(std::string_view text, const std::vector<ojson>& tools) {
    ParsedToolCalls out;
    size_t pos = 0;
    while (true) {
        size_t open = text.find(kOpen, pos);
        if (open == std::string_view::npos) {
            out.content.append(text.substr(pos));
            break;
        }
        out.content.append(text.substr(pos, open - pos));
        size_t close = text.find(kClose, open);
        if (close == std::string_view::npos)
            return absl::InvalidArgumentError(absl::StrFormat("<tool_call> at offset %d is not closed", open));
        auto call = parse_block(text.substr(open + kOpen.size(), close - open - kOpen.size()), tools);
        if (!call.ok())
            return absl::InvalidArgumentError(absl::StrFormat("tool call at offset %d: %s", open, call.status().message()));
        out.calls.push_back(std::move(*call));
        pos = close + kClose.size();
    }
    while (!out.content.empty() && (out.content.back() == '\n' || out.content.back() == ' ')) out.content.pop_back();
    return out;
}

}  // namespace dg::tok
