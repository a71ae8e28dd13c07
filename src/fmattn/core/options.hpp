// The choices that select which attention function is computed (spec §2–5).
#pragma once

#include <Kokkos_Macros.hpp>

namespace fmattn {

enum class Variant : int { causal = 0, bidirectional = 1 };
enum class Downsampling : int { average = 0, learned = 1 };
enum class Boundary : int { masked = 0, zero_sink = 1 };
// local: FMA's near field alone (no coarse levels), the ablation that shows what the far field buys.
enum class Method : int { fma = 0, exact = 1, local = 2 };
// FMA and local attention see the keys block by block (the near field); FMA alone adds the far
// field of coarse levels.
KOKKOS_INLINE_FUNCTION constexpr bool has_near_blocks(Method m) { return m != Method::exact; }
KOKKOS_INLINE_FUNCTION constexpr bool has_far_field(Method m) { return m == Method::fma; }

struct AttentionOptions {
  Method method = Method::fma;
  Downsampling downsampling = Downsampling::average;
  bool count_weighting = true;
  Boundary boundary = Boundary::masked;
  double scale = 1.0;           // score = scale · q·k
  bool coarse_queries = false;  // linear variant (spec §8): queries down-sampled too
};

}  // namespace fmattn
