#include "scheduler/request.h"

namespace dg::sched {

const char* finish_reason_name(FinishReason r) {
    switch (r) {
        case FinishReason::kNone: return "none";
        case FinishReason::kStop: return "stop";
        case FinishReason::kLength: return "length";
        case FinishReason::kCancelled: return "cancelled";
        case FinishReason::kDeadline: return "deadline";
        case FinishReason::kError: return "error";
    }
    return "?";
}

}  // namespace dg::sched
