// The upward pass (spec §2): coarse keys and values of every level, computed directly from the
// fine tokens of each cell, stored in one View per quantity with the level offsets of Geometry.
#pragma once

#include "geometry.hpp"
#include "simd.hpp"

#include <Kokkos_Core.hpp>

namespace fmattn {

// Learned downsampling parameters of K or V for all levels, flattened with
// Geometry::weight_offset (weight [p][w_l][d] per level) and bias [L][p][d].
template <class Scalar, class MemSpace>
struct LevelWeights {
  Kokkos::View<const Scalar*, MemSpace> weight;
  Kokkos::View<const Scalar*, MemSpace> bias;
};

template <class ExecSpace, class Scalar>
struct CoarseLevels {
  using Mem = typename ExecSpace::memory_space;
  using In = Kokkos::View<const Scalar***, Kokkos::LayoutRight, Mem>;
  using Out = Kokkos::View<Scalar***, Kokkos::LayoutRight, Mem>;

  Geometry g;
  Downsampling ds;
  In x;    // [bh][n][d] fine tokens (K or V)
  Out xc;  // [bh][total_coarse_tokens][d]
  LevelWeights<Scalar, Mem> w;

  KOKKOS_INLINE_FUNCTION void operator()(const std::int64_t idx) const {
    const std::int64_t T = g.total_coarse_tokens();
    const std::int64_t bh = idx / T;
    std::int64_t t = idx % T;
    int l = 1;
    while (t >= g.num_cells(l) * g.p) t -= g.num_cells(l++) * g.p;
    const std::int64_t cell = t / g.p;
    const int r = int(t % g.p);
    const int d = int(x.extent(2));
    const std::int64_t wl = g.cell_size(l);
    Scalar* out = &xc(bh, idx % T, 0);
    const bool average = ds == Downsampling::average;
    const std::int64_t begin = average ? cell * wl + r * (wl / g.p) : cell * wl;
    const std::int64_t cnt = g.present(begin, average ? wl / g.p : wl);
    if (cnt == 0) {  // absent coarse token: never read, kept finite
      for (int c = 0; c < d; ++c) out[c] = Scalar(0);
      return;
    }
    const Scalar* W = average ? nullptr : w.weight.data() + g.weight_offset(l, d) + std::int64_t(r) * wl * d;
    const Scalar* b = average ? nullptr : w.bias.data() + (std::int64_t(l - 1) * g.p + r) * d;
    const Scalar inv = Scalar(1) / Scalar(cnt);
    // Channel blocks accumulated in registers over the rows of the sub-segment (or cell).
    constexpr int CB = 16;
    for (int c0 = 0; c0 < d; c0 += CB) {
      const int nc = d - c0 < CB ? d - c0 : CB;
      Scalar a[CB] = {};
      for (std::int64_t j = 0; j < cnt; ++j) {
        const Scalar* row = &x(bh, begin + j, c0);
        if (average) {
          FMATTN_SIMD
          for (int c = 0; c < nc; ++c) a[c] += row[c];
        } else {
          const Scalar* wt = W + j * d + c0;
          FMATTN_SIMD
          for (int c = 0; c < nc; ++c) a[c] += wt[c] * row[c];
        }
      }
      for (int c = 0; c < nc; ++c) out[c0 + c] = average ? a[c] * inv : a[c] + b[c0 + c];
    }
  }
};

// Fills xc with the coarse tokens of x at every level. The work per coarse token grows with the
// level (w_l/p or w_l tokens), hence the dynamic schedule.
template <class ExecSpace, class Scalar>
void build_coarse_levels(const ExecSpace& space, const Geometry& g, Downsampling ds,
                         typename CoarseLevels<ExecSpace, Scalar>::In x,
                         typename CoarseLevels<ExecSpace, Scalar>::Out xc,
                         LevelWeights<Scalar, typename ExecSpace::memory_space> w) {
  const std::int64_t total = std::int64_t(x.extent(0)) * g.total_coarse_tokens();
  if (total == 0) return;
  Kokkos::parallel_for(
      "fmattn::coarse_levels::build",
      Kokkos::RangePolicy<ExecSpace, Kokkos::Schedule<Kokkos::Dynamic>, Kokkos::IndexType<std::int64_t>>(space, 0,
                                                                                                         total),
      CoarseLevels<ExecSpace, Scalar>{g, ds, x, xc, w});
}

}  // namespace fmattn
