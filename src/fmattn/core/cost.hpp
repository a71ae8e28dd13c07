// Honest operation counts of one attention evaluation, from the geometry alone: the (query,
// key-slot) pairs actually evaluated (causal masks count as skipped) and the downsampling work.
#pragma once

#include <fmattn/core/geometry.hpp>
#include <fmattn/core/options.hpp>

#include <cstdint>

namespace fmattn {

struct AttentionCost {
  double slots = 0;             // (query, slot) pairs per head
  double attention_flops = 0;   // 4·d per pair (q·k and p·v), all heads
  double downsample_flops = 0;  // upward pass, all heads
  double flops() const { return attention_flops + downsample_flops; }
};

AttentionCost attention_cost(const Geometry& g, const AttentionOptions& opt, int head_dim, std::int64_t heads);

}  // namespace fmattn
