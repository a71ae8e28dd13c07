// Learned downsampling weights (spec §2) on the host: one weight matrix and bias per level and
// sub-segment for each of q, k and v. Their file layout is io/weights_file.hpp.
#pragma once

#include <fmattn/core/geometry.hpp>

#include <string>
#include <vector>

namespace fmattn {

struct DownsamplingWeights {
  Geometry geometry;  // the padded length, block size and rank they are made for
  int head_dim = 0;
  // Flattened with Geometry::weight_offset; biases as [L][p][d]. The q operator is used by the
  // linear variant only (attention.queries: coarse).
  std::vector<double> q_weight, q_bias, k_weight, k_bias, v_weight, v_bias;

  // The average operator: W = 1/(w_l/p) on sub-segment r of each cell, b = 0 (spec §2).
  static DownsamplingWeights average(const Geometry& g, int head_dim);
};

}  // namespace fmattn
