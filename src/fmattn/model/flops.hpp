// The model FLOPs of training, per token: what a step's tokens/s turns into model FLOP/s, and
// so into the fraction of the machine a run uses (against the GEMM ceiling fmattn_bench measures).
#pragma once

#include <fmattn/model/config.hpp>

namespace fmattn {

// The usual accounting (Kaplan et al.; PaLM's MFU): 6 FLOPs per matrix parameter per token for
// the dense products forward and backward (the Q, K, V, output and MLP matrices and the tied
// output embedding), plus the attention's forward FLOPs as attention_cost counts them (the
// evaluated query-key pairs and the downsampling) times 3.5 for forward and backward. Pointwise
// layers, the optimiser and recomputation are not counted.
double training_flops_per_token(const ModelConfig& c);

}  // namespace fmattn
