// AdamW on a flat parameter vector and the gradient's squared norm, both deterministic: the
// norm is summed in fixed chunks (each in order, in double) whose partial sums the caller adds
// in order, so the clipping factor has the same bits at any thread count.
#pragma once

#include "kernels/kokkos_compat.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

inline constexpr std::int64_t norm_chunk = 4096;

// partial(j) = Σ g(i)² over chunk j of `norm_chunk` elements.
template <class Exec, class CVector, class Partials>
void chunked_sum_of_squares(const Exec& space, const CVector& g, const Partials& partial) {
  const std::int64_t n = g.extent(0);
  Kokkos::parallel_for(
      "fmattn::adamw::sum_of_squares",
      Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(space, 0, partial.extent(0)),
      KOKKOS_LAMBDA(const std::int64_t j) {
        double s = 0;
        const std::int64_t end = (j + 1) * norm_chunk < n ? (j + 1) * norm_chunk : n;
        for (std::int64_t i = j * norm_chunk; i < end; ++i) s += double(g(i)) * double(g(i));
        partial(j) = s;
      });
}

struct AdamWStep {
  double lr = 0;  // this parameter group's learning rate at this step
  double beta1 = 0.9, beta2 = 0.95, epsilon = 1e-8;
  double decay = 0;        // decoupled weight decay (0 for groups without it)
  double grad_scale = 1;   // clipping factor applied to the gradient
  double correction1 = 1;  // 1 − beta1^t
  double correction2 = 1;  // 1 − beta2^t
};

// Elements [first, last) of x with gradient g and moments m, v; arithmetic in double.
template <class Exec, class Vector, class CVector>
void adamw(const Exec& space, std::int64_t first, std::int64_t last, const AdamWStep& s, const Vector& x,
           const CVector& g, const Vector& m, const Vector& v) {
  using S = typename Vector::non_const_value_type;
  Kokkos::parallel_for(
      "fmattn::adamw::update", Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(space, first, last),
      KOKKOS_LAMBDA(const std::int64_t i) {
        const double gi = double(g(i)) * s.grad_scale;
        const double mi = s.beta1 * double(m(i)) + (1.0 - s.beta1) * gi;
        const double vi = s.beta2 * double(v(i)) + (1.0 - s.beta2) * gi * gi;
        m(i) = S(mi);
        v(i) = S(vi);
        const double xi = double(x(i)) * (1.0 - s.lr * s.decay);
        x(i) = S(xi - s.lr * (mi / s.correction1) / (compat::sqrt(vi / s.correction2) + s.epsilon));
      });
}

}  // namespace fmattn::detail
