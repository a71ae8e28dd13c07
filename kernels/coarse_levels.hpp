// The upward pass (spec §2): coarse keys and values of every level, stored in one View per
// quantity with the level offsets of Geometry.
//
// Average: a coarse token is the mean of the present fine tokens of its sub-segment. The sums
// are formed hierarchically — level 1 from the fine rows, level l from the two level-(l-1)
// sub-segments that make up each of its sub-segments — and divided by the counts at the end.
// That is the same mean (the fine tokens, not coarse tokens, are averaged: only the order of
// the additions differs, pairwise summation being the more accurate), but K and V are read
// once instead of once per level.
// Learned: every coarse token is its own weighted sum over the fine tokens of its cell.
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

// Level and in-level index of flat coarse token t (all levels, finest first).
KOKKOS_INLINE_FUNCTION int level_of(const Geometry& g, std::int64_t& t) {
  int l = 1;
  while (t >= g.num_cells(l) * g.p) t -= g.num_cells(l++) * g.p;
  return l;
}

template <class ExecSpace, class Scalar>
struct LearnedLevels {
  using Mem = typename ExecSpace::memory_space;
  using In = Kokkos::View<const Scalar***, Kokkos::LayoutRight, Mem>;
  using Out = Kokkos::View<Scalar***, Kokkos::LayoutRight, Mem>;

  Geometry g;
  In x;    // [bh][n][d] fine tokens
  Out xc;  // [bh][total_coarse_tokens][d]
  LevelWeights<Scalar, Mem> w;
  std::int64_t T;  // coarse tokens per head

  KOKKOS_INLINE_FUNCTION void operator()(const std::int64_t bh, const std::int64_t flat) const {
    std::int64_t t = flat;
    const int l = level_of(g, t);
    const std::int64_t cell = t / g.p, wl = g.cell_size(l);
    const int r = int(t % g.p);
    const int d = int(x.extent(2));
    Scalar* out = &xc(bh, flat, 0);
    const std::int64_t begin = cell * wl, cnt = g.present(begin, wl);
    const Scalar* W = w.weight.data() + g.weight_offset(l, d) + std::int64_t(r) * wl * d;
    const Scalar* b = w.bias.data() + (std::int64_t(l - 1) * g.p + r) * d;
    constexpr int CB = 16;  // channels accumulated in registers over the rows of the cell
    for (int c0 = 0; c0 < d; c0 += CB) {
      const int nc = d - c0 < CB ? d - c0 : CB;
      Scalar a[CB] = {};
      for (std::int64_t j = 0; j < cnt; ++j) {
        const Scalar* row = &x(bh, begin + j, c0);
        const Scalar* wt = W + j * d + c0;
        FMATTN_SIMD
        for (int c = 0; c < nc; ++c) a[c] += wt[c] * row[c];
      }
      // An absent token (empty cell) is never read; it is kept finite.
      for (int c = 0; c < nc; ++c) out[c0 + c] = cnt > 0 ? a[c] + b[c0 + c] : Scalar(0);
    }
  }
};

template <class ExecSpace, class Scalar>
void build_coarse_levels(const ExecSpace& space, const Geometry& g, Downsampling ds,
                         Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> x,
                         Kokkos::View<Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> xc,
                         LevelWeights<Scalar, typename ExecSpace::memory_space> w) {
  using Policy2 = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>, Kokkos::IndexType<std::int64_t>>;
  using Policy3 = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>, Kokkos::IndexType<std::int64_t>>;
  const std::int64_t H = x.extent(0), T = g.total_coarse_tokens();
  const int d = int(x.extent(2));
  if (H == 0 || T == 0) return;
  if (ds == Downsampling::learned) {
    Kokkos::parallel_for("fmattn::coarse_levels::learned", Policy2(space, {0, 0}, {H, T}),
                         LearnedLevels<ExecSpace, Scalar>{g, x, xc, w, T});
    return;
  }
  // Level 1: sums over the fine rows of each sub-segment.
  const std::int64_t seg = g.m / g.p, tokens1 = g.num_cells(1) * g.p;
  Kokkos::parallel_for(
      "fmattn::coarse_levels::average_fine", Policy2(space, {0, 0}, {H, tokens1}),
      KOKKOS_LAMBDA(const std::int64_t h, const std::int64_t t) {
        const std::int64_t begin = t * seg, cnt = g.present(begin, seg);
        Scalar* out = &xc(h, t, 0);
        constexpr int CB = 16;  // whole blocks of channels stay in registers over the rows
        int c0 = 0;
        for (; c0 + CB <= d; c0 += CB) {
          Scalar a[CB] = {};
          for (std::int64_t j = 0; j < cnt; ++j) {
            const Scalar* row = &x(h, begin + j, c0);
            FMATTN_SIMD
            for (int c = 0; c < CB; ++c) a[c] += row[c];
          }
          for (int c = 0; c < CB; ++c) out[c0 + c] = a[c];
        }
        for (int c = c0; c < d; ++c) {
          Scalar a = 0;
          for (std::int64_t j = 0; j < cnt; ++j) a += x(h, begin + j, c);
          out[c] = a;
        }
      });
  // Level l: each sub-segment is the two level-(l-1) sub-segments 2t and 2t+1.
  for (int l = 2; l <= g.L; ++l) {
    const std::int64_t off = g.level_offset(l), below = g.level_offset(l - 1);
    Kokkos::parallel_for(
        "fmattn::coarse_levels::average_merge", Policy3(space, {0, 0, 0}, {H, g.num_cells(l) * g.p, std::int64_t(d)}),
        KOKKOS_LAMBDA(const std::int64_t h, const std::int64_t t, const std::int64_t c) {
          xc(h, off + t, c) = xc(h, below + 2 * t, c) + xc(h, below + 2 * t + 1, c);
        });
  }
  // Means: divide by the counts (absent tokens hold zero sums and stay zero).
  Kokkos::parallel_for(
      "fmattn::coarse_levels::average_normalise", Policy2(space, {0, 0}, {H, T}),
      KOKKOS_LAMBDA(const std::int64_t h, const std::int64_t flat) {
        std::int64_t t = flat;
        const int l = level_of(g, t);
        const double cnt = g.count(Downsampling::average, l, t / g.p, int(t % g.p));
        const Scalar inv = cnt > 0 ? Scalar(1.0 / cnt) : Scalar(0);
        Scalar* out = &xc(h, flat, 0);
        FMATTN_SIMD
        for (int c = 0; c < d; ++c) out[c] *= inv;
      });
}

}  // namespace fmattn
