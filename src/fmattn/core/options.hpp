// The choices that select which attention function is computed (spec §2–5).
#pragma once

namespace fmattn {

enum class Variant : int { causal = 0, bidirectional = 1 };
enum class Downsampling : int { average = 0, learned = 1 };
enum class Boundary : int { masked = 0, zero_sink = 1 };
enum class Method : int { fma = 0, exact = 1 };

struct AttentionOptions {
  Method method = Method::fma;
  Downsampling downsampling = Downsampling::average;
  bool count_weighting = true;
  Boundary boundary = Boundary::masked;
  double scale = 1.0;           // score = scale · q·k
  bool coarse_queries = false;  // linear variant (spec §8): queries down-sampled too
};

}  // namespace fmattn
