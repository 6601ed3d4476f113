#include "services/front/output_track.h"

#include "engine/tokenizer/tool_call_parser.h"

namespace dg::front {
namespace {

constexpr std::string_view kToolCallOpen = "<tool_call>";

}  // namespace

OutputTrack::OutputTrack(int index, TrackOptions opt) : index_(index), opt_(std::move(opt)) {
    if (opt_.tokenizer) {
        tok::StreamOptions so;
        so.stop = opt_.stop;
        so.include_stop = opt_.include_stop;
        decoder_ = std::make_unique<tok::StreamDecoder>(*opt_.tokenizer, so);
        if (opt_.thinking) reasoning_ = std::make_unique<tok::ReasoningParser>(true);
    }
}

bool OutputTrack::push(int32_t id, v1::Delta* delta) {
    if (finished_) return false;
    ++completion_;
    if (reasoning_ && reasoning_->in_reasoning()) ++reasoning_tokens_;
    delta->set_index(index_);
    delta->add_token_ids(id);
    if (!decoder_) return false;
    auto text = decoder_->push(id);
    // An id the tokenizer does not know (a model whose vocabulary is larger than its tokenizer's: padding
    // rows) produces no text rather than failing the stream.
    if (text.ok()) add_text(*text, delta);
    return decoder_->stopped();
}

void OutputTrack::add_text(const std::string& text, v1::Delta* delta) {
    if (text.empty()) return;
    if (!reasoning_) {
        add_answer(text, delta);
        return;
    }
    tok::ReasoningDelta d = reasoning_->push(text);
    if (!d.reasoning.empty() && opt_.return_text) delta->mutable_reasoning_text()->append(d.reasoning);
    add_answer(d.content, delta);
}

void OutputTrack::add_answer(const std::string& text, v1::Delta* delta) {
    if (text.empty()) return;
    if (opt_.tools.empty()) {
        if (opt_.return_text) delta->mutable_text()->append(text);
        return;
    }
    if (tool_calls_) return stream_tool_calls(text, delta);
    answer_tail_ += text;
    const size_t open = answer_tail_.find(kToolCallOpen);
    size_t emit;
    if (open != std::string::npos) {
        emit = open;
    } else {
        emit = answer_tail_.size() - tok::partial_tag_suffix(answer_tail_, kToolCallOpen);
    }
    if (opt_.return_text) delta->mutable_text()->append(answer_tail_, 0, emit);
    answer_tail_.erase(0, emit);
    if (open != std::string::npos) {
        // From the first "<tool_call>" on, the answer goes through the incremental tool-call parser.
        tool_calls_ = std::make_unique<tok::ToolCallStream>(opt_.tools);
        std::string rest = std::move(answer_tail_);
        answer_tail_.clear();
        stream_tool_calls(rest, delta);
    }
}

void OutputTrack::stream_tool_calls(const std::string& text, v1::Delta* delta) {
    std::vector<tok::ToolCallFragment> pieces;
    tool_calls_->push(text, &pieces);
    for (auto& p : pieces) {
        auto* tc = delta->add_tool_calls();
        tc->set_index(p.index);
        tc->set_name(std::move(p.name));
        tc->set_arguments_json(std::move(p.arguments_json));
    }
}

void OutputTrack::finish(v1::FinishReason reason, int32_t last_token, v1::Delta* delta, v1::Finished* fin) {
    if (finished_) return;
    finished_ = true;
    delta->set_index(index_);
    if (decoder_) {
        const std::string rest = decoder_->finish();
        if (reasoning_) {
            tok::ReasoningDelta d = reasoning_->push(rest);
            tok::ReasoningDelta e = reasoning_->finish();
            if (opt_.return_text) delta->mutable_reasoning_text()->append(d.reasoning + e.reasoning);
            add_answer(d.content + e.content, delta);
        } else {
            add_answer(rest, delta);
        }
    }
    fin->set_index(index_);
    fin->set_matched_stop_token_id(-1);
    if (decoder_ && decoder_->stopped()) {
        fin->set_matched_stop(decoder_->matched_stop());
        reason = v1::FINISH_REASON_STOP;
    } else if (reason == v1::FINISH_REASON_STOP && last_token >= 0) {
        fin->set_matched_stop_token_id(last_token);
    }
    if (tool_calls_) {
        for (const auto& c : tool_calls_->calls()) {
            auto* tc = fin->add_tool_calls();
            tc->set_name(c.name);
            tc->set_arguments_json(c.arguments.dump(-1, ' ', false, tok::ojson::error_handler_t::replace));
        }
        // Text around the calls, trimmed as the whole-text parser trims it; an unclosed call stays raw text.
        const std::string rest = tool_calls_->rest();
        auto parsed = tok::parse_tool_calls(rest, opt_.tools);
        if (opt_.return_text) delta->mutable_text()->append(parsed.ok() ? parsed->content : rest);
        if (!tool_calls_->calls().empty() && reason == v1::FINISH_REASON_STOP) reason = v1::FINISH_REASON_TOOL_CALLS;
    } else if (!answer_tail_.empty()) {
        if (opt_.return_text) delta->mutable_text()->append(answer_tail_);  // a partial "<tool_c": plain text
        answer_tail_.clear();
    }
    reason_ = reason;
    fin->set_finish_reason(reason);
    fin->set_completion_tokens(completion_);
    fin->set_reasoning_tokens(reasoning_tokens_);
}

}  // namespace dg::front
