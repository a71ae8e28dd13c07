// The upward pass (spec §2): coarse keys and values of every level, stored in one View per
// quantity with the layout of a Shard (Geometry's level offsets for a whole sequence).
//
// It runs in steps so that a sharded sequence can complete the cells its ranks share in
// between: coarse_partial_sums() sums one level over the fine tokens this shard owns,
// finish_coarse() turns complete sums into coarse tokens. build_coarse_levels() does all of it
// for a whole sequence.
//
// Average: a coarse token is the mean of the present fine tokens of its sub-segment. The sums
// are formed hierarchically — level 1 from the fine rows, level l from the two level-(l-1)
// sub-segments that make up each of its sub-segments — and divided by the counts at the end.
// That is the same mean (the fine tokens, not coarse tokens, are averaged: only the order of
// the additions differs, pairwise summation being the more accurate), but K and V are read
// once instead of once per level.
// Learned: every coarse token is its own weighted sum over the fine tokens of its cell.
#pragma once

#include <fmattn/core/geometry.hpp>
#include <fmattn/core/shard.hpp>
#include "kernels/shard_view.hpp"
#include "kernels/simd.hpp"
#include "kernels/tile_traits.hpp"

#include <Kokkos_Core.hpp>

namespace fmattn::detail {

// Learned downsampling parameters of K or V for all levels, flattened with
// Geometry::weight_offset (weight [p][w_l][d] per level) and bias [L][p][d].
template <class Scalar, class MemSpace>
struct LevelWeights {
  Kokkos::View<const Scalar*, MemSpace> weight;
  Kokkos::View<const Scalar*, MemSpace> bias;
};

// Level and in-level index of flat coarse token t (all levels, finest first) in Geometry's
// layout.
KOKKOS_INLINE_FUNCTION int level_of(const Geometry& g, std::int64_t& t) {
  int l = 1;
  while (t >= g.num_cells(l) * g.p) t -= g.num_cells(l++) * g.p;
  return l;
}

// Level, cell and token of stored coarse token t of a shard.
template <class MemSpace>
KOKKOS_INLINE_FUNCTION int stored_level(const ShardView<MemSpace>& s, std::int64_t t, std::int64_t& cell, int& r) {
  int l = 1;
  while (t >= s.coarse_base(l + 1)) ++l;
  t -= s.coarse_base(l);
  cell = s.cell_begin(l) + t / s.p;
  r = int(t % s.p);
  return l;
}

// Learned coarse tokens: every one a weighted sum over the rows of its cell. A cell's rows are
// summed in `segments(w_l)` fixed segments, each from zero, and the segment sums are added in
// segment order: the same arithmetic whatever the backend, the thread count or the tile shape.
// The host shape gives each coarse token to one thread (segments in turn, channels in vector
// registers); the device shape gives it to a team, a segment to each thread, vector lanes over
// channels, so that no thread sums a whole cell (N/2 rows at the top level).
template <class ExecSpace, class Scalar>
struct LearnedLevels {
  using Mem = typename ExecSpace::memory_space;
  using In = Kokkos::View<const Scalar***, Kokkos::LayoutRight, Mem>;
  using Out = Kokkos::View<Scalar***, Kokkos::LayoutRight, Mem>;
  using Member = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  using Partials =
      Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecSpace::scratch_memory_space, Kokkos::MemoryUnmanaged>;
  static constexpr int max_segments = 32;
  static constexpr std::int64_t min_segment_rows = 256;
  static constexpr int CB = 16;  // host shape: channels accumulated in registers

  Geometry g;
  ShardView<Mem> s;
  In x;    // [bh][stored fine rows][d], row 0 at s.key_begin
  Out xc;  // [bh][stored coarse tokens][d]
  LevelWeights<Scalar, Mem> w;
  std::int64_t first = 0, tokens = 1;  // the launch's stored coarse tokens [first, first + tokens)

  KOKKOS_INLINE_FUNCTION static int segments(std::int64_t wl) {
    const std::int64_t k = wl / min_segment_rows;
    return k < 1 ? 1 : k > max_segments ? max_segments : int(k);
  }

  // Coarse token t's cell, its owned rows and its weights.
  struct Cell {
    std::int64_t cell = 0, wl = 1, begin = 0, end = 0;
    const Scalar* W = nullptr;
  };
  KOKKOS_INLINE_FUNCTION Cell locate(std::int64_t t) const {
    Cell c;
    int r;
    const int l = stored_level(s, t, c.cell, r);
    c.wl = g.cell_size(l);
    // The cell's fine tokens that this shard owns.
    const std::int64_t own0 = s.token_begin(g), own1 = s.token_end(g);
    c.begin = c.cell * c.wl > own0 ? c.cell * c.wl : own0;
    c.end = (c.cell + 1) * c.wl < own1 ? (c.cell + 1) * c.wl : own1;
    const int d = int(x.extent(2));
    c.W = w.weight.data() + g.weight_offset(l, d) + std::int64_t(r) * c.wl * d;
    return c;
  }

  // The owned rows of segment k of the cell.
  KOKKOS_INLINE_FUNCTION static void segment_rows(const Cell& c, int k, std::int64_t& lo, std::int64_t& hi) {
    const int n = segments(c.wl);
    const std::int64_t len = (c.wl + n - 1) / n, a = c.cell * c.wl + k * len, b = a + len;
    lo = a > c.begin ? a : c.begin;
    hi = b < c.end ? b : c.end;
  }

  // Host shape: coarse token first + t of head bh, all channels.
  KOKKOS_INLINE_FUNCTION void operator()(const std::int64_t bh, const std::int64_t t) const {
    const Cell c = locate(first + t);
    const int d = int(x.extent(2));
    Scalar* out = &xc(bh, first + t, 0);
    for (int c0 = 0; c0 < d; c0 += CB) {
      const int nc = d - c0 < CB ? d - c0 : CB;
      Scalar total[CB] = {};
      for (int k = 0; k < segments(c.wl); ++k) {
        std::int64_t lo, hi;
        segment_rows(c, k, lo, hi);
        Scalar a[CB] = {};
        for (std::int64_t j = lo; j < hi; ++j) {
          const Scalar* row = &x(bh, j - s.key_begin, c0);
          const Scalar* wt = c.W + (j - c.cell * c.wl) * d + c0;
          FMATTN_SIMD
          for (int cc = 0; cc < nc; ++cc) a[cc] += wt[cc] * row[cc];
        }
        for (int cc = 0; cc < nc; ++cc) total[cc] += a[cc];
      }
      for (int cc = 0; cc < nc; ++cc) out[c0 + cc] = total[cc];
    }
  }

  // Device shape: one team per (head, coarse token).
  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    const std::int64_t bh = team.league_rank() / tokens, t = first + team.league_rank() % tokens;
    const Cell c = locate(t);
    const int d = int(x.extent(2)), n = segments(c.wl);
    const Partials part(team.team_scratch(0), max_segments, d);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, n), [&](const int k) {
      std::int64_t lo, hi;
      segment_rows(c, k, lo, hi);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int cc) {
        Scalar a = 0;
        for (std::int64_t j = lo; j < hi; ++j) a += c.W[(j - c.cell * c.wl) * d + cc] * x(bh, j - s.key_begin, cc);
        part(k, cc) = a;
      });
    });
    team.team_barrier();
    Scalar* out = &xc(bh, t, 0);
    Kokkos::parallel_for(Kokkos::TeamVectorRange(team, d), [&](const int cc) {
      Scalar total = 0;
      for (int k = 0; k < n; ++k) total += part(k, cc);
      out[cc] = total;
    });
  }
};

// Level l's sums over the fine tokens this shard owns, for every stored cell of the level:
// plain sums (average) or weighted sums without bias (learned). Average sums are built from
// level l-1, taking only the sub-segments of cells this shard owns (holds the first token of):
// a sharded run completes level l-1 first, so every sum is formed from the same two halves
// as on one rank (and is bitwise the same).
template <class ExecSpace, class Scalar>
void coarse_partial_sums(const ExecSpace& space, const Geometry& g, const Shard& s,
                         const ShardLevels<typename ExecSpace::memory_space>& levels, Downsampling ds, int l,
                         Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> x,
                         Kokkos::View<Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> xc,
                         LevelWeights<Scalar, typename ExecSpace::memory_space> w) {
  using Policy2 = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>, Kokkos::IndexType<std::int64_t>>;
  using Policy3 = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>, Kokkos::IndexType<std::int64_t>>;
  const std::int64_t H = x.extent(0), tokens = (s.cell_end[l] - s.cell_begin[l]) * g.p;
  const int d = int(x.extent(2));
  if (H == 0 || tokens == 0) return;
  const std::int64_t own0 = s.token_begin(g), own1 = s.token_end(g), first = s.coarse_base[l];
  const std::int64_t key0 = s.key_begin, cell0 = s.cell_begin[l];
  if (ds == Downsampling::learned) {
    using F = LearnedLevels<ExecSpace, Scalar>;
    const F f{g, shard_view(s, levels), x, xc, w, first, tokens};
    if constexpr (TileTraits<ExecSpace, Scalar>::channels_in_parallel) {
      Kokkos::parallel_for("fmattn::coarse_levels::learned",
                           device_team_policy<Scalar, Kokkos::TeamPolicy<ExecSpace>>(
                               space, H * tokens, f, F::Partials::shmem_size(F::max_segments, d), 0),
                           f);
    } else {
      Kokkos::parallel_for("fmattn::coarse_levels::learned", Policy2(space, {0, 0}, {H, tokens}), f);
    }
    return;
  }
  if (l == 1) {
    // Sums over the own fine rows of each sub-segment (level-1 cells are fine blocks, so a
    // shard owns each of its cells whole or not at all).
    const std::int64_t seg = g.m / g.p;
    Kokkos::parallel_for(
        "fmattn::coarse_levels::average_fine", Policy2(space, {0, 0}, {H, tokens}),
        KOKKOS_LAMBDA(const std::int64_t h, const std::int64_t t) {
          const std::int64_t start = cell0 * g.p * seg + t * seg;
          const std::int64_t begin = start > own0 ? start : own0;
          const std::int64_t end = start + seg < own1 ? start + seg : own1;
          const std::int64_t cnt = end > begin ? end - begin : 0;
          const Scalar* rows = cnt > 0 ? &x(h, begin - key0, 0) : nullptr;
          Scalar* out = &xc(h, first + t, 0);
          constexpr int CB = 16;  // whole blocks of channels stay in registers over the rows
          int c0 = 0;
          for (; c0 + CB <= d; c0 += CB) {
            Scalar a[CB] = {};
            for (std::int64_t j = 0; j < cnt; ++j) {
              const Scalar* row = rows + j * d + c0;
              FMATTN_SIMD
              for (int c = 0; c < CB; ++c) a[c] += row[c];
            }
            for (int c = 0; c < CB; ++c) out[c0 + c] = a[c];
          }
          for (int c = c0; c < d; ++c) {
            Scalar a = 0;
            for (std::int64_t j = 0; j < cnt; ++j) a += rows[j * d + c];
            out[c] = a;
          }
        });
    return;
  }
  // Each sub-segment of level l is the two level-(l-1) sub-segments 2t and 2t+1 (global flat
  // indices); those of cells this shard does not own count as zero.
  const std::int64_t below = g.cell_size(l - 1), cell0_below = s.cell_begin[l - 1], first_below = s.coarse_base[l - 1];
  Kokkos::parallel_for(
      "fmattn::coarse_levels::average_merge", Policy3(space, {0, 0, 0}, {H, tokens, std::int64_t(d)}),
      KOKKOS_LAMBDA(const std::int64_t h, const std::int64_t t, const std::int64_t c) {
        const std::int64_t flat = cell0 * g.p + t;
        Scalar sum = 0;
        for (std::int64_t child = 2 * flat; child <= 2 * flat + 1; ++child) {
          const std::int64_t cell = child / g.p;
          if (cell * below >= own0 && cell * below < own1)
            sum += xc(h, first_below + (cell - cell0_below) * g.p + child % g.p, c);
        }
        xc(h, first + t, c) = sum;
      });
}

// Complete sums → coarse tokens: means (average) or sums plus bias (learned); absent tokens
// (count 0) are zero, never read.
template <class ExecSpace, class Scalar>
void finish_coarse(const ExecSpace& space, const Geometry& g, const Shard& s,
                   const ShardLevels<typename ExecSpace::memory_space>& levels, Downsampling ds,
                   Kokkos::View<Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> xc,
                   LevelWeights<Scalar, typename ExecSpace::memory_space> w) {
  using Policy2 = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>, Kokkos::IndexType<std::int64_t>>;
  const std::int64_t H = xc.extent(0), T = s.coarse_tokens(g);
  const int d = int(xc.extent(2));
  if (H == 0 || T == 0) return;
  const ShardView<typename ExecSpace::memory_space> sv = shard_view(s, levels);
  Kokkos::parallel_for(
      "fmattn::coarse_levels::finish", Policy2(space, {0, 0}, {H, T}),
      KOKKOS_LAMBDA(const std::int64_t h, const std::int64_t t) {
        std::int64_t cell;
        int r;
        const int l = stored_level(sv, t, cell, r);
        const double cnt = g.count(ds, l, cell, r);
        Scalar* out = &xc(h, t, 0);
        if (ds == Downsampling::average) {
          const Scalar inv = cnt > 0 ? Scalar(1.0 / cnt) : Scalar(0);
          FMATTN_SIMD
          for (int c = 0; c < d; ++c) out[c] *= inv;
        } else {
          const Scalar* b = w.bias.data() + (std::int64_t(l - 1) * g.p + r) * d;
          for (int c = 0; c < d; ++c) out[c] = cnt > 0 ? out[c] + b[c] : Scalar(0);
        }
      });
}

template <class ExecSpace, class Scalar>
void build_coarse_levels(const ExecSpace& space, const Geometry& g, const Shard& s,
                         const ShardLevels<typename ExecSpace::memory_space>& levels, Downsampling ds,
                         Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> x,
                         Kokkos::View<Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> xc,
                         LevelWeights<Scalar, typename ExecSpace::memory_space> w) {
  for (int l = 1; l <= g.L; ++l) coarse_partial_sums<ExecSpace, Scalar>(space, g, s, levels, ds, l, x, xc, w);
  finish_coarse<ExecSpace, Scalar>(space, g, s, levels, ds, xc, w);
}

}  // namespace fmattn::detail
