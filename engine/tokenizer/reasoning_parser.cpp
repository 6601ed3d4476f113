#include "engine/tokenizer/reasoning_parser.h"

namespace dg::tok {

namespace {
constexpr std::string_view kOpen = "<think>", kClose = "</think>", kToolCall = "<tool_call>";

// Length of the longest tail of `s` that is a proper prefix of `tag`.
size_t partial_tail(std::string_view s, std::string_view tag) {
    for (size_t k = std::min(s.size(), tag.size() - 1); k > 0; --k)
        if (s.substr(s.size() - k) == tag.substr(0, k)) return k;
    return 0;
}
}  // namespace

ReasoningDelta ReasoningParser::drain(bool final) {
    ReasoningDelta out;
    while (!buf_.empty()) {
        if (!in_reasoning_) {
            if (at_start_) {
                // Only a leading "<think>" (after optional whitespace) opens reasoning in the output.
                size_t ws = buf_.find_first_not_of(" \n\r\t");
                if (ws == std::string::npos) {
                    if (!final) return out;
                    break;
                }
                std::string_view rest = std::string_view(buf_).substr(ws);
                if (rest.substr(0, kOpen.size()) == kOpen) {
                    buf_.erase(0, ws + kOpen.size());
                    in_reasoning_ = true;
                    at_start_ = false;
                    continue;
                }
                if (!final && kOpen.substr(0, rest.size()) == rest) return out;  // could still be "<think>"
                at_start_ = false;
            }
            out.content += buf_;
            buf_.clear();
            break;
        }
        at_start_ = false;
        size_t close = buf_.find(kClose), call = buf_.find(kToolCall);
        if (close != std::string::npos && (call == std::string::npos || close < call)) {
            out.reasoning += buf_.substr(0, close);
            buf_.erase(0, close + kClose.size());
            in_reasoning_ = false;
            continue;
        }
        if (call != std::string::npos) {
            out.reasoning += buf_.substr(0, call);
            buf_.erase(0, call);  // the tool call belongs to the answer
            in_reasoning_ = false;
            continue;
        }
        size_t keep = final ? 0 : std::max(partial_tail(buf_, kClose), partial_tail(buf_, kToolCall));
        out.reasoning += buf_.substr(0, buf_.size() - keep);
        buf_.erase(0, buf_.size() - keep);
        break;
    }
    return out;
}

ReasoningDelta ReasoningParser::push(std::string_view text) {
    buf_.append(text);
    return drain(false);
}

ReasoningDelta ReasoningParser::finish() { return drain(true); }

ReasoningDelta parse_reasoning(std::string_view text, bool in_reasoning) {
    ReasoningParser p(in_reasoning);
    ReasoningDelta a = p.push(text), b = p.finish();
    ReasoningDelta out{a.reasoning + b.reasoning, a.content + b.content};
    auto trim_nl = [](std::string& s) {
        size_t b0 = s.find_first_not_of('\n');
        if (b0 == std::string::npos) { s.clear(); return; }
        s = s.substr(b0, s.find_last_not_of('\n') + 1 - b0);
    };
    trim_nl(out.reasoning);
    size_t c0 = out.content.find_first_not_of('\n');
    out.content = c0 == std::string::npos ? std::string() : out.content.substr(c0);
    return out;
}

}  // namespace dg::tok
