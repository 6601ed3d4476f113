#include "services/front/generate_call.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "scheduler/sampling.h"
#include "services/front/front_state.h"

namespace dg::front {

using Clock = std::chrono::steady_clock;

namespace {

v1::FinishReason map_reason(worker::v1::FinishReason r) {
    switch (r) {
    case worker::v1::FINISH_REASON_STOP: return v1::FINISH_REASON_STOP;
    case worker::v1::FINISH_REASON_LENGTH: return v1::FINISH_REASON_LENGTH;
    case worker::v1::FINISH_REASON_CANCELLED:
    case worker::v1::FINISH_REASON_DEADLINE: return v1::FINISH_REASON_CANCELLED;
    default: return v1::FINISH_REASON_ERROR;
    }
}

const char* reason_name(v1::FinishReason r) {
    switch (r) {
    case v1::FINISH_REASON_STOP: return "stop";
    case v1::FINISH_REASON_LENGTH: return "length";
    case v1::FINISH_REASON_TOOL_CALLS: return "tool_calls";
    case v1::FINISH_REASON_CANCELLED: return "cancelled";
    default: return "error";
    }
}

double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

// One worker call of one leg. Owned by the GenerateCall (attempts_); while its RPC runs it holds the call
// alive (call_), and lets go in its OnDone. Its callbacks run on gRPC threads.
class GenerateCall::Attempt : public grpc::ClientReadReactor<worker::v1::GenerateEvent> {
public:
    Attempt(std::shared_ptr<GenerateCall> call, int leg, std::shared_ptr<WorkerHandle> worker)
        : call_(std::move(call)), leg_(leg), worker_(std::move(worker)) {}

    void OnReadDone(bool ok) override {
        if (!ok) return;  // the stream ended: OnDone follows
        FollowUps after;
        const EventAction act = call_->on_event(this, event_, &after);
        call_->run(this, after);
        call_->flush();
        if (act == EventAction::kRead) StartRead(&event_);
        else if (act == EventAction::kCancel) ctx_.TryCancel();
        // kStop: the worker sent its last event; the status follows.
    }
    void OnDone(const grpc::Status& s) override {
        std::shared_ptr<GenerateCall> call = std::move(call_);
        call->on_attempt_done(this, s);
        if (call->front_.options().test_attempt_ended) call->front_.options().test_attempt_ended();
        // `call` may be the last reference: the call, and this attempt with it, can be destroyed here (the
        // server may have stopped since on_attempt_done: the front waits for the call, generate_call.h).
    }

    std::shared_ptr<GenerateCall> call_;
    int leg_;
    std::shared_ptr<WorkerHandle> worker_;
    grpc::ClientContext ctx_;
    worker::v1::GenerateEvent event_;
    trace::Span span_;
};

std::shared_ptr<GenerateCall> GenerateCall::create(FrontState& front, grpc::CallbackServerContext* ctx, CallPlan plan) {
    std::shared_ptr<GenerateCall> c(new GenerateCall(front, ctx, std::move(plan)));
    c->weak_self_ = c;
    c->hold_until_done(c);
    return c;
}

GenerateCall::GenerateCall(FrontState& front, grpc::CallbackServerContext* ctx, CallPlan plan)
    : front_(front), inflight_count_(front.inflight), ctx_(ctx), plan_(std::move(plan)) {
    // The workers keep a live session's checkpoints first; the key is stable across front replicas.
    const uint64_t session_key =
        plan_.session_id.empty() ? 0 : salt_from_string(absl::StrCat(plan_.session_id, "/", plan_.cache_salt)) | 1;
    for (auto& lp : plan_.legs) {
        lp.request.set_session_key(session_key);
        legs_.push_back(Leg{.plan = std::move(lp)});
    }
    plan_.legs.clear();
    for (size_t i = 0; i < plan_.tracks.size(); ++i)
        tracks_.push_back(std::make_unique<OutputTrack>(int(i), plan_.tracks[i]));
    last_token_at_.resize(tracks_.size());
    sent_tokens_.resize(tracks_.size());
    migrated_.resize(tracks_.size());
    for (size_t i = 0; i < legs_.size(); ++i) legs_[i].origin_leg = int(i);
    front_.metrics().running.add(1);
    // The gen_ai span nests in the server span and parents the worker calls (GenAI semconv).
    gen_span_.trace_id = plan_.server_span.trace_id;
    gen_span_.span_id = trace::new_span_id();
    gen_span_.parent_span_id = plan_.server_span.span_id;
    gen_span_.name = plan_.operation + " " + plan_.model;
    gen_span_.kind = trace::SpanKind::kInternal;
    gen_span_.start_ns = trace::unix_nanos_now();
}

GenerateCall::~GenerateCall() {
    // The last shared_ptr is gone: the registry's weak_ptr no longer locks, so abort_calls cannot reach
    // this object even while it is still registered.
    if (front_.options().test_call_deleting) front_.options().test_call_deleting();
    if (registered_) front_.unregister_call(plan_.request_id, this);
    front_.metrics().running.add(-1);
    // inflight_count_ goes last, after the members: see generate_call.h.
}

void GenerateCall::run(Attempt* a, FollowUps& after) {
    for (Attempt* n : after.launch) launch(n);
    cancel(after.cancel);
    if (after.abort_continuation) abort_async(a->worker_, std::move(*after.abort_continuation), 2000, nullptr);
}

void GenerateCall::cancel(const std::vector<Attempt*>& attempts) {
    for (Attempt* a : attempts) a->ctx_.TryCancel();
}

void GenerateCall::start() {
    registered_ = front_.register_call(plan_.request_id, weak_self_);
    std::vector<Attempt*> to_launch, to_cancel;
    {
        std::lock_guard<std::mutex> l(mu_);
        const size_t first_batch = plan_.stagger ? 1 : legs_.size();
        for (size_t i = 0; i < first_batch && !finish_status_; ++i) {
            grpc::Status err;
            Attempt* a = make_attempt_locked(int(i), &err);
            if (!a) {
                fail_locked(err, &to_cancel);
                break;
            }
            to_launch.push_back(a);
        }
    }
    for (Attempt* a : to_launch) launch(a);
    cancel(to_cancel);
    flush();
}

GenerateCall::Attempt* GenerateCall::make_attempt_locked(int li, grpc::Status* err) {
    Leg& leg = legs_[li];
    auto workers = front_.pool().workers();
    std::vector<WorkerView> views;
    for (size_t i = 0; i < workers.size(); ++i) views.push_back(workers[i]->view(int(i)));
    // Siblings of a fan-out go where leg 0 went (its prefix checkpoint is there), unless that worker failed.
    int sticky = -1;
    std::string sticky_addr;
    // A migrated leg sticks to nothing: where it runs matters less than that it runs now.
    if (!leg.migrated && li > 0 && legs_[0].worker) sticky_addr = legs_[0].worker->address();
    else if (!leg.migrated && !plan_.session_id.empty()) sticky_addr = front_.sessions().get(plan_.session_id);
    for (size_t i = 0; i < workers.size(); ++i)
        if (workers[i]->address() == sticky_addr) sticky = int(i);
    std::vector<int> exclude;
    for (size_t i = 0; i < workers.size(); ++i)
        if (std::find(leg.tried.begin(), leg.tried.end(), workers[i]->address()) != leg.tried.end())
            exclude.push_back(int(i));
    const auto& prompt = leg.plan.request.prompt_token_ids();
    RouteChoice c = choose_worker(views, std::span<const int32_t>(prompt.data(), size_t(prompt.size())),
                                  plan_.cache_salt, sticky, exclude, front_.options().route);
    if (c.id < 0) {
        int healthy = 0;
        for (auto& v : views) healthy += v.healthy && !v.draining;
        *err = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            leg.tried.empty()
                                ? absl::StrCat("no healthy worker (", healthy, " of ", workers.size(),
                                               " up): check that the workers are running and reachable from the front")
                                : absl::StrCat("the request failed on ", leg.tried.size(),
                                               " worker(s) and no other healthy worker is left; retry later"));
        return nullptr;
    }
    auto w = workers[size_t(c.id)];
    leg.tried.push_back(w->address());
    leg.worker = w;
    leg.started = true;
    if (li == 0 && !plan_.session_id.empty()) front_.sessions().put(plan_.session_id, w->address());
    front_.metrics().routed(w->address(), c.reason);
    if (leg.tried.size() > 1) front_.metrics().retries.inc();

    auto a = std::make_unique<Attempt>(weak_self_.lock(), li, w);  // someone holds the call: we run in it
    Attempt* raw = a.get();
    attempts_.push_back(std::move(a));
    leg.current = raw;
    w->inflight.fetch_add(1);

    // Worker call span (CLIENT); its id is the parent the worker's spans hang under.
    trace::Span& s = raw->span_;
    s.trace_id = plan_.server_span.trace_id;
    s.span_id = trace::new_span_id();
    s.parent_span_id = gen_span_.span_id;
    s.name = "deltagate.worker.v1.Worker/Generate";
    s.kind = trace::SpanKind::kClient;
    s.start_ns = trace::unix_nanos_now();
    s.set("rpc.system", std::string("grpc"));
    s.set("rpc.service", std::string("deltagate.worker.v1.Worker"));
    s.set("rpc.method", std::string("Generate"));
    s.set("server.address", w->address());
    s.set("deltagate.route.reason", std::string(c.reason));
    s.set("deltagate.route.cached_tokens", int64_t(c.cached_tokens));
    s.set("deltagate.attempt", int64_t(leg.tried.size()));
    s.set("deltagate.worker.request_id", leg.plan.request.request_id());

    // Deadline and trace context travel to the worker; cancellation is done by TryCancel (OnCancel).
    raw->ctx_.set_deadline(ctx_->deadline());
    const bool sampled = front_.tracer().enabled() && plan_.server_span.trace_id != trace::TraceId{} &&
                         (plan_.incoming ? plan_.incoming->sampled : true);
    if (front_.tracer().enabled()) {
        trace::TraceContext tc{.trace_id = s.trace_id, .span_id = s.span_id, .sampled = sampled};
        raw->ctx_.AddMetadata("traceparent", trace::format_traceparent(tc));
    } else if (!plan_.incoming_traceparent.empty()) {
        raw->ctx_.AddMetadata("traceparent", plan_.incoming_traceparent);
    }
    if (plan_.incoming && !plan_.incoming->tracestate.empty())
        raw->ctx_.AddMetadata("tracestate", plan_.incoming->tracestate);
    raw->ctx_.AddMetadata("x-deltagate-request-id", plan_.request_id);
    return raw;
}

void GenerateCall::launch(Attempt* a) {
    a->worker_->stub().async()->Generate(&a->ctx_, &legs_[size_t(a->leg_)].plan.request, a);
    a->StartRead(&a->event_);
    a->StartCall();
}

GenerateCall::EventAction GenerateCall::on_event(Attempt* a, const worker::v1::GenerateEvent& ev, FollowUps* after) {
    std::lock_guard<std::mutex> l(mu_);
    Leg& leg = legs_[size_t(a->leg_)];
    if (leg.current != a || finish_status_) return EventAction::kCancel;
    const auto now = Clock::now();
    if (ev.index() < 0 || ev.index() >= int(leg.plan.out_index.size())) {
        // The other legs are cancelled too (after unlocking): the call is over.
        fail_locked(grpc::Status(grpc::StatusCode::INTERNAL,
                                 absl::StrCat("worker ", a->worker_->address(), " sent continuation index ", ev.index(),
                                              " of a request with n = ", leg.plan.out_index.size())),
                    &after->cancel);
        return EventAction::kCancel;
    }
    const int out = leg.plan.out_index[size_t(ev.index())];
    OutputTrack& track = *tracks_[size_t(out)];
    bool stopped = false;  // a stop string ended this continuation here
    if (ev.token_id() >= 0 && !track.finished()) {
        v1::Delta d;
        stopped = track.push(ev.token_id(), &d);
        if (plan_.logprobs) {
            auto* lp = d.add_logprobs();
            lp->set_token_id(ev.token_id());
            lp->set_logprob(ev.logprob());
            if (ev.top_logprobs_size() > 0) {
                auto* list = d.add_top_logprobs();
                for (const auto& t : ev.top_logprobs()) {
                    auto* c = list->add_candidates();
                    c->set_token_id(t.token_id());
                    c->set_logprob(t.logprob());
                }
            }
        }
        leg.emitted = true;
        leg.last_token = ev.token_id();
        sent_tokens_[size_t(out)].push_back(ev.token_id());
        if (!first_token_) {
            first_token_ = now;
            front_.metrics().ttft.observe(std::chrono::duration<double>(now - plan_.start).count());
        } else if (last_token_at_[size_t(out)] != Clock::time_point{}) {
            front_.metrics().inter_token.observe(std::chrono::duration<double>(now - last_token_at_[size_t(out)]).count());
        }
        last_token_at_[size_t(out)] = now;
        last_token_ = now;
        front_.metrics().generation_tokens.inc();
        if (stopped) {
            v1::GenerateResponse fin;
            track.finish(v1::FINISH_REASON_STOP, -1, &d, fin.mutable_finished());
            enqueue_delta_locked(std::move(d));
            enqueue_locked(std::move(fin));
        } else {
            enqueue_delta_locked(std::move(d));
        }
    }
    if (ev.finish_reason() != worker::v1::FINISH_REASON_UNSPECIFIED && !track.finished()) {
        v1::Delta d;
        v1::GenerateResponse fin;
        track.finish(map_reason(ev.finish_reason()), leg.last_token, &d, fin.mutable_finished());
        if (!d.text().empty() || !d.reasoning_text().empty() || d.tool_calls_size() > 0) enqueue_delta_locked(std::move(d));
        enqueue_locked(std::move(fin));
    }
    if (ev.done()) {
        leg.has_usage = ev.has_usage();
        leg.usage = ev.usage();
    }
    // The first event of leg 0 means its prefill (and the prefix checkpoint) is done: start the siblings.
    if (plan_.stagger && a->leg_ == 0) {
        for (size_t i = 1; i < legs_.size() && !finish_status_; ++i) {
            if (legs_[i].started) continue;
            grpc::Status err;
            if (Attempt* s = make_attempt_locked(int(i), &err)) {
                after->launch.push_back(s);
            } else {
                fail_locked(err, &after->cancel);
                return EventAction::kCancel;
            }
        }
    }
    if (ev.done()) return EventAction::kStop;
    bool all_done = true;
    for (int idx : leg.plan.out_index) all_done &= tracks_[size_t(idx)]->finished();
    if (all_done) {
        // Stop strings ended every continuation of this leg: free the worker now.
        leg.closed_by_front = true;
        return EventAction::kCancel;
    }
    if (stopped) {
        // Only this continuation is done: free its slot and blocks on the worker while its siblings go on.
        // Its later events (if any race the abort) are ignored: the track is finished.
        worker::v1::AbortRequest req;
        auto* c = req.add_continuations();
        c->set_request_id(leg.plan.request.request_id());
        c->set_index(ev.index());
        after->abort_continuation = std::move(req);
    }
    return EventAction::kRead;
}

void GenerateCall::on_attempt_done(Attempt* a, const grpc::Status& s) {
    std::vector<Attempt*> to_launch, to_cancel;
    {
        std::lock_guard<std::mutex> l(mu_);
        grpc::Status err_migrate;
        a->worker_->inflight.fetch_sub(1);
        a->span_.end_ns = trace::unix_nanos_now();
        a->span_.set("rpc.grpc.status_code", int64_t(s.error_code()));
        if (!s.ok()) {
            a->span_.status = trace::SpanStatus::kError;
            a->span_.status_message = s.error_message();
        }
        if (plan_.server_span.trace_id != trace::TraceId{}) front_.tracer().submit(a->span_);
        Leg& leg = legs_[size_t(a->leg_)];
        if (leg.current == a) {
            leg.current = nullptr;
            const bool clean = s.ok() || leg.closed_by_front;
            if (finish_status_) {
                // The call is already ending (client gone, another leg failed): nothing to do.
            } else if (clean) {
                leg.complete = true;
                // A worker that ended without finishing a continuation: report it as an error ending.
                for (int idx : leg.plan.out_index) {
                    OutputTrack& t = *tracks_[size_t(idx)];
                    if (t.finished()) continue;
                    v1::Delta d;
                    v1::GenerateResponse fin;
                    t.finish(v1::FINISH_REASON_ERROR, -1, &d, fin.mutable_finished());
                    enqueue_delta_locked(std::move(d));
                    enqueue_locked(std::move(fin));
                }
                maybe_complete_locked();
            } else {
                const auto code = s.error_code();
                if (code == grpc::StatusCode::UNAVAILABLE) a->worker_->mark_failed();
                if (code == grpc::StatusCode::RESOURCE_EXHAUSTED) {
                    if (const int64_t ms = retry_after_ms_from(a->ctx_.GetServerTrailingMetadata()); ms > 0)
                        retry_after_ms_ = std::min(retry_after_ms_.value_or(ms), ms);
                }
                const bool retryable = !leg.emitted && int(leg.tried.size()) < front_.options().max_attempts &&
                                       (code == grpc::StatusCode::UNAVAILABLE ||
                                        code == grpc::StatusCode::RESOURCE_EXHAUSTED || code == grpc::StatusCode::UNKNOWN ||
                                        code == grpc::StatusCode::INTERNAL);
                if (retryable) {
                    grpc::Status err;
                    if (Attempt* next = make_attempt_locked(a->leg_, &err)) {
                        to_launch.push_back(next);
                    } else if (code == grpc::StatusCode::RESOURCE_EXHAUSTED) {
                        fail_locked(grpc::Status(code, absl::StrCat("every worker is busy (", s.error_message(),
                                                                    "); retry later")),
                                    &to_cancel);
                    } else {
                        fail_locked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                 absl::StrCat(err.error_message(), " (last error from ",
                                                              a->worker_->address(), ": ", s.error_message(), ")")),
                                    &to_cancel);
                    }
                } else if (code == grpc::StatusCode::CANCELLED) {
                    // The worker ended it on purpose: an Abort (maybe sent to another front replica).
                    fail_locked(grpc::Status(code, absl::StrCat("the request was aborted (worker ", a->worker_->address(),
                                                                ": ", s.error_message(), ")")),
                                &to_cancel);
                } else if (leg.emitted && code != grpc::StatusCode::DEADLINE_EXCEEDED &&
                           migrate_locked(a->leg_, s, a->worker_->address(), &to_launch, &err_migrate)) {
                    // Each unfinished continuation goes on elsewhere; this leg is done (and maybe the call:
                    // when the lost worker had sent every token, only its finish was missing).
                    leg.complete = true;
                    maybe_complete_locked();
                } else if (leg.emitted) {
                    front_.metrics().midstream_failures.inc();
                    fail_locked(code == grpc::StatusCode::DEADLINE_EXCEEDED
                                    ? grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                                   "the request's deadline passed during generation")
                                    : grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                   absl::StrCat("worker ", a->worker_->address(),
                                                                " failed after the stream had started (",
                                                                s.error_message(), "); ", err_migrate.error_message(),
                                                                "; the output is incomplete: retry the request")),
                                &to_cancel);
                } else {
                    // The worker's own verdict (INVALID_ARGUMENT, DEADLINE_EXCEEDED, ...) passes through.
                    fail_locked(grpc::Status(code, absl::StrCat("worker ", a->worker_->address(), ": ", s.error_message())),
                                &to_cancel);
                }
            }
        }
    }
    cancel(to_cancel);
    for (Attempt* n : to_launch) launch(n);
    flush();
}

bool GenerateCall::migrate_locked(int li, const grpc::Status& why, const std::string& from,
                                  std::vector<Attempt*>* to_launch, grpc::Status* err) {
    if (front_.options().max_migrations <= 0) {
        *err = grpc::Status(grpc::StatusCode::UNAVAILABLE, "mid-stream migration is off (--max-migrations 0)");
        return false;
    }
    const Leg& failed = legs_[size_t(li)];
    std::vector<std::pair<int, int>> moves;  // (worker continuation index, public index) still running
    for (size_t j = 0; j < failed.plan.out_index.size(); ++j)
        if (!tracks_[size_t(failed.plan.out_index[j])]->finished()) moves.emplace_back(int(j), failed.plan.out_index[j]);
    for (auto [j, out] : moves)
        if (migrated_[size_t(out)] >= front_.options().max_migrations) {
            *err = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                absl::StrCat("continuation ", out, " already migrated ", migrated_[size_t(out)],
                                             " times (--max-migrations ", front_.options().max_migrations, ")"));
            return false;
        }
    // `failed` stays valid while legs are appended: legs_ is a deque.
    const int origin = failed.origin_leg;  // an original leg is its own origin
    for (auto [j, out] : moves) {
        const int origin_index = failed.migrated ? failed.origin_index : j;
        const worker::v1::GenerateRequest& base = legs_[size_t(origin)].plan.request;
        const std::vector<int32_t>& sent = sent_tokens_[size_t(out)];
        OutputTrack& track = *tracks_[size_t(out)];
        if (base.max_tokens() > 0 && int(sent.size()) >= base.max_tokens()) {
            // Every token was sent; only the finish was lost with the worker.
            v1::Delta d;
            v1::GenerateResponse fin;
            track.finish(v1::FINISH_REASON_LENGTH, sent.back(), &d, fin.mutable_finished());
            enqueue_delta_locked(std::move(d));
            enqueue_locked(std::move(fin));
            continue;
        }
        Leg nl;
        nl.migrated = true;
        nl.origin_leg = origin;
        nl.origin_index = origin_index;
        // Not back to the worker that just failed. Earlier ones may serve again: a drained worker restarted
        // at its address is healthy, and a dead one is out of the routing until it answers again.
        nl.tried = {from};
        nl.plan.out_index = {out};
        worker::v1::GenerateRequest& r = nl.plan.request;
        r = base;
        r.set_request_id(absl::StrCat(base.request_id(), "-m", migrations_ + 1));
        for (int32_t t : sent) r.add_prompt_token_ids(t);
        r.set_resumed_tokens(base.resumed_tokens() + int32_t(sent.size()));
        r.set_n(1);
        r.mutable_sampling()->set_seed(sched::child_seed(base.sampling().seed(), origin_index));
        if (base.max_tokens() > 0) r.set_max_tokens(base.max_tokens() - int32_t(sent.size()));
        const int32_t resumed = r.resumed_tokens();  // `r` is moved from below
        legs_.push_back(std::move(nl));
        ++migrations_;
        ++migrated_[size_t(out)];
        const int nli = int(legs_.size()) - 1;
        Attempt* next = make_attempt_locked(nli, err);
        if (!next) {
            legs_.back().complete = true;  // never ran; the call fails below
            return false;
        }
        front_.metrics().migrations.inc();
        const uint64_t now = trace::unix_nanos_now();
        trace::SpanEvent ev{.time_ns = now, .name = "deltagate.migration"};
        ev.attributes.emplace_back("deltagate.migration.from", from);
        ev.attributes.emplace_back("deltagate.migration.to", next->worker_->address());
        ev.attributes.emplace_back("deltagate.migration.reason", why.error_message());
        ev.attributes.emplace_back("deltagate.migration.index", int64_t(out));
        ev.attributes.emplace_back("deltagate.migration.resumed_tokens", int64_t(resumed));
        gen_span_.events.push_back(std::move(ev));
        next->span_.set("deltagate.migrated_from", from);
        to_launch->push_back(next);
    }
    return true;
}

void GenerateCall::maybe_complete_locked() {
    for (const Leg& leg : legs_)
        if (!leg.complete) return;
    v1::GenerateResponse msg;
    v1::Final* f = msg.mutable_final();
    f->set_request_id(plan_.request_id);
    f->set_model(plan_.model);
    if (legs_[0].worker) f->set_worker(legs_[0].worker->address());
    v1::Usage* u = f->mutable_usage();
    double queue_ms = 0, prefill_ms = 0;
    for (const Leg& leg : legs_) {
        if (leg.migrated) continue;  // its prompt is the original's plus tokens already counted as output
        const int32_t prompt = leg.has_usage && leg.usage.prompt_tokens() > 0 ? leg.usage.prompt_tokens()
                                                                             : leg.plan.request.prompt_token_ids_size();
        u->set_prompt_tokens(u->prompt_tokens() + prompt);
        u->set_cached_tokens_device(u->cached_tokens_device() + leg.usage.cached_tokens_device());
        u->set_cached_tokens_host(u->cached_tokens_host() + leg.usage.cached_tokens_host());
        queue_ms = std::max(queue_ms, leg.usage.queue_ms());
        prefill_ms = std::max(prefill_ms, leg.usage.prefill_ms());
    }
    for (const auto& t : tracks_) {
        u->set_completion_tokens(u->completion_tokens() + t->completion_tokens());
        u->set_reasoning_tokens(u->reasoning_tokens() + t->reasoning_tokens());
    }
    const auto now = Clock::now();
    v1::Timings* t = f->mutable_timings();
    t->set_queue_ms(queue_ms);
    t->set_prefill_ms(prefill_ms);
    if (first_token_) {
        t->set_ttft_ms(ms_between(plan_.start, *first_token_));
        t->set_decode_ms(ms_between(*first_token_, *last_token_));
    }
    t->set_total_ms(ms_between(plan_.start, now));
    front_.metrics().prompt_tokens.inc(u->prompt_tokens());
    front_.metrics().cached_device.inc(u->cached_tokens_device());
    front_.metrics().cached_host.inc(u->cached_tokens_host());
    front_.metrics().e2e.observe(std::chrono::duration<double>(now - plan_.start).count());

    trace::Span& g = gen_span_;
    g.set("gen_ai.usage.input_tokens", int64_t(u->prompt_tokens()));
    g.set("gen_ai.usage.output_tokens", int64_t(u->completion_tokens()));
    g.set("gen_ai.usage.cache_read.input_tokens", int64_t(u->cached_tokens_device() + u->cached_tokens_host()));
    g.set("gen_ai.usage.reasoning.output_tokens", int64_t(u->reasoning_tokens()));
    if (first_token_) g.set("gen_ai.response.time_to_first_chunk", t->ttft_ms() / 1000.0);
    g.set("gen_ai.response.id", plan_.request_id);
    enqueue_locked(std::move(msg));
    finish_status_ = grpc::Status::OK;
    end(grpc::Status::OK);
}

void GenerateCall::enqueue_locked(v1::GenerateResponse msg) { queue(std::move(msg)); }

void GenerateCall::enqueue_delta_locked(v1::Delta d) {
    if (d.token_ids_size() == 0 && d.text().empty() && d.reasoning_text().empty() && d.tool_calls_size() == 0) return;
    // Merge into a waiting delta of the same continuation: fewer frames when the client reads slowly.
    edit_queue([&](std::deque<v1::GenerateResponse>& waiting) {
        if (!waiting.empty() && waiting.back().has_delta() && waiting.back().delta().index() == d.index()) {
            v1::Delta* m = waiting.back().mutable_delta();
            m->mutable_token_ids()->MergeFrom(d.token_ids());
            m->mutable_text()->append(d.text());
            m->mutable_reasoning_text()->append(d.reasoning_text());
            m->mutable_logprobs()->MergeFrom(d.logprobs());
            m->mutable_top_logprobs()->MergeFrom(d.top_logprobs());
            m->mutable_tool_calls()->MergeFrom(d.tool_calls());
            return;
        }
        v1::GenerateResponse msg;
        *msg.mutable_delta() = std::move(d);
        waiting.push_back(std::move(msg));
    });
}

void GenerateCall::fail_locked(grpc::Status s, std::vector<Attempt*>* to_cancel) {
    if (finish_status_) return;
    finish_status_ = s;
    if (s.ok()) end(std::move(s));
    else end_now(std::move(s));  // an error ends the stream; undelivered deltas would only mislead
    for (Leg& leg : legs_)
        if (leg.current) to_cancel->push_back(leg.current);
}

void GenerateCall::abort(const std::string& why) {
    std::vector<Attempt*> to_cancel;
    {
        std::lock_guard<std::mutex> l(mu_);
        fail_locked(grpc::Status(grpc::StatusCode::CANCELLED, why), &to_cancel);
    }
    cancel(to_cancel);
    flush();
}

// The client cancelled, its deadline passed, or a write failed: the worker calls are cancelled too. The
// writer flushes (Finish) after this returns.
void GenerateCall::on_broken(Broken why) {
    std::vector<Attempt*> to_cancel;
    {
        std::lock_guard<std::mutex> l(mu_);
        const bool expired = ctx_->deadline() <= std::chrono::system_clock::now();
        grpc::Status st = why == Broken::kWriteFailed ? grpc::Status(grpc::StatusCode::CANCELLED, "the client went away")
                          : expired ? grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "the request's deadline passed")
                                    : grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
        fail_locked(std::move(st), &to_cancel);
    }
    cancel(to_cancel);
}

void GenerateCall::on_finishing(const grpc::Status& s) {
    front_.metrics().request_done(plan_.rpc, int(s.error_code()), plan_.protocol);
    // Just before Finish, once, nothing else touching ctx_: the overload hint the workers gave.
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        std::optional<int64_t> hint;
        {
            std::lock_guard<std::mutex> l(mu_);
            hint = retry_after_ms_;
        }
        if (hint) ctx_->AddTrailingMetadata(kRetryAfterMsKey, std::to_string(*hint));
    }
    if (s.ok()) front_.stream_ended(ms_between(plan_.start, Clock::now()));
    if (plan_.server_span.trace_id == trace::TraceId{}) return;
    const uint64_t now = trace::unix_nanos_now();
    std::vector<std::string> reasons;
    // Reading tracks without mu_ is safe here: Finish is decided once and no event is processed after.
    gen_span_.end_ns = now;
    for (const auto& t : tracks_) reasons.push_back(t->finished() ? reason_name(t->reason()) : "incomplete");
    gen_span_.set("gen_ai.response.finish_reasons", reasons);
    plan_.server_span.end_ns = now;
    plan_.server_span.set("rpc.grpc.status_code", int64_t(s.error_code()));
    plan_.server_span.set("rpc.status_code", std::string(status_code_name(int(s.error_code()))));
    if (!s.ok()) {
        plan_.server_span.status = trace::SpanStatus::kError;
        plan_.server_span.status_message = s.error_message();
        plan_.server_span.set("error.type", std::string(status_code_name(int(s.error_code()))));
        gen_span_.status = trace::SpanStatus::kError;
        gen_span_.status_message = s.error_message();
    }
    for (const auto& [k, v] : plan_.server_span.attributes)
        if (k.rfind("gen_ai.", 0) == 0) gen_span_.attributes.emplace_back(k, v);
    front_.tracer().submit(gen_span_);
    front_.tracer().submit(plan_.server_span);
}

}  // namespace dg::front
