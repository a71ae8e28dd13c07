// The backward's pairs of fine tiles (attention_backward.hpp): one launch per diagonal of
// (query tile, key tile) pairs, so that each pair adds to rows no other pair of the launch
// touches; diagonal 0 also hands each key its share of the coarse gradients.
#pragma once

#include "kernels/backward_chunk.hpp"
#include "kernels/backward_state.hpp"
#include "kernels/interaction_walk.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

// Adds fine token j's share of the gradients of the coarse tokens made from it, every level, to
// its gradient rows dkr, dvr. On the device shape the thread's vector lanes split the channels
// as when they wrote those rows, so each lane adds to the channels it wrote; on the host one
// SIMD loop runs over them, as before.
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::add_coarse_share(const Member& team, std::int64_t h,
                                                                                   std::int64_t j, Scalar* dkr,
                                                                                   Scalar* dvr) const {
  for (int l = 1; l <= g.L; ++l) {
    const std::int64_t w = g.cell_size(l), cell = j / w, pos = j % w, base = s.coarse_index(l, cell, 0);
    if (opt.downsampling == Downsampling::average) {
      const int r = int(pos / (w / g.p));
      const Scalar inv = Scalar(1.0 / g.count(Downsampling::average, l, cell, r));
      const Scalar* gk = &dkc(h, base + r, 0);
      const Scalar* gv = &dvc(h, base + r, 0);
      for_channels(team, [&](const int c) {
        dkr[c] += inv * gk[c];
        dvr[c] += inv * gv[c];
      });
      continue;
    }
    const std::int64_t off = g.weight_offset(l, d);
    for (int r = 0; r < g.p; ++r) {
      const Scalar* wk = kw.weight.data() + off + (r * w + pos) * d;
      const Scalar* wv = vw.weight.data() + off + (r * w + pos) * d;
      const Scalar* gk = &dkc(h, base + r, 0);
      const Scalar* gv = &dvc(h, base + r, 0);
      for_channels(team, [&](const int c) {
        dkr[c] += wk[c] * gk[c];
        dvr[c] += wv[c] * gv[c];
      });
    }
  }
}

// Tile a's positions [a·tile_rows, ...) inside its block, and its row count (0: no tile).
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION int AttentionBackward<ExecSpace, Scalar>::tile_extent(std::int64_t a, std::int64_t& i0) const {
  const std::int64_t per_block = has_near_blocks(opt.method) ? g.m / tile_rows : 0;
  i0 = a * tile_rows;
  std::int64_t end = i0 + tile_rows;
  if (per_block > 0) {
    const std::int64_t B = a / per_block;
    i0 = B * g.m + (a % per_block) * tile_rows;
    end = i0 + tile_rows;
  }
  if (end > g.n) end = g.n;
  return end > i0 ? int(end - i0) : 0;
}

// Pair (query tile a, key tile a − diagonal) for a = the team's tile. The keys must be seen
// by the queries (the near field of their block for FMA; j <= i for causal attention).
// Diagonal 0 writes dK, dV (plus the coarse shares) and, unless the far pass did, dQ, of
// every tile even when nothing is seen; the other diagonals add (a shard's halo rows, which
// no diagonal 0 reaches, start cleared).
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::operator()(PairTag, const Member& team) const {
  // FMA's tiles lie inside blocks: the shard's query tiles, against the tiles of stored blocks.
  const std::int64_t per_block = has_near_blocks(opt.method) ? g.m / tile_rows : 0;
  const std::int64_t bh = team.league_rank() / pair_tiles,
                     a = s.block_begin * per_block + team.league_rank() % pair_tiles;
  const std::int64_t b = a - diagonal;
  if (b < 0 || (per_block > 0 ? !stores_block(b / per_block) : b >= pair_tiles)) return;
  Tile t = make_tile(team, true);
  std::int64_t j0 = 0;
  t.rows = tile_extent(a, t.i0);
  const int keys = tile_extent(b, j0);
  if (t.rows == 0 || keys == 0) return;
  t.lanes = (t.rows + CB - 1) / CB * CB;
  const bool causal = g.variant == Variant::causal, first = diagonal == 0;
  std::int64_t lo = 0, hi = g.n;
  if (has_near_blocks(opt.method)) g.near_range(t.i0 / g.m, lo, hi);
  if (causal && hi > t.i0 + t.rows) hi = t.i0 + t.rows;
  if (j0 < lo || j0 >= hi) return;  // not a pair of the near field (diagonal 0 always is)
  const std::int64_t j_end = j0 + keys < hi ? j0 + keys : hi;
  const bool live = load_query_tile(team, t, bh);
  const bool write_dq = want_dq && (live || (first && !far_done));
  if (write_dq) clear_rows(team, t.acc, t.rows);
  const auto store_terms = [&](std::int64_t j, int, const Scalar* terms_k, const Scalar* terms_v) {
    Scalar* rk = &dk(bh, key_row(j), 0);
    Scalar* rv = &dv(bh, key_row(j), 0);
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) {
      rk[x] = first ? terms_k[x] : rk[x] + terms_k[x];
      rv[x] = first ? terms_v[x] : rv[x] + terms_v[x];
    });
    if (first && has_far_field(opt.method)) add_coarse_share(team, bh, j, rk, rv);
  };
  if (live) {
    fine_range(team, t, bh, j0, j_end, causal,
               [&](const Chunk& ch) { slot_chunk(team, t, bh, ch, want_dkv, store_terms); });
  } else if (first && want_dkv) {
    // No row of this tile has a nonzero dO: zero terms for the keys of diagonal 0.
    team.team_barrier();
    clear_rows(team, t.acc2, keys);
    clear_rows(team, t.acc3, keys);
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, int(j_end - j0)),
                         [&](const int c) { store_terms(j0 + c, c, &t.acc2(c, 0), &t.acc3(c, 0)); });
  }
  if (!write_dq) return;
  team.team_barrier();
  const bool add = far_done || !first;
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
    Scalar* row = &dq(bh, own_row(t.i0) + r, 0);
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d),
                         [&](const int x) { row[x] = add ? row[x] + t.acc(r, x) : t.acc(r, x); });
  });
}

}  // namespace fmattn::detail
