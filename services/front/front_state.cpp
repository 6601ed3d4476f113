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

bool FrontState::register_call(const std::string& id, GenerateCall* call) {
    std::lock_guard<std::mutex> l(calls_mu_);
    return calls_.emplace(id, call).second;
}

void FrontState::unregister_call(const std::string& id, GenerateCall* call) {
    std::lock_guard<std::mutex> l(calls_mu_);
    auto it = calls_.find(id);
    if (it != calls_.end() && it->second == call) calls_.erase(it);
}

std::vector<std::string> FrontState::abort_calls(const std::vector<std::string>& ids) {
    // A call unregisters itself (under calls_mu_) as the first thing its destructor does, so while
    // calls_mu_ is held here a registered call's memory is valid; but its last reference may already be
    // gone (release() decided to delete it and the destructor waits for calls_mu_): try_hold() refuses
    // then, and such a call is treated as finished. The abort runs outside the lock (cancelling may run
    // the call's completions on this thread).
    std::vector<GenerateCall*> found;
    std::vector<std::string> found_ids;
    {
        std::lock_guard<std::mutex> l(calls_mu_);
        for (const auto& id : ids)
            if (auto it = calls_.find(id); it != calls_.end() && it->second->try_hold()) {
                found.push_back(it->second);
                found_ids.push_back(id);
            }
    }
    for (GenerateCall* c : found) {
        c->abort("aborted by an Abort request");
        c->release();
    }
    return found_ids;
}

}  // namespace dg::front
