#include <fmattn/core/weights.hpp>

namespace fmattn {

DownsamplingWeights DownsamplingWeights::average(const Geometry& g, int d) {
  DownsamplingWeights w;
  w.geometry = g;
  w.head_dim = d;
  w.k_weight.assign(g.total_weights(d), 0.0);
  w.k_bias.assign(std::size_t(g.L) * g.p * d, 0.0);
  for (int l = 1; l <= g.L; ++l) {
    const std::int64_t wl = g.cell_size(l), seg = wl / g.p;
    double* W = w.k_weight.data() + g.weight_offset(l, d);
    for (int r = 0; r < g.p; ++r)
      for (std::int64_t t = r * seg; t < (r + 1) * seg; ++t)
        for (int c = 0; c < d; ++c) W[(r * wl + t) * d + c] = 1.0 / double(seg);
  }
  w.q_weight = w.v_weight = w.k_weight;
  w.q_bias = w.v_bias = w.k_bias;
  return w;
}

}  // namespace fmattn
