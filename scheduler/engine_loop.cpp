#include "scheduler/engine_loop.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/status.h"
#include "scheduler/batch_policy.h"
#include "scheduler/prefix_index.h"

namespace dg::sched {
namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}
int32_t ceil_div(int64_t a, int64_t b) { return int32_t((a + b - 1) / b); }

}  // namespace

absl::StatusOr<std::unique_ptr<EngineLoop>> EngineLoop::create(std::unique_ptr<ModelWeights> weights,
                                                               BackendKind backend, const CacheOptions& cache,
                                                               const SchedulerOptions& opt) {
    if (opt.max_running < 1 || opt.spare_slots < 0 || opt.token_budget < 1 || opt.checkpoint_every < 0 ||
        opt.host_cache_bytes < 0 || opt.max_seq_len < 0 || opt.max_n < 1 || opt.session_ttl_ms < 0)
        return absl::InvalidArgumentError(
            "scheduler: max_running, token_budget and max_n must be >= 1; spare_slots, checkpoint_every, "
            "host_cache_bytes, max_seq_len and session_ttl_ms >= 0");
    if (cache.block_tokens < 1 || cache.n_blocks < 1)
        return absl::InvalidArgumentError("scheduler: block_tokens and n_blocks must be >= 1");
    std::unique_ptr<EngineLoop> L(new EngineLoop());
    L->opt_ = opt;
    const int64_t ctx = weights->config.max_context;
    L->max_seq_len_ = int32_t(opt.max_seq_len > 0 ? std::min<int64_t>(opt.max_seq_len, ctx) : std::min<int64_t>(ctx, INT32_MAX));
    L->eos_ = weights->config.eos_ids;
    CacheLayout layout{cache.kv_type, cache.block_tokens, cache.n_blocks, opt.max_running + opt.spare_slots};
    DG_ASSIGN_OR_RETURN(std::unique_ptr<Backend> be, make_backend(backend));
    DG_ASSIGN_OR_RETURN(L->model_, Model::create(std::move(weights), std::move(be), layout));
    L->pool_ = std::make_unique<KvBlockPool>(cache.n_blocks, cache.block_tokens);
    L->slots_ = std::make_unique<StateSlotPool>(opt.max_running, opt.spare_slots);
    StateCacheOptions co;
    co.host_budget_bytes = opt.host_cache_bytes;
    co.policy = opt.checkpoint_policy;
    co.spill_kv = opt.spill_kv_to_host;
    co.session_ttl = std::chrono::milliseconds(opt.session_ttl_ms);
    L->cache_ = std::make_unique<StateCache>(&L->model_->backend(), L->slots_.get(), L->pool_.get(), co);
    // A cached block the pool reuses goes to host RAM first (the cache is destroyed before the pool).
    L->pool_->set_evict_hook([cache = L->cache_.get()](int32_t b) { cache->spill_block(b); });
    return L;
}

// --- requests in and out

absl::StatusOr<RequestId> EngineLoop::submit(Request r) {
    const int64_t V = model_->config().vocab_size;
    const int32_t n = int32_t(r.prompt.size());
    if (r.prompt.empty()) return absl::InvalidArgumentError("request: the prompt is empty");
    for (int32_t i = 0; i < n; ++i)
        if (r.prompt[i] < 0 || r.prompt[i] >= V)
            return absl::InvalidArgumentError(absl::StrCat("request: token id ", r.prompt[i], " at position ", i,
                                                           " is outside the vocabulary [0, ", V, ")"));
    if (n > max_seq_len_)
        return absl::InvalidArgumentError(absl::StrCat("request: the prompt has ", n, " tokens, more than the context of ",
                                                       max_seq_len_, " tokens"));
    if (r.max_tokens < 1) return absl::InvalidArgumentError(absl::StrCat("request: max_tokens must be >= 1, got ", r.max_tokens));
    if (r.n < 1 || r.n > opt_.max_n)
        return absl::InvalidArgumentError(absl::StrCat("request: n must be in [1, ", opt_.max_n, "], got ", r.n));
    DG_RETURN_IF_ERROR(validate_sampling(r.sampling));
    if (r.top_logprobs < 0 || r.top_logprobs > kMaxTopLogprobs)
        return absl::InvalidArgumentError(
            absl::StrCat("request: top_logprobs must be in [0, ", kMaxTopLogprobs, "], got ", r.top_logprobs));
    if (r.resumed_tokens < 0 || r.resumed_tokens >= n)
        return absl::InvalidArgumentError(absl::StrCat("request: resumed_tokens must be in [0, ", n - 1,
                                                       "] (the prompt has ", n, " tokens), got ", r.resumed_tokens));
    if (r.resumed_tokens > 0 && r.n != 1)
        return absl::InvalidArgumentError(absl::StrCat("request: a resumed continuation needs n = 1, got n = ", r.n));
    for (int32_t t : r.stop_tokens)
        if (t < 0 || t >= V) return absl::InvalidArgumentError(absl::StrCat("request: stop token ", t, " is outside the vocabulary"));
    for (int32_t p : r.checkpoint_at)
        if (p < 1 || p > n)
            return absl::InvalidArgumentError(absl::StrCat("request: checkpoint hint ", p, " is outside the prompt [1, ", n, "]"));
    // The prompt plus one generated token must fit the whole pool, or it could never run.
    const int32_t need = ceil_div(int64_t(n) + 1, pool_->block_tokens());
    if (need > pool_->n_blocks())
        return absl::ResourceExhaustedError(absl::StrCat("request: a prompt of ", n, " tokens needs ", need,
                                                         " KV blocks; this worker has ", pool_->n_blocks(),
                                                         " in all, so it can never run here"));

    const RequestId id = next_req_++;
    ReqState& rs = reqs_[id];
    rs.req = std::move(r);
    rs.submitted = Clock::now();
    rs.live = 1;
    rs.usage.prompt_tokens = n;
    cache_->touch_session(rs.req.session_id);

    const SeqId sid = next_seq_++;
    Seq& s = seqs_[sid];
    s.id = sid;
    s.req = id;
    s.tokens = rs.req.prompt;
    s.prompt_len = n;
    s.gen_start = n - rs.req.resumed_tokens;
    s.sampler = Sampler(rs.req.sampling);
    s.fork_pending = rs.req.n > 1;
    s.priority = rs.req.priority;
    s.arrival = next_arrival_++;
    rs.seqs.push_back(sid);
    waiting_.push_back(sid);
    return id;
}

absl::Status EngineLoop::cancel(RequestId id) {
    if (!reqs_.contains(id)) return absl::NotFoundError(absl::StrCat("request ", id, " is not known (finished or never submitted)"));
    end_request(id, FinishReason::kCancelled, absl::CancelledError(absl::StrCat("request ", id, " was cancelled")));
    return absl::OkStatus();
}

absl::Status EngineLoop::cancel_continuation(RequestId id, int32_t index) {
    auto it = reqs_.find(id);
    if (it == reqs_.end()) return absl::NotFoundError(absl::StrCat("request ", id, " is not known (finished or never submitted)"));
    const ReqState& r = it->second;
    if (index < 0 || index >= r.req.n)
        return absl::InvalidArgumentError(absl::StrCat("continuation ", index, " is out of range: request ", id, " has n = ", r.req.n));
    for (SeqId sid : r.seqs) {
        auto s = seqs_.find(sid);
        if (s == seqs_.end() || s->second.index != index) continue;
        if (index == 0 && s->second.fork_pending)
            return absl::FailedPreconditionError(absl::StrCat("request ", id, " has not forked yet: cancel the whole request"));
        finish(sid, FinishReason::kCancelled,
               absl::CancelledError(absl::StrCat("continuation ", index, " of request ", id, " was cancelled")));
        return absl::OkStatus();
    }
    if (index > 0 && r.seqs.size() == 1)
        return absl::FailedPreconditionError(absl::StrCat("request ", id, " has not forked yet: cancel the whole request"));
    return absl::NotFoundError(absl::StrCat("continuation ", index, " of request ", id, " already ended"));
}

absl::Status EngineLoop::preempt(RequestId id) {
    auto it = reqs_.find(id);
    if (it == reqs_.end()) return absl::NotFoundError(absl::StrCat("request ", id, " is not known"));
    for (SeqId sid : it->second.seqs)
        if (auto s = seqs_.find(sid); s != seqs_.end() && s->second.running) preempt_seq(sid, nullptr, nullptr);
    return absl::OkStatus();
}

void EngineLoop::emit(ReqState& r, Event e) {
    if (r.req.on_event) r.req.on_event(e);
}

void EngineLoop::end_request(RequestId id, FinishReason why, const absl::Status& st) {
    std::vector<SeqId> ids = reqs_.at(id).seqs;
    for (SeqId sid : ids)
        if (seqs_.contains(sid)) finish(sid, why, st);
}

void EngineLoop::finish(SeqId id, FinishReason why, const absl::Status& st, const Event* with_token) {
    Seq& s = seqs_.at(id);
    const RequestId rid = s.req;
    ReqState& r = reqs_.at(rid);
    if (s.running) {
        // End of a generation: the state after everything but the last sampled token is what the next
        // turn of a conversation resumes from.
        if (why == FinishReason::kStop || why == FinishReason::kLength) checkpoint(s);
        release(s);
    } else {
        std::erase(waiting_, id);
        set_awaited(s, 0);
    }
    Event e = with_token ? *with_token : Event{};
    e.id = rid;
    e.index = s.index;
    e.finish = why;
    if (why == FinishReason::kError || why == FinishReason::kCancelled || why == FinishReason::kDeadline) e.status = st;
    seqs_.erase(id);
    if (--r.live > 0) {
        emit(r, e);
        return;
    }
    const Clock::time_point now = Clock::now();
    if (r.has_first_token) r.usage.decode_ms = ms_between(r.first_token, now);
    e.request_done = true;
    e.usage = r.usage;
    emit(r, e);
    cache_->touch_session(r.req.session_id);  // the session's next turn is due from now
    reqs_.erase(rid);
}

void EngineLoop::expire_deadlines() {
    const Clock::time_point now = Clock::now();
    std::vector<RequestId> late;
    for (const auto& [id, r] : reqs_)
        if (r.req.deadline && *r.req.deadline <= now) late.push_back(id);
    for (RequestId id : late)
        end_request(id, FinishReason::kDeadline, absl::DeadlineExceededError(absl::StrCat("request ", id, " passed its deadline")));
}

// --- admission

void EngineLoop::admit() {
    std::vector<SeqId> order = waiting_;
    std::sort(order.begin(), order.end(), [&](SeqId a, SeqId b) {
        const Seq &x = seqs_.at(a), &y = seqs_.at(b);
        return admission_before(x.priority, x.arrival, a, y.priority, y.arrival, b);
    });
    for (SeqId id : order) {
        const AdmitResult res = try_admit(id);
        if (res == AdmitResult::kBlocked) break;  // strict order: a big request is not starved by small ones
    }
}

EngineLoop::AdmitResult EngineLoop::try_admit(SeqId id) {
    Seq& s = seqs_.at(id);
    ReqState& r = reqs_.at(s.req);
    if (slots_->n_free(StateSlotPool::Kind::kSeq) == 0) return AdmitResult::kBlocked;
    const int32_t bt = pool_->block_tokens();
    const int32_t total = ceil_div(int64_t(s.tokens.size()), bt);
    PrefixMatch m;
    for (;;) {
        if (opt_.prefix_cache) m = find_prefix(s.tokens, int32_t(s.tokens.size()) - 1, r.req.cache_salt, *pool_, *cache_);
        int32_t matched_idle = 0;  // cached blocks that referencing takes out of the available count
        for (int32_t b : m.blocks) matched_idle += pool_->refs(b) == 0;
        const int32_t need = total - int32_t(m.blocks.size());
        // Headroom of one block per running sequence, so admitting does not force decodes to preempt.
        if (need + int32_t(running_.size()) <= pool_->n_available() - matched_idle) break;
        if (!running_.empty()) return AdmitResult::kBlocked;
        if (!cache_->release_one_tail()) {
            // Idle worker, nothing left to drop, still too big: it can never run (only a sequence that
            // grew to the whole pool gets here; submit() rejects prompts that cannot fit).
            finish(id, FinishReason::kLength);
            return AdmitResult::kDropped;
        }
    }

    const int32_t slot = *slots_->acquire(StateSlotPool::Kind::kSeq);
    for (int32_t b : m.blocks)
        if (b >= 0) pool_->ref(b);  // before any allocation below can evict them
    Tier tier = Tier::kDevice;
    const Clock::time_point restore_start = Clock::now();
    s.resumed_from = 0;
    if (m.pos > 0) {
        tier = cache_->restore(m.checkpoint_key, slot);
        s.resumed_from = m.checkpoint_key;
        // Hold the tail before allocating: an allocation can evict, and making host room for what it
        // evicts can drop this very checkpoint.
        int32_t device_tail = -1;
        std::vector<uint8_t> host_tail;
        if (m.pos % bt != 0) {
            device_tail = m.checkpoint->tail_block;
            if (device_tail >= 0) pool_->ref(device_tail);
            else host_tail = m.checkpoint->host_tail;
        }
        if (m.n_host_blocks > 0 || !host_tail.empty()) tier = Tier::kHost;
        upload_match(s, m, host_tail, device_tail);
    } else {
        s.blocks.clear();
        model_->backend().state_clear(slot);
    }
    s.slot = slot;
    s.pos = m.pos;
    s.hasher = PrefixHasher(r.req.cache_salt, bt);
    s.hasher.push(std::span<const int32_t>(s.tokens.data(), m.pos));
    s.running = true;
    set_awaited(s, 0);
    std::erase(waiting_, id);
    running_.push_back(id);

    if (!s.admitted_before) {
        s.admitted_before = true;
        const int32_t cached = std::min(m.pos, s.prompt_len);
        (tier == Tier::kDevice ? r.usage.cached_tokens_device : r.usage.cached_tokens_host) += cached;
    }
    if (!r.has_admitted) {
        r.has_admitted = true;
        r.admitted = restore_start;
        r.usage.admitted = true;
        r.usage.queue_ms = ms_between(r.submitted, r.admitted);
        if (m.pos > 0) r.usage.restore_ms = ms_between(restore_start, Clock::now());
    }
    return AdmitResult::kAdmitted;
}

// --- planning

std::vector<EngineLoop::Work> EngineLoop::plan() {
    std::vector<SeqId> order = running_;
    std::sort(order.begin(), order.end(), [&](SeqId a, SeqId b) {
        const Seq &x = seqs_.at(a), &y = seqs_.at(b);
        const bool dx = x.tokens.size() - x.pos == 1, dy = y.tokens.size() - y.pos == 1;
        if (dx != dy) return dx;  // decodes first: one token each keeps every stream moving
        return admission_before(x.priority, x.arrival, a, y.priority, y.arrival, b);
    });
    std::vector<Work> work;
    int32_t budget = opt_.token_budget;
    for (SeqId id : order) {
        auto it = seqs_.find(id);
        if (it == seqs_.end() || !it->second.running) continue;  // preempted or ended while planning
        Seq& s = it->second;
        int32_t len = std::min<int32_t>(int32_t(s.tokens.size()) - s.pos, budget);
        if (len <= 0) continue;
        len = std::min(len, next_cut(s) - s.pos);
        if (!ensure_blocks(id, s.pos + len, &work, &budget)) continue;
        work.push_back({id, len});
        budget -= len;
    }
    return work;
}

int32_t EngineLoop::next_cut(const Seq& s) const {
    const ReqState& r = reqs_.at(s.req);
    return next_chunk_end(s.pos, int32_t(s.tokens.size()), s.prompt_len, opt_.checkpoint_every, r.req.checkpoint_at);
}

bool EngineLoop::ensure_blocks(SeqId id, int32_t upto, std::vector<Work>* work, int32_t* budget) {
    Seq& s = seqs_.at(id);
    const int32_t bt = pool_->block_tokens();
    while (int32_t(s.blocks.size()) * bt < upto) {
        if (std::optional<int32_t> b = alloc_block()) {
            s.blocks.push_back(*b);
            continue;
        }
        const SeqId victim = pick_victim();
        if (victim == id && running_.size() == 1) {
            // Alone and the pool is full: this sequence has outgrown the worker.
            finish(id, FinishReason::kLength);
            return false;
        }
        preempt_seq(victim, work, budget);
        if (victim == id) return false;
    }
    return true;
}

std::optional<int32_t> EngineLoop::alloc_block() {
    for (;;) {
        if (std::optional<int32_t> b = pool_->allocate()) return b;
        if (!cache_->release_one_tail()) return std::nullopt;
    }
}

void EngineLoop::upload_match(Seq& s, const PrefixMatch& m, const std::vector<uint8_t>& host_tail, int32_t device_tail) {
    Backend& be = model_->backend();
    const int32_t bt = pool_->block_tokens();
    // Take every host block out before allocating: room made for an evicted block must not drop one of them.
    std::vector<HostBlock> taken(m.blocks.size());
    for (size_t i = 0; i < m.blocks.size(); ++i)
        if (m.blocks[i] < 0) taken[i] = cache_->take_block(m.hashes[i]);
    s.blocks.clear();
    for (size_t i = 0; i < m.blocks.size(); ++i) {
        if (m.blocks[i] >= 0) {
            s.blocks.push_back(m.blocks[i]);
            continue;
        }
        const std::optional<int32_t> nb = pool_->allocate();
        DG_CHECK(nb.has_value(), "admission counted a block that is not there");
        be.kv_upload_block(*nb, taken[i].kv.data());
        // Published again under its hash: the block is full and equal to what computing it would give.
        pool_->publish(*nb, m.hashes[i], taken[i].parent, taken[i].tokens);
        cache_->note_block_restored();
        s.blocks.push_back(*nb);
    }
    if (m.pos % bt != 0) {
        // The checkpoint's tail block is shared with its owner (and other resumers): write a copy.
        const std::optional<int32_t> nb = pool_->allocate();
        DG_CHECK(nb.has_value(), "admission counted a block that is not there");
        if (device_tail >= 0) {
            be.kv_copy_block(*nb, device_tail);
            pool_->unref(device_tail);
        } else {
            be.kv_upload_block(*nb, host_tail.data());
        }
        s.blocks.push_back(*nb);
    }
}

EngineLoop::SeqId EngineLoop::pick_victim() const {
    SeqId best = running_.front();
    for (SeqId id : running_) {
        const Seq &x = seqs_.at(id), &y = seqs_.at(best);
        // The victim is the one admitted last in admission order: lowest priority, then youngest.
        if (admission_before(y.priority, y.arrival, best, x.priority, x.arrival, id)) best = id;
    }
    return best;
}

void EngineLoop::preempt_seq(SeqId id, std::vector<Work>* work, int32_t* budget) {
    Seq& s = seqs_.at(id);
    if (work) {
        for (size_t i = 0; i < work->size(); ++i)
            if ((*work)[i].id == id) {
                *budget += (*work)[i].len;
                work->erase(work->begin() + i);
                break;
            }
    }
    // Its state becomes a checkpoint at its position, so re-admission resumes there (if the KV blocks
    // it leaves cached are still there by then).
    checkpoint(s);
    set_awaited(s, s.last_checkpoint);
    release(s);
    waiting_.push_back(id);
    reqs_.at(s.req).usage.preemptions++;
}

// --- running a step

absl::StatusOr<bool> EngineLoop::step() {
    expire_deadlines();
    admit();
    std::vector<Work> work = plan();
    if (work.empty()) return false;

    StepBatch b;
    for (const Work& w : work) {
        const Seq& s = seqs_.at(w.id);
        SeqSlice sl;
        sl.begin = b.n_tokens();
        sl.len = w.len;
        sl.pos0 = s.pos;
        sl.state_slot = s.slot;
        sl.blocks = s.blocks.data();
        sl.n_blocks = int32_t(s.blocks.size());
        b.seqs.push_back(sl);
        b.tokens.insert(b.tokens.end(), s.tokens.begin() + s.pos, s.tokens.begin() + s.pos + w.len);
    }
    // What the step samples, on the backend where the logits are (only tokens and requested logprobs come
    // back): the last row of each sequence that reaches the end of its tokens, and for a pending fork each
    // child's first token from that same row (the child's own seed, the parent's history).
    std::vector<SampleRow> rows;
    std::vector<int32_t> first_row(work.size(), -1);  // per work item: its entry in `rows`
    for (size_t i = 0; i < work.size(); ++i) {
        const Seq& s = seqs_.at(work[i].id);
        if (s.pos + work[i].len != int32_t(s.tokens.size())) continue;
        const Request& q = reqs_.at(s.req).req;
        SampleRow row;
        row.logit_row = int32_t(i);
        row.params = s.sampler.params();
        row.position = int64_t(s.tokens.size()) - s.gen_start;
        row.tokens = s.tokens;
        row.prompt_len = s.gen_start;
        row.logprob = q.logprobs || q.top_logprobs > 0;
        row.top_logprobs = q.top_logprobs;
        first_row[i] = int32_t(rows.size());
        rows.push_back(row);
        if (s.fork_pending)
            for (int32_t c = 1; c < q.n; ++c) {
                SampleRow child = row;
                child.params = q.sampling;
                child.params.seed = child_seed(q.sampling.seed, c);
                rows.push_back(child);
            }
    }
    std::vector<SampledToken> drawn;
    if (absl::Status st = model_->forward_sample(b, rows, &drawn); !st.ok()) {
        for (const Work& w : work)
            if (auto it = seqs_.find(w.id); it != seqs_.end()) end_request(it->second.req, FinishReason::kError, st);
        return st;
    }
    for (size_t i = 0; i < work.size(); ++i) {
        auto it = seqs_.find(work[i].id);
        if (it == seqs_.end()) continue;
        Seq& s = it->second;
        advance(s, work[i].len);
        const ReqState& r = reqs_.at(s.req);
        if (is_checkpoint_position(s.pos, work[i].len, s.prompt_len, opt_.checkpoint_every, r.req.checkpoint_at))
            checkpoint(s, /*path_end=*/s.pos >= s.prompt_len);  // periodic and hinted positions are inside the prompt
        if (s.pos == int32_t(s.tokens.size()))
            on_token(work[i].id, std::span<const SampledToken>(drawn).subspan(size_t(first_row[i])));
    }
    return true;
}

absl::Status EngineLoop::run_until_idle() {
    while (!idle()) {
        DG_ASSIGN_OR_RETURN(bool ran, step());
        if (!ran && !idle())
            return absl::InternalError(absl::StrCat("scheduler: ", waiting_.size(), " waiting and nothing can run"));
    }
    return absl::OkStatus();
}

void EngineLoop::advance(Seq& s, int32_t len) {
    const int32_t bt = pool_->block_tokens();
    Usage& u = reqs_.at(s.req).usage;
    for (int32_t q = s.pos; q < s.pos + len; ++q) {
        const uint64_t parent = s.hasher.chain();
        s.hasher.push(s.tokens[q]);
        if (s.hasher.block_completed()) {
            const int32_t idx = (q + 1) / bt - 1;
            pool_->publish(s.blocks[idx], s.hasher.chain(), parent,
                           std::span<const int32_t>(s.tokens.data() + idx * bt, bt));
        }
        if (q < s.prompt_len) ++u.prefill_tokens;
        else if (q < s.computed_hwm) ++u.recomputed_tokens;
    }
    s.pos += len;
    s.computed_hwm = std::max(s.computed_hwm, s.pos);
}

void EngineLoop::set_awaited(Seq& s, uint64_t key) {
    if (s.awaited == key) return;
    if (s.awaited != 0) cache_->unawait(s.awaited);
    if (key != 0) cache_->await(key);
    s.awaited = key;
}

void EngineLoop::checkpoint(Seq& s, bool path_end) {
    if (s.pos == 0 || model_->config().n_gdn_layers() == 0) return;
    const int32_t bt = pool_->block_tokens();
    const int32_t tail = s.pos % bt != 0 ? s.blocks[s.pos / bt] : -1;
    const Request& q = reqs_.at(s.req).req;
    CheckpointMeta meta;
    meta.chain = s.hasher.chain();
    meta.session = q.session_id;
    meta.hinted = std::find(q.checkpoint_at.begin(), q.checkpoint_at.end(), s.pos) != q.checkpoint_at.end();
    meta.path_end = path_end;
    const uint64_t key = s.hasher.checkpoint_key();
    cache_->put(key, s.pos, s.slot, tail, meta);
    // This longer checkpoint supersedes the sequence's previous one and the one it resumed from: a later
    // request on this path resumes here (the valuation keeps the earlier ones only while room is left).
    for (uint64_t prev : {s.last_checkpoint, s.resumed_from})
        if (prev != 0 && prev != key) cache_->mark_extended(prev);
    s.last_checkpoint = key;
    s.resumed_from = 0;
}

bool EngineLoop::stop_token(const Seq& s, int32_t token) const {
    const Request& q = reqs_.at(s.req).req;
    if (!q.ignore_eos && std::find(eos_.begin(), eos_.end(), token) != eos_.end()) return true;
    return std::find(q.stop_tokens.begin(), q.stop_tokens.end(), token) != q.stop_tokens.end();
}

void EngineLoop::on_token(SeqId id, std::span<const SampledToken> drawn) {
    Seq& s = seqs_.at(id);
    ReqState& r = reqs_.at(s.req);
    if (!r.has_first_token) {
        r.has_first_token = true;
        r.usage.first_token = true;
        r.first_token = Clock::now();
        r.usage.prefill_ms = ms_between(r.admitted, r.first_token);
        r.usage.ttft_ms = ms_between(r.submitted, r.first_token);
    }
    if (s.fork_pending) {
        s.fork_pending = false;
        fork(id, drawn.subspan(1));
    }
    Seq& me = seqs_.at(id);  // fork() inserted into seqs_ (std::map: references stay valid, but be plain)
    const int32_t token = drawn[0].token;
    Event e;
    e.id = me.req;
    e.index = me.index;
    e.token = token;
    if (r.req.logprobs || r.req.top_logprobs > 0) {
        e.logprob = drawn[0].lp.logprob;
        e.top_logprobs = drawn[0].lp.top;
    }
    me.tokens.push_back(token);
    ++me.generated;
    ++r.usage.completion_tokens;
    FinishReason why = FinishReason::kNone;
    if (stop_token(me, token)) why = FinishReason::kStop;
    else if (me.generated >= r.req.max_tokens || int32_t(me.tokens.size()) > max_seq_len_) why = FinishReason::kLength;
    if (why != FinishReason::kNone) {
        finish(id, why, absl::OkStatus(), &e);
        return;
    }
    emit(r, e);
}

// `drawn[i - 1]`: child i's first token, drawn in the step with its own seed.
void EngineLoop::fork(SeqId parent_id, std::span<const SampledToken> drawn) {
    const int32_t bt = pool_->block_tokens();
    ReqState& r = reqs_.at(seqs_.at(parent_id).req);
    for (int32_t i = 1; i < r.req.n; ++i) {
        const Seq& p = seqs_.at(parent_id);
        const SeqId cid = next_seq_++;
        Seq& c = seqs_[cid];
        c.id = cid;
        c.req = p.req;
        c.index = i;
        c.tokens = p.tokens;
        c.prompt_len = p.prompt_len;
        c.gen_start = p.gen_start;
        SamplingParams sp = r.req.sampling;
        sp.seed = child_seed(sp.seed, i);
        c.sampler = Sampler(sp);
        c.priority = p.priority;
        c.arrival = p.arrival;
        c.admitted_before = true;  // its prompt is the parent's: counted once
        r.seqs.push_back(cid);
        ++r.live;

        // Direct fork: a device copy of the parent's slot, the parent's full blocks shared, its partial
        // last block copied. Without a free slot or block the child waits and resumes from the
        // prompt-end checkpoint the parent just took, through the ordinary admission path.
        std::optional<int32_t> slot = slots_->acquire(StateSlotPool::Kind::kSeq);
        std::optional<int32_t> tail;
        const bool need_tail = p.pos % bt != 0;
        if (slot && need_tail) tail = pool_->allocate();
        if (slot && (!need_tail || tail)) {
            Backend& be = model_->backend();
            for (int32_t j = 0; j < p.pos / bt; ++j) {
                pool_->ref(p.blocks[j]);
                c.blocks.push_back(p.blocks[j]);
            }
            if (need_tail) {
                be.kv_copy_block(*tail, p.blocks[p.pos / bt]);
                c.blocks.push_back(*tail);
            }
            be.state_copy(*slot, p.slot);
            c.slot = *slot;
            c.pos = p.pos;
            c.computed_hwm = p.pos;
            c.hasher = p.hasher;
            c.running = true;
            running_.push_back(cid);
        } else {
            if (slot) slots_->release(*slot);
            waiting_.push_back(cid);
            set_awaited(c, p.last_checkpoint);  // the prompt-end checkpoint the parent just took
        }
        on_token(cid, drawn.subspan(size_t(i - 1), 1));
    }
}

void EngineLoop::release(Seq& s) {
    for (int32_t b : s.blocks) pool_->unref(b);
    s.blocks.clear();
    if (s.slot >= 0) slots_->release(s.slot);
    s.slot = -1;
    s.running = false;
    std::erase(running_, s.id);
}

LoadDigest EngineLoop::digest() const {
    LoadDigest d;
    d.running = int32_t(running_.size());
    d.waiting = int32_t(waiting_.size());
    d.kv_blocks_total = pool_->n_blocks();
    d.kv_blocks_cached = pool_->n_cached();
    d.kv_blocks_referenced = pool_->n_blocks() - pool_->n_available();
    d.seq_slots_total = slots_->n_seq();
    d.seq_slots_used = slots_->n_seq() - slots_->n_free(StateSlotPool::Kind::kSeq);
    d.checkpoints_device = cache_->n_device();
    d.checkpoints_host = cache_->n_host();
    d.kv_blocks_host = cache_->n_host_blocks();
    d.host_bytes = cache_->host_bytes();
    d.host_budget = cache_->host_budget();
    for (const auto& [key, c] : cache_->entries()) d.checkpoints.push_back({key, c.pos, c.tier});
    std::sort(d.checkpoints.begin(), d.checkpoints.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
    return d;
}

}  // namespace dg::sched
