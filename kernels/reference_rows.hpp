// Exact attention for a few sampled query rows, accumulated in double: the reference against
// which a run's output is validated (diagnostics/sample_rel_error). One thread per (batch·head,
// sampled row), a single pass over the allowed keys with an online max.
#pragma once

#include "geometry.hpp"
#include "kokkos_compat.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn {

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
    for (int x = 0; x < d; ++x) acc[x] = 0;
    double mx = 0, sum = 0;
    for (std::int64_t j = 0; j < end; ++j) {
      double sigma = 0;
      for (int x = 0; x < d; ++x) sigma += double(q(bh, i, x)) * double(k(bh, j, x));
      sigma *= scale;
      double w = 1;
      if (j == 0) {
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
      for (int x = 0; x < d; ++x) acc[x] += w * double(v(bh, j, x));
    }
    for (int x = 0; x < d; ++x) acc[x] /= sum;
  }
};

}  // namespace fmattn
