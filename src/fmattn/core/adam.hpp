// Adam (Kingma & Ba, 2015) on flat parameter vectors, in double on the host. The same
// arithmetic in the same order on every run, so a fit restarted from saved moments continues
// bit for bit.
#pragma once

#include <cmath>
#include <cstdint>

namespace fmattn {

struct Adam {
  double learning_rate = 1e-3;
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;

  // Step t (1-based) on `count` parameters x with gradient g, first and second moments m and v,
  // and learning rate `lr` (callers scale learning_rate per parameter group).
  void update(std::int64_t t, double lr, double* x, const double* g, double* m, double* v, std::size_t count) const {
    const double c1 = 1.0 - std::pow(beta1, double(t)), c2 = 1.0 - std::pow(beta2, double(t));
    for (std::size_t i = 0; i < count; ++i) {
      m[i] = beta1 * m[i] + (1.0 - beta1) * g[i];
      v[i] = beta2 * v[i] + (1.0 - beta2) * g[i] * g[i];
      x[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + epsilon);
    }
  }
};

}  // namespace fmattn
