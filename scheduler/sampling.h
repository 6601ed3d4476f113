// The scheduler's names for the sampler, which lives in the engine (engine/sampling.h) so that every
// backend can sample a step's logits where they are (Backend::sample): the CPU backend with this code,
// the CUDA backend on the device.
#pragma once

#include "engine/sampling.h"

namespace dg::sched {

using dg::apply_penalties;
using dg::child_seed;
using dg::compute_logprobs;
using dg::has_penalties;
using dg::kMaxTopLogprobs;
using dg::SampledToken;
using dg::SampleRow;
using dg::Sampler;
using dg::SamplingParams;
using dg::TokenLogprobs;
using dg::validate_sampling;

}  // namespace dg::sched
