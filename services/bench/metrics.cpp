#include "services/bench/metrics.h"

#include <algorithm>

namespace dg::bench {

CellMetrics compute_metrics(const std::vector<RequestResult>& results, const Slo& slo) {
    CellMetrics m;
    m.requests = int(results.size());
    std::vector<double> ttft, itl, e2e, tpot, prefill, decode;
    Clock::time_point first{}, last{};
    int64_t usage_known_prompt = 0, tiers_known_prompt = 0;
    bool any_cache = false, any_tiers = false;
    for (const RequestResult& r : results) {
        const Clock::time_point end = r.start + std::chrono::microseconds(int64_t(std::max(0.0, r.e2e_ms) * 1000));
        if (first == Clock::time_point{} || r.start < first) first = r.start;
        if (end > last) last = end;
        m.prompt_tokens += r.prompt_tokens;
        if (!r.ok) {
            ++m.failed;
            ++m.errors[r.error_class.empty() ? "unknown" : r.error_class];
            if (m.first_error.empty()) m.first_error = r.error_class + ": " + r.error_message;
            continue;
        }
        ++m.ok;
        m.output_tokens += r.output_tokens;
        const int prompt = r.usage_prompt_tokens >= 0 ? r.usage_prompt_tokens : r.prompt_tokens;
        if (r.usage_prompt_tokens >= 0) m.usage_prompt_tokens += r.usage_prompt_tokens;
        if (r.cached_tokens >= 0) {
            any_cache = true;
            m.cached_tokens += r.cached_tokens;
            usage_known_prompt += prompt;
        }
        if (r.cached_device >= 0 && r.cached_host >= 0) {
            any_tiers = true;
            m.cached_device += r.cached_device;
            m.cached_host += r.cached_host;
            tiers_known_prompt += prompt;
        }
        if (r.ttft_ms >= 0) {
            ttft.push_back(r.ttft_ms);
            const int uncached = prompt - std::max(0, r.cached_tokens);
            if (r.ttft_ms > 0 && uncached > 0 && r.usage_prompt_tokens != 0) prefill.push_back(uncached * 1000.0 / r.ttft_ms);
        }
        e2e.push_back(r.e2e_ms);
        itl.insert(itl.end(), r.itl_ms.begin(), r.itl_ms.end());
        if (!r.itl_ms.empty()) {
            double sum = 0;
            for (double g : r.itl_ms) sum += g;
            tpot.push_back(sum / double(r.itl_ms.size()));
            const double decode_ms = r.e2e_ms - r.ttft_ms;
            if (decode_ms > 0 && r.output_tokens > 1) decode.push_back((r.output_tokens - 1) * 1000.0 / decode_ms);
        }
        const bool ttft_good = slo.ttft_ms <= 0 || (r.ttft_ms >= 0 && r.ttft_ms <= slo.ttft_ms);
        const bool itl_good = slo.itl_ms <= 0 || tpot.empty() || r.itl_ms.empty() || tpot.back() <= slo.itl_ms;
        if (ttft_good && itl_good) ++m.good;
    }
    m.wall_s = results.empty() ? 0 : std::chrono::duration<double>(last - first).count();
    if (m.wall_s > 0) {
        m.req_per_s = m.ok / m.wall_s;
        m.output_tok_per_s = double(m.output_tokens) / m.wall_s;
        int64_t prompt_ok = 0;
        for (const RequestResult& r : results)
            if (r.ok) prompt_ok += r.usage_prompt_tokens >= 0 ? r.usage_prompt_tokens : r.prompt_tokens;
        m.total_tok_per_s = double(prompt_ok + m.output_tokens) / m.wall_s;
        m.goodput_req_per_s = m.good / m.wall_s;
    }
    m.good_fraction = m.requests > 0 ? double(m.good) / m.requests : 0;
    if (any_cache && usage_known_prompt > 0) m.cached_fraction = double(m.cached_tokens) / double(usage_known_prompt);
    if (any_tiers && tiers_known_prompt > 0) {
        m.cached_device_fraction = double(m.cached_device) / double(tiers_known_prompt);
        m.cached_host_fraction = double(m.cached_host) / double(tiers_known_prompt);
    }
    m.ttft_ms = summarize(ttft);
    m.itl_ms = summarize(itl);
    m.e2e_ms = summarize(e2e);
    m.tpot_ms = summarize(tpot);
    m.prefill_tok_per_s = summarize(prefill);
    m.decode_tok_per_s = summarize(decode);
    return m;
}

}  // namespace dg::bench
