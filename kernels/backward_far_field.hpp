// The backward's far pass and its reduction (attention_backward.hpp): teams of query tiles
// stream their far-field slots, write dQ and keep the coarse tokens' dK̃, dṼ terms in rows of
// their own window; each coarse token then sums its window rows in team order.
#pragma once

#include "kernels/backward_chunk.hpp"
#include "kernels/backward_state.hpp"
#include "kernels/interaction_walk.hpp"
#include "kernels/simd.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

// Far team: (batch·head, span of blocks). Its window rows start cleared; each tile streams
// its far-field slots and writes its rows of dQ (the pairs add the near field).
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::operator()(FarTag, const Member& team) const {
  const std::int64_t bh = team.league_rank() / teams_per_head, local = team.league_rank() % teams_per_head;
  const std::int64_t T = first_team() + local, team_row0 = local * window_rows, first_pos = T * span;
  Tile t = make_tile(team, true);
  if (want_coarse)
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, window_rows), [&](const int r) {
      Scalar* rk = &pk(bh, team_row0 + r, 0);
      Scalar* rv = &pv(bh, team_row0 + r, 0);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) { rk[x] = rv[x] = Scalar(0); });
    });
  // The window row of far-field slot c, from its coarse-array index.
  const auto window_row = [&](int c) {
    std::int64_t cell = 0;
    int r = 0;
    const int l = stored_level(s, t.slot(c), cell, r);
    return team_row0 + window_offset(l) + (cell - (first_pos / g.cell_size(l) - 3)) * g.p + r;
  };
  const auto add_terms = [&](std::int64_t, int c, const Scalar* terms_k, const Scalar* terms_v) {
    const std::int64_t row = window_row(c);
    Scalar* rk = &pk(bh, row, 0);
    Scalar* rv = &pv(bh, row, 0);
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) {
      rk[x] += terms_k[x];
      rv[x] += terms_v[x];
    });
  };
  const std::int64_t B_end = (T + 1) * blocks_per_team < s.block_end ? (T + 1) * blocks_per_team : s.block_end;
  for (std::int64_t B = T * blocks_per_team > s.block_begin ? T * blocks_per_team : s.block_begin;
       B < B_end && B * g.m < g.n; ++B)
    for (std::int64_t i0 = B * g.m; i0 < (B + 1) * g.m && i0 < g.n; i0 += tile_rows) {
      const std::int64_t block_end = (B + 1) * g.m < g.n ? (B + 1) * g.m : g.n;
      team.team_barrier();
      t.i0 = i0;
      t.rows = int(block_end - i0 < tile_rows ? block_end - i0 : tile_rows);
      t.lanes = (t.rows + CB - 1) / CB * CB;
      const bool live = load_query_tile(team, t, bh);
      if (live) {
        if (want_dq) clear_rows(team, t.acc, t.rows);
        far_field(team, t, bh, 1, g.L, B,
                  [&](const Chunk& ch) { slot_chunk(team, t, bh, ch, want_coarse, add_terms); });
      }
      if (!want_dq) continue;
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
        Scalar* row = &dq(bh, own_row(t.i0) + r, 0);
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d),
                             [&](const int x) { row[x] = live ? t.acc(r, x) : Scalar(0); });
      });
    }
}

// Stored coarse token `flat` (all levels), channels [c_begin, c_end): the sum of its rows in the
// windows of the shard's query teams whose queries may list it (cells within 3 of it), in team
// order. On a shard that is its queries' share of the gradient; ShardedAttention adds the rest.
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::reduce_channels(const std::int64_t bh,
                                                                                  const std::int64_t flat,
                                                                                  const int c_begin,
                                                                                  const int c_end) const {
  std::int64_t cell = 0;
  int r = 0;
  const int l = stored_level(s, flat, cell, r);
  const std::int64_t w = g.cell_size(l), lo = cell - 3 > 0 ? cell - 3 : 0, hi = (cell + 4) * w;
  const std::int64_t T0 = first_team(), T1 = T0 + teams_per_head;
  const std::int64_t T_end = (hi + span - 1) / span < T1 ? (hi + span - 1) / span : T1;
  Scalar* gk = &dkc(bh, flat, 0);
  Scalar* gv = &dvc(bh, flat, 0);
  for (int x = c_begin; x < c_end; ++x) gk[x] = gv[x] = Scalar(0);
  for (std::int64_t T = lo * w / span > T0 ? lo * w / span : T0; T < T_end; ++T) {
    const std::int64_t first = T * span / w - 3;
    if (cell < first || cell >= first + window_cells(l)) continue;
    const std::int64_t row = (T - T0) * window_rows + window_offset(l) + (cell - first) * g.p + r;
    const Scalar* rk = &pk(bh, row, 0);
    const Scalar* rv = &pv(bh, row, 0);
    FMATTN_SIMD
    for (int x = c_begin; x < c_end; ++x) {
      gk[x] += rk[x];
      gv[x] += rv[x];
    }
  }
}

template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::operator()(ReduceTag, const std::int64_t bh,
                                                                             const std::int64_t flat) const {
  reduce_channels(bh, flat, 0, d);
}

template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::operator()(ReduceTag, const std::int64_t bh,
                                                                             const std::int64_t flat,
                                                                             const std::int64_t c) const {
  reduce_channels(bh, flat, int(c), int(c) + 1);
}

}  // namespace fmattn::detail
