#include <fmattn/model/optimizer.hpp>

#include "kernels/adamw.hpp"

#include <cmath>
#include <stdexcept>

namespace fmattn {

double learning_rate_at(const OptimizerConfig& c, std::int64_t step) {
  if (step <= c.warmup_steps) return c.learning_rate * double(step) / double(c.warmup_steps);
  if (step >= c.steps) return c.min_learning_rate;
  const double progress = double(step - c.warmup_steps) / double(c.steps - c.warmup_steps);
  return c.min_learning_rate + 0.5 * (c.learning_rate - c.min_learning_rate) * (1.0 + std::cos(M_PI * progress));
}

template <class S>
AdamW<S>::AdamW(const OptimizerConfig& c, std::vector<ParameterSlot> slots) : c_(c), slots_(std::move(slots)) {
  const std::int64_t n = parameter_count(slots_);
  m1_ = Vector("fmattn::adamw::moment1", n);
  m2_ = Vector("fmattn::adamw::moment2", n);
  partial_ = decltype(partial_)("fmattn::adamw::partial", (n + detail::norm_chunk - 1) / detail::norm_chunk);
}

template <class S>
double AdamW<S>::norm(const Vector& g) const {
  return std::sqrt(sum_of_squares(g, 0, std::int64_t(g.extent(0))));
}

template <class S>
double AdamW<S>::sum_of_squares(const Vector& g, std::int64_t first, std::int64_t last) const {
  using Exec = Kokkos::DefaultExecutionSpace;
  if (g.extent(0) != m1_.extent(0) || first < 0 || last < first || last > std::int64_t(g.extent(0)))
    throw std::invalid_argument("AdamW::norm: not a vector of the parameters' size");
  const auto part = Kokkos::subview(
      partial_, std::make_pair(std::int64_t(0), (last - first + detail::norm_chunk - 1) / detail::norm_chunk));
  detail::chunked_sum_of_squares(Exec(), Kokkos::subview(g, std::make_pair(first, last)), part);
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), part);
  double sum = 0;
  for (std::size_t j = 0; j < host.extent(0); ++j) sum += host(j);
  return sum;
}

template <class S>
double AdamW<S>::step(std::int64_t t, const Vector& x, const Vector& g) {
  const double gnorm = norm(g);
  step(t, x, g, gnorm);
  return gnorm;
}

template <class S>
void AdamW<S>::step(std::int64_t t, const Vector& x, const Vector& g, double gnorm) {
  using Exec = Kokkos::DefaultExecutionSpace;
  detail::AdamWStep s;
  s.beta1 = c_.beta1;
  s.beta2 = c_.beta2;
  s.epsilon = c_.epsilon;
  s.grad_scale = gnorm > c_.clip_norm ? c_.clip_norm / gnorm : 1.0;
  s.correction1 = 1.0 - std::pow(c_.beta1, double(t));
  s.correction2 = 1.0 - std::pow(c_.beta2, double(t));
  const double lr = learning_rate_at(c_, t);
  for (const ParameterSlot& slot : slots_) {
    s.lr = lr * slot.lr_scale;
    s.decay = slot.decay ? c_.weight_decay : 0.0;
    detail::adamw(Exec(), slot.offset, slot.offset + slot.size, s, x, g, m1_, m2_);
  }
  Exec().fence();
}

template class AdamW<float>;
template class AdamW<double>;

}  // namespace fmattn
