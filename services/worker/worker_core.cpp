#include "services/worker/worker_core.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "services/common/status_http.h"
#include "services/worker/convert.h"

namespace dg::worker {
namespace {

double seconds_between(sched::Clock::time_point a, sched::Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

}  // namespace

WorkerCore::WorkerCore(const WorkerOptions& opt, std::unique_ptr<sched::EngineLoop> loop, metrics::Registry& registry,
                       trace::Tracer* tracer)
    : opt_(opt), tracer_(tracer), max_seq_len_(loop->max_seq_len()), metrics_(registry, opt.vllm_metric_names) {
    engine_ = std::make_unique<EngineThread>(std::move(loop), [this](sched::EngineLoop& l) { after_work(l); });
    engine_->post([](sched::EngineLoop&) {});  // publish the first digest
}

WorkerCore::~WorkerCore() { engine_->stop(); }

void WorkerCore::reject(const std::shared_ptr<GenerateStream>& s, const grpc::Status& st, int64_t retry_after_ms) {
    metrics_.request_finished(int(st.error_code()));
    if (retry_after_ms > 0) s->finish(st, kRetryAfterMsKey, std::to_string(retry_after_ms));
    else s->finish(st);
}

grpc::ServerWriteReactor<pb::GenerateEvent>* WorkerCore::generate(const pb::GenerateRequest& req,
                                                                 std::optional<sched::Clock::time_point> deadline,
                                                                 const CallMeta& meta) {
    const uint64_t sid = next_stream_.fetch_add(1);
    // The cancel callback runs on a gRPC thread: it only posts.
    std::shared_ptr<GenerateStream> stream = GenerateStream::create(
        [this, sid] { engine_->post([this, sid](sched::EngineLoop& l) { cancel_stream(sid, l); }); }, meta.server_ctx);
    // Count first, then check: drain() sets the flag, then waits for the count, so no request slips in.
    n_live_.fetch_add(1);
    if (draining_.load()) {
        reject(stream, grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is draining: send the request to another worker"));
        request_ended();
        return stream.get();
    }
    Live live;
    live.start = sched::Clock::now();
    live.name = req.request_id();
    live.public_id = meta.public_request_id;
    live.trace = start_trace(req, meta);
    sched::Request r = to_request(req, max_seq_len_);
    r.deadline = deadline;
    engine_->post([this, sid, stream, r = std::move(r), live = std::move(live)](sched::EngineLoop& l) mutable {
        submit(sid, std::move(stream), std::move(r), std::move(live), l);
    });
    return stream.get();
}

std::optional<RequestTrace> WorkerCore::start_trace(const pb::GenerateRequest& req, const CallMeta& meta) const {
    if (!tracer_ || !tracer_->enabled()) return std::nullopt;
    const std::optional<trace::TraceContext> parent = trace::parse_traceparent(meta.traceparent);
    RequestTrace t;
    t.trace_id = parent ? parent->trace_id : trace::new_trace_id();
    if (!trace::should_sample(tracer_->config(), parent, t.trace_id)) return std::nullopt;
    if (parent) {
        t.parent = parent->span_id;
        t.tracestate = meta.tracestate;
    }
    t.start_ns = trace::unix_nanos_now();
    t.request_id = req.request_id();
    t.public_request_id = meta.public_request_id;
    t.n = std::max(1, req.n());
    t.max_tokens = req.max_tokens();
    return t;
}

void WorkerCore::end_trace(const Live& L, const sched::Usage& u, const grpc::Status& st) {
    if (!L.trace) return;
    RequestTrace t = *L.trace;
    t.worker_id = opt_.worker_id;
    for (trace::Span& s : request_spans(t, u, trace::unix_nanos_now(), int(st.error_code()), st.error_message()))
        tracer_->submit(std::move(s));
}

void WorkerCore::submit(uint64_t sid, std::shared_ptr<GenerateStream> stream, sched::Request r, Live live,
                        sched::EngineLoop& loop) {
    const std::string name = live.name;
    auto fail = [&](const grpc::Status& st, int64_t retry_after_ms = 0) {
        end_trace(live, sched::Usage{}, st);
        reject(stream, st, retry_after_ms);
        request_ended();
    };
    if (!name.empty() && by_name_.contains(name)) {
        fail(grpc::Status(grpc::StatusCode::ALREADY_EXISTS, absl::StrCat("request_id '", name, "' is already running here")));
        return;
    }
    const int64_t expected_wait =
        retry_after_.expected_wait_ms(loop.n_running(), opt_.sched.max_running, loop.n_waiting());
    const bool queue_full = opt_.max_queue > 0 && loop.n_waiting() >= opt_.max_queue;
    const bool wait_too_long = opt_.max_queue_wait_ms > 0 && expected_wait > opt_.max_queue_wait_ms;
    if (queue_full || wait_too_long) {
        const int64_t wait_ms = retry_after_.ms_until_room(loop.n_running());
        const grpc::Status st(
            grpc::StatusCode::RESOURCE_EXHAUSTED,
            queue_full ? absl::StrCat("worker queue is full (", loop.n_waiting(), " waiting, --max-queue ", opt_.max_queue,
                                      "): retry in ", wait_ms, " ms or on another worker")
                       : absl::StrCat("worker is at capacity (expected wait for a slot ", expected_wait,
                                      " ms > --max-queue-wait-ms ", opt_.max_queue_wait_ms, "): retry in ", wait_ms,
                                      " ms or on another worker"));
        fail(st, wait_ms);
        return;
    }
    r.on_event = [this, sid](const sched::Event& e) { on_event(sid, e); };
    absl::StatusOr<sched::RequestId> id = loop.submit(std::move(r));
    if (!id.ok()) {
        fail(to_grpc(id.status()));
        return;
    }
    live.rid = *id;
    live.stream = std::move(stream);
    if (!live.public_id.empty()) by_public_.emplace(live.public_id, sid);
    live_[sid] = std::move(live);
    if (!name.empty()) by_name_[name] = sid;
}

void WorkerCore::on_event(uint64_t sid, const sched::Event& e) {
    auto it = live_.find(sid);
    if (it == live_.end()) return;
    Live& L = it->second;
    const sched::Clock::time_point now = sched::Clock::now();
    if (e.token >= 0) {
        if (!L.first_token) {
            L.first_token = true;
            metrics_.first_token(seconds_between(L.start, now));
        }
        if (auto last = L.last_token.find(e.index); last != L.last_token.end())
            metrics_.inter_token(seconds_between(last->second, now));
        L.last_token[e.index] = now;
    }
    if (e.finish == sched::FinishReason::kError && L.error.ok()) L.error = to_grpc(e.status);
    // A handed-off request's cancel events say nothing true about its continuations (they are not over:
    // the front continues them elsewhere), so only the UNAVAILABLE status goes out.
    if (!(L.handed_off && e.finish == sched::FinishReason::kCancelled)) {
        pb::GenerateEvent ev;
        to_proto(e, &ev);
        L.stream->push(std::move(ev));
    }
    if (!e.request_done) return;

    grpc::Status st = L.error;
    if (st.ok()) {
        switch (e.finish) {
            case sched::FinishReason::kCancelled:
                if (L.handed_off) {
                    st = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                      "the worker drained before the request finished: continue it on another worker");
                    break;
                }
                if (!L.aborted && L.aborted_continuations.contains(e.index)) break;  // the rest ended normally
                st = grpc::Status(grpc::StatusCode::CANCELLED,
                                  L.aborted ? absl::StrCat("request '", L.name, "' was aborted") : "the call was cancelled");
                break;
            case sched::FinishReason::kDeadline:
                st = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "the request passed its deadline");
                break;
            case sched::FinishReason::kError: st = to_grpc(e.status); break;
            default: break;
        }
    }
    metrics_.usage(e.usage);
    metrics_.e2e(seconds_between(L.start, now));
    if (st.ok()) retry_after_.observe(seconds_between(L.start, now) * 1000.0);
    metrics_.request_finished(int(st.error_code()));
    L.stream->finish(st);
    end_trace(L, e.usage, st);
    if (!L.name.empty()) by_name_.erase(L.name);
    for (auto [b, end] = by_public_.equal_range(L.public_id); b != end; ++b)
        if (b->second == sid) {
            by_public_.erase(b);
            break;
        }
    live_.erase(it);
    request_ended();
}

void WorkerCore::request_ended() {
    if (n_live_.fetch_sub(1) == 1) {
        std::lock_guard lock(idle_mu_);
        idle_cv_.notify_all();
    }
}

void WorkerCore::cancel_stream(uint64_t sid, sched::EngineLoop& loop) {
    auto it = live_.find(sid);
    if (it == live_.end()) return;  // already finished
    const sched::RequestId rid = it->second.rid;
    (void)loop.cancel(rid);  // emits the final event synchronously: `it` is gone after this
}

void WorkerCore::abort(const pb::AbortRequest& req, pb::AbortResponse* resp, std::function<void()> done) {
    engine_->post([this, req, resp, done = std::move(done)](sched::EngineLoop& loop) {
        int32_t found = 0;
        // Marks and collects first: cancelling emits the final event synchronously, which erases the
        // request from the maps being walked.
        std::vector<sched::RequestId> to_cancel;
        auto take = [&](uint64_t sid) {
            auto it = live_.find(sid);
            if (it == live_.end() || it->second.aborted) return false;
            it->second.aborted = true;
            to_cancel.push_back(it->second.rid);
            return true;
        };
        for (const std::string& n : req.request_ids()) {
            auto b = by_name_.find(n);
            if (b != by_name_.end() && take(b->second)) {
                ++found;
                resp->add_found_ids(n);
            }
        }
        for (const std::string& p : req.public_request_ids()) {
            bool any = false;
            for (auto [b, end] = by_public_.equal_range(p); b != end; ++b)
                if (take(b->second)) {
                    ++found;
                    any = true;
                }
            if (any) resp->add_found_ids(p);
        }
        for (sched::RequestId rid : to_cancel) (void)loop.cancel(rid);
        for (const auto& c : req.continuations()) {
            auto b = by_name_.find(c.request_id());
            if (b == by_name_.end()) continue;
            auto it = live_.find(b->second);
            if (it == live_.end()) continue;
            // NotFound (already ended) and FailedPrecondition (not forked yet) abort nothing.
            // Recorded first: a successful cancel emits the continuation's (maybe the request's) last event
            // at once. A failed one emits nothing and leaves `it` valid.
            it->second.aborted_continuations.insert(c.index());
            if (loop.cancel_continuation(it->second.rid, c.index()).ok())
                ++found;
            else
                it->second.aborted_continuations.erase(c.index());
        }
        resp->set_found(found);
        done();
    });
}

void WorkerCore::set_worker_id(std::string id) {
    engine_->post([this, id = std::move(id)](sched::EngineLoop&) { opt_.worker_id = id; });
}

void WorkerCore::start_draining() {
    draining_.store(true);
    engine_->post([](sched::EngineLoop&) {});  // republish the digest with draining = true
}

void WorkerCore::wait_idle() {
    std::unique_lock lock(idle_mu_);
    idle_cv_.wait(lock, [&] { return n_live_.load() == 0; });
}

bool WorkerCore::wait_idle_for(std::chrono::milliseconds timeout) {
    std::unique_lock lock(idle_mu_);
    return idle_cv_.wait_for(lock, timeout, [&] { return n_live_.load() == 0; });
}

void WorkerCore::hand_off_all() {
    engine_->post([this](sched::EngineLoop& loop) {
        // Collect first: a cancel emits the request's last event at once, which erases it from live_.
        std::vector<sched::RequestId> running;
        for (auto& [sid, L] : live_) {
            L.handed_off = true;
            running.push_back(L.rid);
        }
        for (sched::RequestId rid : running) (void)loop.cancel(rid);
    });
}

void WorkerCore::after_work(sched::EngineLoop& loop) {
    if (!device_lost_ && loop.model().backend().device_lost()) {
        device_lost_ = true;
        draining_ = true;
        std::fprintf(stderr, "worker: the %s device is lost; refusing new requests (health NOT_SERVING)\n",
                     loop.model().backend().name().c_str());
        std::function<void()> notify;
        {
            std::lock_guard<std::mutex> l(device_lost_mu_);
            notify = on_device_lost_;
        }
        if (notify) notify();
    }
    const sched::Clock::time_point now = sched::Clock::now();
    // Rate-limited while busy; always when idle (rounds are rare then, and the idle state is the one
    // a router most wants to see promptly).
    if (!loop.idle() && now - last_publish_ < std::chrono::milliseconds(opt_.load_publish_ms)) return;
    last_publish_ = now;
    const sched::LoadDigest d = loop.digest();
    metrics_.digest(d, draining_.load());
    pb::LoadReport rep;
    to_proto(d, &rep);
    rep.set_draining(draining_.load());
    rep.set_worker_id(opt_.worker_id);
    hub_.publish(rep);
}

}  // namespace dg::worker
