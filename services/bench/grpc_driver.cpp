// The driver for deltagate's public gRPC API (deltagate.v1.Inference): Generate streamed from token ids,
// and BatchGenerate for fan-out (the shared prefix prefilled once and forked on the worker). Blocking
// stubs, one call per benchmark thread; the channel is shared.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <map>

#include "absl/strings/str_cat.h"
#include "deltagate/v1/inference.grpc.pb.h"
#include "services/bench/driver.h"
#include "services/common/status_http.h"

namespace dg::bench {
namespace {

namespace v1 = ::deltagate::v1;

class GrpcDriver final : public Driver {
public:
    GrpcDriver(std::string target, std::string api_key, double deadline_s)
        : target_(std::move(target)), api_key_(std::move(api_key)), deadline_s_(deadline_s) {
        grpc::ChannelArguments args;
        args.SetMaxReceiveMessageSize(64 << 20);
        args.SetMaxSendMessageSize(64 << 20);
        stub_ = v1::Inference::NewStub(
            grpc::CreateCustomChannel(target_, grpc::InsecureChannelCredentials(), args));
    }

    absl::StatusOr<ServerInfo> probe(const std::string& want) override {
        grpc::ClientContext ctx;
        prepare(ctx, 10);
        v1::ListModelsResponse r;
        const grpc::Status s = stub_->ListModels(&ctx, {}, &r);
        if (!s.ok()) {
            if (s.error_code() == grpc::StatusCode::UNAVAILABLE || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
                return absl::UnavailableError(absl::StrCat("cannot reach a deltagate front at ", target_, " (",
                                                           s.error_message(), "): is it running, and is --grpc right?"));
            return absl::FailedPreconditionError(
                absl::StrCat("ListModels on ", target_, " failed: ", status_code_name(s.error_code()), ": ",
                             s.error_message()));
        }
        if (r.models_size() == 0) return absl::FailedPreconditionError(absl::StrCat(target_, " serves no model"));
        const v1::ModelInfo* m = nullptr;
        std::string names;
        for (const auto& mi : r.models()) {
            absl::StrAppend(&names, names.empty() ? "" : ", ", mi.name());
            if (want.empty() || mi.name() == want) m = m ? m : &mi;
        }
        if (!m)
            return absl::NotFoundError(absl::StrCat("--model ", want, ": ", target_, " does not serve it (it serves: ",
                                                    names, ")"));
        if (m->workers_healthy() == 0)
            return absl::UnavailableError(absl::StrCat(target_, " has no healthy worker (0/", m->workers_total(),
                                                       "): start the workers or wait until they are ready"));
        ServerInfo info;
        info.model = m->name();
        info.vocab_size = m->vocab_size();
        info.max_context = m->max_context();
        info.max_prompt_tokens = m->max_prompt_tokens();
        info.server = absl::StrCat("deltagate gRPC ", target_, " (", m->workers_healthy(), "/", m->workers_total(),
                                   " workers)");
        info.prompt_mode = "token ids";
        model_ = info.model;
        return info;
    }

    RequestResult generate(const std::vector<int32_t>& prompt, int max_tokens, const RequestOptions& opt) override {
        v1::GenerateRequest req;
        req.set_request_id(opt.request_id);
        req.set_model(model_);
        req.mutable_prompt()->mutable_token_ids()->mutable_ids()->Assign(prompt.begin(), prompt.end());
        req.mutable_stop()->set_max_tokens(max_tokens);
        req.mutable_stop()->set_ignore_eos(true);  // exactly max_tokens, as every driver asks
        req.set_return_text(false);
        set_cache(req.mutable_cache(), opt);
        grpc::ClientContext ctx;
        prepare(ctx, deadline_s_);
        RequestResult r;
        r.prompt_tokens = int(prompt.size());
        r.start = Clock::now();
        auto reader = stub_->Generate(&ctx, req);
        v1::GenerateResponse msg;
        Clock::time_point last{};
        while (reader->Read(&msg)) {
            const Clock::time_point now = Clock::now();
            if (msg.has_delta() && msg.delta().token_ids_size() > 0) {
                record_tokens(r, msg.delta().token_ids_size(), now, &last);
                r.output_ids.insert(r.output_ids.end(), msg.delta().token_ids().begin(), msg.delta().token_ids().end());
            } else if (msg.has_final()) {
                take_usage(r, msg.final().usage(), /*with_output=*/true);
            }
        }
        finish(r, reader->Finish());
        return r;
    }

    std::vector<RequestResult> fanout(const std::vector<int32_t>& prefix,
                                      const std::vector<std::vector<int32_t>>& suffixes, int max_tokens,
                                      const RequestOptions& opt) override {
        v1::BatchGenerateRequest req;
        req.set_request_id(opt.request_id);
        req.set_model(model_);
        req.mutable_prefix()->mutable_token_ids()->mutable_ids()->Assign(prefix.begin(), prefix.end());
        for (const auto& s : suffixes)
            req.add_continuations()->mutable_token_ids()->mutable_ids()->Assign(s.begin(), s.end());
        req.mutable_default_stop()->set_max_tokens(max_tokens);
        req.mutable_default_stop()->set_ignore_eos(true);
        req.set_return_text(false);
        set_cache(req.mutable_cache(), opt);
        grpc::ClientContext ctx;
        prepare(ctx, deadline_s_);
        std::vector<RequestResult> out(suffixes.size());
        std::vector<Clock::time_point> last(suffixes.size());
        const Clock::time_point start = Clock::now();
        for (size_t i = 0; i < out.size(); ++i) {
            out[i].start = start;
            out[i].prompt_tokens = int(prefix.size() + suffixes[i].size());
        }
        auto reader = stub_->BatchGenerate(&ctx, req);
        v1::GenerateResponse msg;
        std::vector<Clock::time_point> end(out.size());
        while (reader->Read(&msg)) {
            const Clock::time_point now = Clock::now();
            if (msg.has_delta()) {
                const size_t i = size_t(msg.delta().index());
                if (i < out.size() && msg.delta().token_ids_size() > 0)
                    record_tokens(out[i], msg.delta().token_ids_size(), now, &last[i]);
            } else if (msg.has_finished()) {
                const size_t i = size_t(msg.finished().index());
                if (i < out.size()) {
                    end[i] = now;
                    out[i].output_tokens = msg.finished().completion_tokens();
                }
            } else if (msg.has_final() && !out.empty()) {
                // The batch's usage is one figure (the prefix is prefilled once): it goes to continuation 0,
                // the others report none, so sums over a cell stay right.
                take_usage(out[0], msg.final().usage(), /*with_output=*/false);
                for (size_t i = 1; i < out.size(); ++i) out[i].usage_prompt_tokens = out[i].cached_tokens = 0;
            }
        }
        const grpc::Status s = reader->Finish();
        for (size_t i = 0; i < out.size(); ++i) {
            // Per continuation: its own Finished count (usage's completion count is over all of them).
            finish(out[i], s);
            if (end[i] != Clock::time_point{}) out[i].e2e_ms = ms_between(start, end[i]);
        }
        return out;
    }

    std::string fanout_method() const override { return "BatchGenerate (one request, prefix prefilled once)"; }

private:
    void prepare(grpc::ClientContext& ctx, double deadline_s) {
        if (!api_key_.empty()) ctx.AddMetadata("authorization", "Bearer " + api_key_);
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(int64_t(deadline_s * 1000)));
    }
    void set_cache(v1::CacheOptions* c, const RequestOptions& opt) {
        if (!opt.session_id.empty()) c->set_session_id(opt.session_id);
        // A salt nobody else uses: no prefix cached by another request can match (cache off).
        if (!opt.cache) c->set_cache_salt(absl::StrCat("bench-nocache-", opt.request_id, "-", salt_seq_++));
    }
    static void record_tokens(RequestResult& r, int k, Clock::time_point now, Clock::time_point* last) {
        if (r.ttft_ms < 0) {
            r.ttft_ms = ms_between(r.start, now);
            for (int j = 1; j < k; ++j) r.itl_ms.push_back(0);  // tokens that came with the first
        } else {
            const double gap = ms_between(*last, now) / k;
            for (int j = 0; j < k; ++j) r.itl_ms.push_back(gap);
        }
        *last = now;
        r.output_tokens += k;
    }
    static void take_usage(RequestResult& r, const v1::Usage& u, bool with_output) {
        r.usage_prompt_tokens = u.prompt_tokens();
        r.cached_device = u.cached_tokens_device();
        r.cached_host = u.cached_tokens_host();
        r.cached_tokens = r.cached_device + r.cached_host;
        if (with_output) r.output_tokens = u.completion_tokens();
    }
    static void finish(RequestResult& r, const grpc::Status& s) {
        r.e2e_ms = ms_between(r.start, Clock::now());
        r.ok = s.ok();
        if (!s.ok()) {
            r.error_class = status_code_name(s.error_code());
            r.error_message = s.error_message();
        }
    }

    std::string target_, api_key_;
    double deadline_s_;
    std::string model_;
    std::unique_ptr<v1::Inference::Stub> stub_;
    std::atomic<uint64_t> salt_seq_{0};
};

}  // namespace

std::unique_ptr<Driver> make_grpc_driver(const std::string& target, const std::string& api_key, double deadline_s) {
    return std::make_unique<GrpcDriver>(target, api_key, deadline_s);
}

}  // namespace dg::bench
