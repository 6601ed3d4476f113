// Streaming detokenizer: token ids in, text deltas out. Two promises to the client:
//  * a delta never ends inside a UTF-8 character (incomplete bytes wait for the next token);
//  * text that might be the start of a stop string is held back until it is known not to be, so a stop
//    string is never partially emitted and then withheld.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace dg::tok {

struct StreamOptions {
    std::vector<std::string> stop;  // stop strings (non-empty); generation text ends before the first match
    bool skip_special = true;       // control tokens (<|im_end|>, ...) produce no text
    bool include_stop = false;      // emit the matched stop string itself (OpenAI: false)
};

class StreamDecoder {
public:
    StreamDecoder(const Tokenizer& tok, StreamOptions opt) : tok_(tok), opt_(std::move(opt)) {}

    // Text that is final after this token (often empty). An id outside the vocabulary is an error naming
    // it. After a stop string matched, further tokens are ignored and return "".
    absl::StatusOr<std::string> push(int32_t id);
    // End of stream: flushes held text; bytes of an unfinished character become U+FFFD.
    std::string finish();

    bool stopped() const { return stopped_; }
    const std::string& matched_stop() const { return matched_stop_; }

private:
    std::string release();  // moves safe text out of held_

    const Tokenizer& tok_;
    StreamOptions opt_;
    std::string pending_;  // bytes of an incomplete UTF-8 character
    std::string held_;     // valid text that may begin a stop string
    bool stopped_ = false;
    std::string matched_stop_;
};

}  // namespace dg::tok
