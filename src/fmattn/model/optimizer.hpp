// AdamW with linear warm-up, cosine decay and global-norm clipping (docs/language-model.md),
// over a model's flat parameter vector; the moments live next to it on the device.
#pragma once

#include <fmattn/model/parameters.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <vector>

namespace fmattn {

struct OptimizerConfig {
  std::int64_t steps = 2000;
  double learning_rate = 6e-4, min_learning_rate = 6e-5;
  std::int64_t warmup_steps = 100;
  double weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, epsilon = 1e-8, clip_norm = 1.0;
};

// The learning rate of step t (1-based): linear from 0 over the warm-up, then cosine down to
// min_learning_rate at `steps`.
double learning_rate_at(const OptimizerConfig& c, std::int64_t step);

template <class Scalar>
class AdamW {
 public:
  using Vector = Kokkos::View<Scalar*, Kokkos::DefaultExecutionSpace::memory_space>;

  AdamW(const OptimizerConfig& c, std::vector<ParameterSlot> slots);
  Vector moment1() const { return m1_; }
  Vector moment2() const { return m2_; }

  // The global L2 norm of g (as long as the parameters), summed the same way at any thread count;
  // the sum of the squares of its elements [first, last).
  double norm(const Vector& g) const;
  double sum_of_squares(const Vector& g, std::int64_t first, std::int64_t last) const;
  // Step t on x with gradient g (clipped to clip_norm first); returns the norm before clipping.
  double step(std::int64_t t, const Vector& x, const Vector& g);
  // The same with the norm of the gradient given (a sharded model's, over all ranks).
  void step(std::int64_t t, const Vector& x, const Vector& g, double gnorm);

 private:
  OptimizerConfig c_;
  std::vector<ParameterSlot> slots_;
  Vector m1_, m2_;
  Kokkos::View<double*, Kokkos::DefaultExecutionSpace::memory_space> partial_;  // norm's chunk sums
};

}  // namespace fmattn
