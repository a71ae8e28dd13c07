#include <fmattn/model/flops.hpp>

#include <fmattn/core/cost.hpp>

namespace fmattn {

double training_flops_per_token(const ModelConfig& c) {
  const double W = c.width;
  const double matrix_parameters = double(c.layers) * 12.0 * W * W + double(vocabulary) * W;
  const AttentionCost attention = attention_cost(c.geometry(), c.attention, c.head_dim(), c.heads);
  return 6.0 * matrix_parameters + 3.5 * double(c.layers) * attention.flops() / double(c.context);
}

}  // namespace fmattn
