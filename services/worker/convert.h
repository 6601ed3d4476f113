// Proto <-> scheduler conversions and status mapping for the worker API (deltagate.worker.v1).
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "deltagate/worker/v1/worker.pb.h"
#include "scheduler/engine_loop.h"

namespace dg::worker {

namespace pb = ::deltagate::worker::v1;

// The proto's "0 = off/default" conventions become the scheduler's explicit values: top_p 0 -> 1,
// repetition_penalty 0 -> 1, n 0 -> 1, max_tokens 0 -> up to the context. Validation (ranges, ids)
// stays in EngineLoop::submit so that there is one source of truth for what is accepted.
sched::Request to_request(const pb::GenerateRequest& in, int32_t max_seq_len);

pb::FinishReason to_proto(sched::FinishReason r);
void to_proto(const sched::Usage& u, pb::Usage* out);
void to_proto(const sched::Event& e, pb::GenerateEvent* out);
void to_proto(const sched::LoadDigest& d, pb::LoadReport* out);

// absl and gRPC share code numbers; this keeps the message.
grpc::Status to_grpc(const absl::Status& s);

}  // namespace dg::worker
