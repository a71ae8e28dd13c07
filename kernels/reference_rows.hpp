// Exact attention for a few sampled query rows, accumulated in double: the reference against
// which a run's output is validated (diagnostics/sample_rel_error). One thread per (batch·head,
// sampled row), a single pass over the allowed keys with an online max. A sharded sequence
// forms partial sums over each rank's keys (ReferencePartials) and combines them across ranks.
#pragma once

#include <fmattn/core/geometry.hpp>
#include "kernels/kokkos_compat.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

// Online softmax of query row qrow (qrow(x) its channel x, unscaled) over the keys [lo, hi),
// key j being row j - key0 of k and v: the max score mx, the denominator sum and the numerator
// acc[d], both relative to mx. Requires lo < hi.
template <class QRow, class KV>
KOKKOS_INLINE_FUNCTION void exact_row_sums(const QRow& qrow, const KV& k, const KV& v, std::int64_t bh,
                                           std::int64_t key0, std::int64_t lo, std::int64_t hi, int d, double scale,
                                           double& mx, double& sum, double* acc) {
  for (int x = 0; x < d; ++x) acc[x] = 0;
  mx = 0;
  sum = 0;
  for (std::int64_t j = lo; j < hi; ++j) {
    double sigma = 0;
    for (int x = 0; x < d; ++x) sigma += qrow(x) * double(k(bh, j - key0, x));
    sigma *= scale;
    double w = 1;
    if (j == lo) {
      mx = sigma;
    } else if (sigma > mx) {
      const double shrink = compat::exp(mx - sigma);
      sum *= shrink;
      for (int x = 0; x < d; ++x) acc[x] *= shrink;
      mx = sigma;
    } else {
      w = compat::exp(sigma - mx);
    }
    sum += w;
    for (int x = 0; x < d; ++x) acc[x] += w * double(v(bh, j - key0, x));
  }
}

template <class ExecSpace, class Scalar>
struct ReferenceRows {
  using Mem = typename ExecSpace::memory_space;
  Kokkos::View<const Scalar***, Kokkos::LayoutRight, Mem> q, k, v;    // [bh][n][d]
  Kokkos::View<const std::int64_t**, Kokkos::LayoutRight, Mem> rows;  // [bh][S] query positions
  Kokkos::View<double***, Kokkos::LayoutRight, Mem> ref;              // [bh][S][d]
  Variant variant;
  double scale;

  KOKKOS_INLINE_FUNCTION void operator()(const std::int64_t bh, const std::int64_t s) const {
    const std::int64_t i = rows(bh, s);
    const int d = int(q.extent(2));
    const std::int64_t end = variant == Variant::causal ? i + 1 : std::int64_t(k.extent(1));
    double* acc = &ref(bh, s, 0);
    double mx, sum;
    exact_row_sums([&](int x) { return double(q(bh, i, x)); }, k, v, bh, 0, 0, end, d, scale, mx, sum, acc);
    for (int x = 0; x < d; ++x) acc[x] /= sum;
  }
};

// One shard's share of the sampled rows' exact attention: partial sums over its own keys
// [own0, own1) for the gathered query rows qs [bh][S][d]; den = 0 where it holds no allowed key.
template <class ExecSpace, class Scalar>
struct ReferencePartials {
  using Mem = typename ExecSpace::memory_space;
  Kokkos::View<const double***, Kokkos::LayoutRight, Mem> qs;         // [bh][S][d] sampled query rows
  Kokkos::View<const Scalar***, Kokkos::LayoutRight, Mem> k, v;       // stored rows from key0
  Kokkos::View<const std::int64_t**, Kokkos::LayoutRight, Mem> rows;  // [bh][S] query positions
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> mx, den;           // [bh][S]
  Kokkos::View<double***, Kokkos::LayoutRight, Mem> num;              // [bh][S][d]
  std::int64_t key0, own0, own1;
  Variant variant;
  double scale;

  KOKKOS_INLINE_FUNCTION void operator()(const std::int64_t bh, const std::int64_t s) const {
    const std::int64_t i = rows(bh, s);
    const int d = int(qs.extent(2));
    const std::int64_t hi = variant == Variant::causal && i + 1 < own1 ? i + 1 : own1;
    double* acc = &num(bh, s, 0);
    if (own0 >= hi) {
      for (int x = 0; x < d; ++x) acc[x] = 0;
      mx(bh, s) = 0;
      den(bh, s) = 0;
      return;
    }
    exact_row_sums([&](int x) { return qs(bh, s, x); }, k, v, bh, key0, own0, hi, d, scale, mx(bh, s), den(bh, s), acc);
  }
};

// One thread per (batch·head, sampled row).
template <class ExecSpace, class Functor>
void for_each_sampled_row(const ExecSpace& space, const char* label, std::int64_t heads, std::int64_t S,
                          const Functor& f) {
  using Policy = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>, Kokkos::IndexType<std::int64_t>>;
  Kokkos::parallel_for(label, Policy(space, {0, 0}, {heads, S}), f);
}

}  // namespace fmattn::detail
