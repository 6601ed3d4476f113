#include "engine/tokenizer/detokenize.h"

#include "engine/status.h"
#include "engine/tokenizer/unicode.h"

namespace dg::tok {

std::string StreamDecoder::release() {
    // Earliest complete stop string wins: everything before it is final, everything after is dropped.
    size_t best = std::string::npos;
    const std::string* which = nullptr;
    for (const std::string& s : opt_.stop) {
        if (s.empty()) continue;
        size_t at = held_.find(s);
        if (at < best) {
            best = at;
            which = &s;
        }
    }
    if (which) {
        std::string out = held_.substr(0, best);
        if (opt_.include_stop) out += *which;
        stopped_ = true;
        matched_stop_ = *which;
        held_.clear();
        pending_.clear();
        return out;
    }
    // Keep the longest tail of held_ that is a proper prefix of some stop string.
    size_t keep = 0;
    for (const std::string& s : opt_.stop) {
        size_t max = std::min(s.size() - (s.empty() ? 0 : 1), held_.size());
        for (size_t k = max; k > keep; --k)
            if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
                keep = k;
                break;
            }
    }
    // Never split a character when holding back (stop strings are valid UTF-8, so a match starts at a
    // character boundary anyway).
    std::string out = held_.substr(0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
    return out;
}

absl::StatusOr<std::string> StreamDecoder::push(int32_t id) {
    DG_ASSIGN_OR_RETURN(std::string_view bytes, tok_.token_bytes(id));
    if (stopped_) return std::string();
    if (opt_.skip_special && tok_.type(id) == TokenType::kControl) return std::string();
    pending_.append(bytes);
    size_t complete = utf8_complete_prefix(pending_);
    // Bytes that can never become valid are replaced now; only a valid-so-far tail waits.
    held_ += utf8_replace_invalid(std::string_view(pending_).substr(0, complete));
    pending_.erase(0, complete);
    return release();
}

std::string StreamDecoder::finish() {
    if (stopped_) return std::string();
    if (!pending_.empty()) {
        held_ += utf8_replace_invalid(pending_);
        pending_.clear();
    }
    std::string out = release();  // a stop string may complete with the flushed bytes
    if (!stopped_) {
        out += held_;
        held_.clear();
    }
    return out;
}

}  // namespace dg::tok
