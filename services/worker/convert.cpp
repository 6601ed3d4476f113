#include "services/worker/convert.h"

#include <algorithm>

namespace dg::worker {

sched::Request to_request(const pb::GenerateRequest& in, int32_t max_seq_len) {
    sched::Request r;
    r.prompt.assign(in.prompt_token_ids().begin(), in.prompt_token_ids().end());
    const pb::SamplingParams& s = in.sampling();
    r.sampling.temperature = s.temperature();
    r.sampling.top_k = s.top_k();
    r.sampling.top_p = s.top_p() == 0.f ? 1.f : s.top_p();
    r.sampling.min_p = s.min_p();
    r.sampling.seed = s.seed();
    r.sampling.repetition_penalty = s.repetition_penalty() == 0.f ? 1.f : s.repetition_penalty();
    r.sampling.presence_penalty = s.presence_penalty();
    r.sampling.frequency_penalty = s.frequency_penalty();
    r.n = in.n() == 0 ? 1 : in.n();
    // max_tokens 0: until a stop token or the context ends (at least one token, so a full-context
    // prompt still gets its clear "length" finish rather than a validation error).
    r.max_tokens = in.max_tokens() != 0 ? in.max_tokens() : std::max<int32_t>(1, max_seq_len - in.prompt_token_ids_size());
    r.stop_tokens.assign(in.stop_token_ids().begin(), in.stop_token_ids().end());
    r.ignore_eos = in.ignore_eos();
    r.priority = in.priority();
    r.cache_salt = in.cache_salt();
    r.checkpoint_at.assign(in.checkpoint_at().begin(), in.checkpoint_at().end());
    r.top_logprobs = in.top_logprobs();
    r.logprobs = in.logprobs() || in.top_logprobs() > 0;
    r.resumed_tokens = in.resumed_tokens();
    r.session_id = in.session_key();
    return r;
}

pb::FinishReason to_proto(sched::FinishReason r) {
    switch (r) {
        case sched::FinishReason::kNone: return pb::FINISH_REASON_UNSPECIFIED;
        case sched::FinishReason::kStop: return pb::FINISH_REASON_STOP;
        case sched::FinishReason::kLength: return pb::FINISH_REASON_LENGTH;
        case sched::FinishReason::kCancelled: return pb::FINISH_REASON_CANCELLED;
        case sched::FinishReason::kDeadline: return pb::FINISH_REASON_DEADLINE;
        case sched::FinishReason::kError: return pb::FINISH_REASON_ERROR;
    }
    return pb::FINISH_REASON_UNSPECIFIED;
}

void to_proto(const sched::Usage& u, pb::Usage* out) {
    out->set_prompt_tokens(u.prompt_tokens);
    out->set_cached_tokens_device(u.cached_tokens_device);
    out->set_cached_tokens_host(u.cached_tokens_host);
    out->set_prefill_tokens(u.prefill_tokens);
    out->set_completion_tokens(u.completion_tokens);
    out->set_preemptions(u.preemptions);
    out->set_queue_ms(u.queue_ms);
    out->set_prefill_ms(u.prefill_ms);
    out->set_ttft_ms(u.ttft_ms);
    out->set_decode_ms(u.decode_ms);
    out->set_restore_ms(u.restore_ms);
}

void to_proto(const sched::Event& e, pb::GenerateEvent* out) {
    out->set_index(e.index);
    out->set_token_id(e.token);
    if (e.token >= 0) out->set_logprob(e.logprob);
    for (const auto& [id, lp] : e.top_logprobs) {
        pb::TokenLogprob* t = out->add_top_logprobs();
        t->set_token_id(id);
        t->set_logprob(lp);
    }
    out->set_finish_reason(to_proto(e.finish));
    out->set_done(e.request_done);
    if (e.request_done) to_proto(e.usage, out->mutable_usage());
}

void to_proto(const sched::LoadDigest& d, pb::LoadReport* out) {
    out->set_running(d.running);
    out->set_waiting(d.waiting);
    out->set_kv_blocks_total(d.kv_blocks_total);
    out->set_kv_blocks_used(d.kv_blocks_referenced);
    out->set_kv_blocks_cached(d.kv_blocks_cached);
    out->set_seq_slots_total(d.seq_slots_total);
    out->set_seq_slots_used(d.seq_slots_used);
    out->set_host_cache_bytes(d.host_bytes);
    out->set_host_cache_budget_bytes(d.host_budget);
    out->set_checkpoints_device(d.checkpoints_device);
    out->set_checkpoints_host(d.checkpoints_host);
    for (const auto& c : d.checkpoints) {
        pb::CheckpointEntry* e = out->add_checkpoints();
        e->set_key(c.key);
        e->set_position(c.pos);
        e->set_host(c.tier == sched::Tier::kHost);
    }
}

grpc::Status to_grpc(const absl::Status& s) {
    if (s.ok()) return grpc::Status::OK;
    return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), std::string(s.message()));
}

}  // namespace dg::worker
