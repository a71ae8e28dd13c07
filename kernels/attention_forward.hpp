// The fused attention evaluation: one team per (batch·head, query tile). A tile's queries lie in
// one fine block, so they share their interaction lists at every level (spec §3); the tile
// streams its fine key range and its coarse slots through team scratch in chunks and keeps a
// flash-style online softmax (spec §4), so no n×n or n×(m+pL) buffer exists. The exact
// baseline is the same kernel with the whole allowed key range and no coarse slots.
//
// The linear variant (spec §8) runs the same kernel twice: first over the coarse queries of
// each cell (their level's far field only, keeping unnormalised partial sums), then over the
// fine queries (near field), merging each row's partial sums of every level by log-sum-exp.
#pragma once

#include <fmattn/core/geometry.hpp>
#include <fmattn/core/options.hpp>
#include <fmattn/core/shard.hpp>

#include "kernels/attention_tiles.hpp"
#include "kernels/interaction_walk.hpp"
#include "kernels/kokkos_compat.hpp"
#include "kernels/online_softmax.hpp"

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>

namespace fmattn::detail {

// Fine queries: near field, then the far field streamed (O(n log n)) or merged from the
// coarse queries' partial sums (linear variant); normalised output.
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionTiles<ExecSpace, Scalar>::fine_tile(const Member& team) const {
  const std::int64_t bh = (league0 + team.league_rank()) / tiles_per_head;
  const std::int64_t tile = (league0 + team.league_rank()) % tiles_per_head;
  const std::int64_t B = s.block_begin + tile / tiles_per_block;
  Tile t = make_tile(team);
  t.i0 = B * g.m + (tile % tiles_per_block) * Tq;
  const std::int64_t block_end = (B + 1) * g.m < g.n ? (B + 1) * g.m : g.n;
  if (t.i0 >= block_end) return;
  t.rows = int(block_end - t.i0 < Tq ? block_end - t.i0 : Tq);
  const std::int64_t row0 = t.i0 - s.token_begin(g);
  load_queries(team, t, [&](int r) { return q(bh, row0 + r); });

  const bool causal = g.variant == Variant::causal;
  std::int64_t lo = 0, hi = g.n;
  if (has_near_blocks(opt.method)) g.near_range(B, lo, hi);
  if (causal && hi > t.i0 + t.rows) hi = t.i0 + t.rows;
  const auto softmax = [&](const Chunk& ch) { process_chunk(team, t, ch); };
  fine_range(team, t, bh, lo, hi, causal, softmax);

  if (has_far_field(opt.method)) {
    double sink = (B == 0 && opt.boundary == Boundary::zero_sink) ? double(g.m) : 0.0;  // block left of the start
    if (opt.coarse_queries) {
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
        const std::int64_t i = t.i0 + r;
        for (int l = 1; l <= g.L; ++l) {
          const std::int64_t w = g.cell_size(l);
          const std::int64_t idx = s.coarse_index(l, i / w, int((i % w) / (w / g.p)));
          if (part.den(bh, idx) > Scalar(0)) merge(team, t, r, part.max(bh, idx), part.den(bh, idx), part.num(bh, idx));
        }
      });
    } else {
      sink += far_field(team, t, bh, 1, g.L, B, softmax);
    }
    add_sink(team, t, sink);
  }
  team.team_barrier();
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
    const Scalar inv = Scalar(1) / t.rsum(r);
    Scalar* orow = o(bh, row0 + r);
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) { orow[x] = t.acc(r, x) * inv; });
    if (lse.extent(0))
      Kokkos::single(Kokkos::PerThread(team),
                     [&]() { lse(bh, row0 + r) = t.rmax(r) + Scalar(compat::log(double(t.rsum(r)))); });
  });
}

// Coarse queries of one cell at one level (linear variant): that level's far field only,
// written as partial sums.
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionTiles<ExecSpace, Scalar>::coarse_tile(const Member& team) const {
  const std::int64_t bh = team.league_rank() / tiles_per_head;
  std::int64_t cell = (team.league_rank() % tiles_per_head) / tiles_per_cell;
  const int sub = int((team.league_rank() % tiles_per_head) % tiles_per_cell);
  int l = 1;
  while (cell >= g.num_cells(l)) cell -= g.num_cells(l++);
  if (cell * g.cell_size(l) >= g.n) return;  // no present token in this cell
  Tile t = make_tile(team);
  t.i0 = 0;
  t.rows = g.p - sub * Tq < Tq ? g.p - sub * Tq : Tq;
  const std::int64_t row0 = s.coarse_index(l, cell, sub * Tq);
  load_queries(team, t, [&](int r) { return qc(bh, row0 + r); });
  add_sink(team, t, far_field(team, t, bh, l, l, cell, [&](const Chunk& ch) { process_chunk(team, t, ch); }));
  team.team_barrier();
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
    Scalar* nrow = part.num(bh, row0 + r);
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) { nrow[x] = t.acc(r, x); });
    Kokkos::single(Kokkos::PerThread(team), [&]() {
      part.max(bh, row0 + r) = t.rmax(r);
      part.den(bh, row0 + r) = t.rsum(r);
    });
  });
}

template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionTiles<ExecSpace, Scalar>::operator()(const Member& team) const {
  if (coarse_pass)
    coarse_tile(team);
  else
    fine_tile(team);
}

// out = attention(q, k, v) for all batch·heads: FMA when opt.method is fma (kc, vc hold the
// coarse levels; with opt.coarse_queries also qc, the coarse queries, and `part` the partial
// sums workspace), its near field alone for local, exact attention otherwise. With `progress`, the fine tiles run in up
// to `progress_steps` launches and progress(fraction done) is called after each. A non-empty `lse` receives each row's
// log-sum-exp (log of the softmax denominator), which the backward needs.
inline constexpr int progress_steps = 100;

template <class ExecSpace, class Scalar>
void evaluate_attention(
    const ExecSpace& space, const Geometry& g, const Shard& shard,
    const ShardLevels<typename ExecSpace::memory_space>& levels, const AttentionOptions& opt,
    typename AttentionTiles<ExecSpace, Scalar>::In q, typename AttentionTiles<ExecSpace, Scalar>::In k,
    typename AttentionTiles<ExecSpace, Scalar>::In v, typename AttentionTiles<ExecSpace, Scalar>::In qc,
    typename AttentionTiles<ExecSpace, Scalar>::In kc, typename AttentionTiles<ExecSpace, Scalar>::In vc,
    const Partials<Scalar, typename ExecSpace::memory_space>& part, typename AttentionTiles<ExecSpace, Scalar>::Out out,
    const std::function<void(double)>& progress = {},
    Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecSpace::memory_space> lse = {}) {
  using K = AttentionTiles<ExecSpace, Scalar>;
  K f;
  f.g = g;
  f.s = shard_view(shard, levels);
  f.opt = opt;
  f.q = q;
  f.k = k;
  f.v = v;
  f.qc = qc;
  f.kc = kc;
  f.vc = vc;
  f.part = part;
  f.o = out;
  f.lse = lse;
  f.d = int(q.extent(2));
  f.dp = K::padded_dim(f.d);
  const std::int64_t heads = std::int64_t(q.extent(0));
  const std::size_t scratch = K::scratch_bytes(f.d);
  if (heads == 0) return;
  f.scratch_level = scratch <= std::size_t(K::Policy::scratch_size_max(0)) ? 0 : 1;
  if (opt.method == Method::fma && opt.coarse_queries && g.L > 0) {
    std::int64_t cells = 0;
    for (int l = 1; l <= g.L; ++l) cells += g.num_cells(l);
    f.coarse_pass = true;
    f.tiles_per_cell = (g.p + K::Tq - 1) / K::Tq;
    f.tiles_per_head = cells * f.tiles_per_cell;
    Kokkos::parallel_for("fmattn::attention::coarse_queries",
                         K::policy(space, heads * f.tiles_per_head, f, scratch, f.scratch_level), f);
    f.coarse_pass = false;
  }
  f.tiles_per_block = (g.m + K::Tq - 1) / K::Tq;
  f.tiles_per_head = (shard.block_end - shard.block_begin) * f.tiles_per_block;
  const std::int64_t tiles = heads * f.tiles_per_head;
  // Pieces of at least 16 tiles per unit of concurrency, so that the launches and the fence
  // after each cost next to nothing against the tiles themselves.
  const std::int64_t piece = progress ? std::max<std::int64_t>(16 * std::int64_t(space.concurrency()),
                                                               (tiles + progress_steps - 1) / progress_steps)
                                      : tiles;
  for (f.league0 = 0; f.league0 < tiles; f.league0 += piece) {
    Kokkos::parallel_for("fmattn::attention::tiles",
                         K::policy(space, std::min(piece, tiles - f.league0), f, scratch, f.scratch_level), f);
    if (progress) {
      space.fence();
      progress(double(std::min(f.league0 + piece, tiles)) / double(tiles));
    }
  }
}

}  // namespace fmattn::detail
