#include "services/worker/generate_stream.h"

namespace dg::worker {

std::shared_ptr<GenerateStream> GenerateStream::create(std::function<void()> on_cancel,
                                                       grpc::CallbackServerContext* ctx) {
    std::shared_ptr<GenerateStream> s(new GenerateStream(std::move(on_cancel), ctx));
    s->hold_until_done(s);
    return s;
}

// The client is gone (cancelled, deadline, a failed write): nothing more will be delivered. Finish comes
// when the engine reports the request ended (the cancel it is about to get).
void GenerateStream::on_broken(Broken) {
    std::function<void()> fn;
    {
        std::lock_guard lock(mu_);
        fn = std::move(on_cancel_);
        on_cancel_ = nullptr;
    }
    if (fn) fn();
}

// Just before Finish, once: the trailing metadata goes on the context while nothing else touches it.
void GenerateStream::on_finishing(const grpc::Status&) {
    std::lock_guard lock(mu_);
    if (ctx_)
        for (const auto& [k, v] : trailing_) ctx_->AddTrailingMetadata(k, v);
}

void GenerateStream::on_done() {
    std::lock_guard lock(mu_);
    on_cancel_ = nullptr;
}

}  // namespace dg::worker
