#include "services/front/front_state.h"

#include <cstdio>
#include <filesystem>

#include "services/front/generate_call.h"

namespace dg::front {

FrontState::FrontState(FrontOptions opt, std::unique_ptr<WorkerPool> pool, std::unique_ptr<tok::Tokenizer> tokenizer,
                       std::unique_ptr<trace::Tracer> tracer)
    : opt_(std::move(opt)),
      pool_(std::move(pool)),
      metrics_(registry_),
      tracer_(std::move(tracer)),
      tokenizer_(std::move(tokenizer)),
      tokenizer_tried_(tokenizer_ != nullptr || !opt_.tokenizer_path.empty()) {
    registry_.add_collector([this] {
        int healthy = 0, total = 0;
        for (auto& w : pool_->workers()) {
            ++total;
            healthy += w->healthy();
        }
        registry_.gauge("deltagate_front_workers", "Workers known to this front, by state.", {{"state", "healthy"}})
            .set(healthy);
        registry_.gauge("deltagate_front_workers", "Workers known to this front, by state.", {{"state", "unhealthy"}})
            .set(total - healthy);
        registry_.gauge("deltagate_front_trace_spans_dropped", "Spans dropped because the export queue was full.")
            .set(double(tracer_->dropped()));
    });
}

absl::StatusOr<ModelFacts> FrontState::model() {
    auto info = pool_->any_info();
    if (!info)
        return absl::UnavailableError(
            "no worker has answered yet: check that the workers are running and reachable from the front");
    ModelFacts m;
    m.name = opt_.model_name;
    if (m.name.empty()) m.name = std::filesystem::path(info->model_path()).stem().string();
    if (m.name.empty()) m.name = "default";
    m.vocab_size = info->vocab_size();
    m.max_context = info->max_seq_len();
    m.eos_ids.assign(info->eos_token_ids().begin(), info->eos_token_ids().end());
    return m;
}

const tok::Tokenizer* FrontState::tokenizer() {
    std::lock_guard<std::mutex> l(tok_mu_);
    if (!tokenizer_ && !tokenizer_tried_) {
        auto info = pool_->any_info();
        if (!info) return nullptr;
        tokenizer_tried_ = true;
        // Same machine (deltagate up) or a shared volume: the model file carries the vocabulary.
        std::error_code ec;
        if (!info->model_path().empty() && std::filesystem::is_regular_file(info->model_path(), ec)) {
            auto t = tok::load_tokenizer(info->model_path());
            if (t.ok()) {
                tokenizer_ = std::move(*t);
                std::fprintf(stderr, "front: tokenizer from %s (%d tokens)\n", info->model_path().c_str(),
                             tokenizer_->vocab_size());
            } else {
                std::fprintf(stderr, "front: no tokenizer in %s (%s): token-id prompts only\n",
                             info->model_path().c_str(), std::string(t.status().message()).c_str());
            }
        }
    }
    return tokenizer_.get();
}

bool FrontState::register_call(const std::string& id, std::weak_ptr<GenerateCall> call) {
    std::lock_guard<std::mutex> l(calls_mu_);
    GenerateCall* raw = call.lock().get();
    return calls_.emplace(id, RegisteredCall{raw, std::move(call)}).second;
}

void FrontState::unregister_call(const std::string& id, GenerateCall* call) {
    std::lock_guard<std::mutex> l(calls_mu_);
    auto it = calls_.find(id);
    if (it != calls_.end() && it->second.raw == call) calls_.erase(it);
}

std::vector<std::string> FrontState::abort_calls(const std::vector<std::string>& ids) {
    // A weak_ptr locks only while some reference keeps the call alive; a call whose last reference is
    // gone (its destructor may be waiting for calls_mu_ to unregister) is treated as finished. The abort
    // runs outside the lock (cancelling may run the call's completions on this thread), and the strong
    // references are dropped outside it too: the last one runs the destructor, which takes calls_mu_.
    std::vector<std::shared_ptr<GenerateCall>> found;
    std::vector<std::string> found_ids;
    {
        std::lock_guard<std::mutex> l(calls_mu_);
        for (const auto& id : ids)
            if (auto it = calls_.find(id); it != calls_.end())
                if (auto c = it->second.call.lock()) {
                    found.push_back(std::move(c));
                    found_ids.push_back(id);
                }
    }
    for (auto& c : found) c->abort("aborted by an Abort request");
    found.clear();
    return found_ids;
}

}  // namespace dg::front
