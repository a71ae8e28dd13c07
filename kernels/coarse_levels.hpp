// The upward pass (spec §2): coarse keys and values of every level, computed directly from the
// fine tokens of each cell, stored in one View per quantity with the level offsets of Geometry.
#pragma once

#include "geometry.hpp"

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
    for (int c = 0; c < d; ++c) out[c] = Scalar(0);

    if (ds == Downsampling::average) {
      const std::int64_t begin = cell * wl + r * (wl / g.p);
      const std::int64_t cnt = g.present(begin, wl / g.p);
      if (cnt == 0) return;  // absent coarse token: never read, kept finite
      for (std::int64_t j = begin; j < begin + cnt; ++j) {
        const Scalar* row = &x(bh, j, 0);
        for (int c = 0; c < d; ++c) out[c] += row[c];
      }
      const Scalar inv = Scalar(1) / Scalar(cnt);
      for (int c = 0; c < d; ++c) out[c] *= inv;
    } else {
      const std::int64_t begin = cell * wl;
      const std::int64_t cnt = g.present(begin, wl);
      if (cnt == 0) return;
      const Scalar* W = w.weight.data() + g.weight_offset(l, d) + std::int64_t(r) * wl * d;
      const Scalar* b = w.bias.data() + (std::int64_t(l - 1) * g.p + r) * d;
      for (int c = 0; c < d; ++c) out[c] = b[c];
      for (std::int64_t t2 = 0; t2 < cnt; ++t2) {
        const Scalar* row = &x(bh, begin + t2, 0);
        const Scalar* wt = W + t2 * d;
        for (int c = 0; c < d; ++c) out[c] += wt[c] * row[c];
      }
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
