#include "engine/tokenizer/tool_call_parser.h"

#include "absl/strings/str_cat.h"
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

// A parameter's value: text, or JSON when the tool's schema says the type is not a string and it parses.
ojson param_value(const std::vector<ojson>& tools, const std::string& fn, const std::string& key, std::string_view raw) {
    std::string value = strip_one_nl(raw);
    std::string type = param_type(tools, fn, key);
    if (!type.empty() && type != "string") {
        ojson parsed = ojson::parse(value, nullptr, false);
        if (!parsed.is_discarded()) return parsed;
    }
    return value;
}

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

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
        call.arguments[key] = param_value(tools, call.name, key, body.substr(key_end + 1, vend - key_end - 1));
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

size_t partial_tag_suffix(std::string_view s, std::string_view tag) {
    for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
        if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
    return 0;
}

void ToolCallStream::push(std::string_view text, std::vector<ToolCallFragment>* out) {
    buf_.append(text);
    for (;;) {
        if (!in_block_) {
            const size_t open = buf_.find(kOpen);
            if (open == std::string::npos) {
                const size_t keep = partial_tag_suffix(buf_, kOpen);
                outside_.append(buf_, 0, buf_.size() - keep);
                buf_.erase(0, buf_.size() - keep);
                return;
            }
            outside_.append(buf_, 0, open);
            buf_.erase(0, open + kOpen.size());
            in_block_ = true;
            name_.clear();
            params_end_ = 0;
            params_sent_ = 0;
            args_closed_ = false;
        }
        scan_open_block(out);
        const size_t close = buf_.find(kClose);
        if (close == std::string::npos) return;
        auto call = parse_block(std::string_view(buf_).substr(0, close), tools_);
        if (call.ok()) calls_.push_back(std::move(*call));
        else outside_ += std::string(kOpen) + buf_.substr(0, close) + std::string(kClose);  // malformed: stays text
        buf_.erase(0, close + kClose.size());
        in_block_ = false;
    }
}

// Hands out what became final in the open block (buf_ holds its body so far).
void ToolCallStream::scan_open_block(std::vector<ToolCallFragment>* out) {
    const int index = int(calls_.size());
    const std::string_view body(buf_);
    const size_t close = body.find(kClose);  // text after it belongs to later blocks
    const std::string_view block = body.substr(0, close);
    if (name_.empty()) {
        const size_t f = block.find("<function=");
        if (f == std::string_view::npos) return;
        const size_t e = block.find('>', f);
        if (e == std::string_view::npos || e == f + 10) return;
        name_ = std::string(block.substr(f + 10, e - f - 10));
        params_end_ = e + 1;
        out->push_back({index, name_, ""});
    }
    if (args_closed_) return;
    const size_t fend = block.find("</function>", params_end_);
    const std::string_view params = block.substr(0, fend);
    for (;;) {
        const size_t p = params.find("<parameter=", params_end_);
        if (p == std::string_view::npos) break;
        const size_t key_end = params.find('>', p);
        if (key_end == std::string_view::npos) break;
        const size_t vend = params.find("</parameter>", key_end);
        if (vend == std::string_view::npos) break;
        const std::string key(params.substr(p + 11, key_end - p - 11));
        const ojson value = param_value(tools_, name_, key, params.substr(key_end + 1, vend - key_end - 1));
        out->push_back({index, "", absl::StrCat(params_sent_ == 0 ? "{" : ",", dump(ojson(key)), ":", dump(value))});
        ++params_sent_;
        params_end_ = vend + 12;
    }
    if (fend != std::string_view::npos) {
        args_closed_ = true;
        out->push_back({index, "", params_sent_ == 0 ? "{}" : "}"});
    }
}

std::string ToolCallStream::rest() const {
    return in_block_ ? outside_ + std::string(kOpen) + buf_ : outside_ + buf_;
}

}  // namespace dg::tok
