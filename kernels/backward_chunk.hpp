// The backward's unit of work (attention_backward.hpp): one query tile against one chunk of
// slots. P and dS are formed once, in scratch, from the forward's log-sum-exp; dQ, and the
// slots' dK and dV terms, are then three products of them (tile_products.hpp).
#pragma once

#include "kernels/backward_state.hpp"
#include "kernels/fast_exp.hpp"
#include "kernels/online_softmax.hpp"
#include "kernels/simd.hpp"
#include "kernels/tile_products.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

// Loads the tile's (s·Q)^T into t.qt and dO^T into t.vt (zero past its rows) and writes the
// delta of its rows. Returns whether any row has a nonzero dO.
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION bool AttentionBackward<ExecSpace, Scalar>::load_query_tile(const Member& team, const Tile& t,
                                                                                  std::int64_t bh) const {
  const Scalar s = Scalar(opt.scale);
  int live = 0;
  if constexpr (Tiles::split_q) {
    // Device shape: a thread per row, its lanes over channels (tiles hold whole rows: no padding).
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(team, t.rows),
        [&](const int r, int& any) {
          const Scalar* qi = q(bh, own_row(t.i0) + r);
          const Scalar* gi = &dout(bh, own_row(t.i0) + r, 0);
          const Scalar* o = &out(bh, own_row(t.i0) + r, 0);
          Scalar sum = Scalar(0);
          int nonzero = 0;
          Kokkos::parallel_reduce(
              Kokkos::ThreadVectorRange(team, d),
              [&](const int x, Scalar& partial) {
                t.qt(x, r) = s * qi[x];
                t.vt(x, r) = gi[x];
                partial += gi[x] * o[x];
              },
              sum);
          Kokkos::parallel_reduce(
              Kokkos::ThreadVectorRange(team, d), [&](const int x, int& nz) { nz = nz || gi[x] != Scalar(0); },
              Kokkos::LOr<int>(nonzero));
          Kokkos::single(Kokkos::PerThread(team), [&]() { delta(bh, own_row(t.i0) + r) = sum; });
          any = any || nonzero;
        },
        Kokkos::LOr<int>(live));
    return live != 0;
  }
  Kokkos::parallel_reduce(
      Kokkos::TeamThreadRange(team, t.lanes),
      [&](const int r, int& any) {
        const bool row = r < t.rows;
        const Scalar* qi = row ? q(bh, own_row(t.i0) + r) : nullptr;
        const Scalar* gi = row ? &dout(bh, own_row(t.i0) + r, 0) : nullptr;
        for (int x = 0; x < d; ++x) {
          t.qt(x, r) = row ? s * qi[x] : Scalar(0);
          t.vt(x, r) = row ? gi[x] : Scalar(0);
        }
        if (!row) return;
        const Scalar* o = &out(bh, own_row(t.i0) + r, 0);
        Scalar sum = 0;
        bool nonzero = false;
        for (int x = 0; x < d; ++x) {
          sum += gi[x] * o[x];
          nonzero = nonzero || gi[x] != Scalar(0);
        }
        Kokkos::single(Kokkos::PerThread(team), [&]() { delta(bh, own_row(t.i0) + r) = sum; });
        any = any || nonzero;
      },
      Kokkos::LOr<int>(live));
  return live != 0;
}

// Scores of the lane block of queries from r0 (t.qt, t.vt) against slots [c0, c_end): S^T
// plus the slot log-weights into t.st, dP^T into t.dpt.
template <class ExecSpace, class Scalar>
template <int NK>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::query_lane_scores(const Tile& t, int r0,
                                                                                    const Scalar* krows, int kstride,
                                                                                    const Scalar* vrows, int vstride,
                                                                                    int c0, int c_end) const {
  lane_blocks<NK, CB>(&t.st(0, r0), LQ, &t.logw(0), krows, kstride, &t.qt(0, r0), LQ, d, c0, c_end);
  lane_blocks<NK, CB>(&t.dpt(0, r0), LQ, nullptr, vrows, vstride, &t.vt(0, r0), LQ, d, c0, c_end);
}

// Turns the lane block from r0 of t.st (S^T + log-weights) and t.dpt (dP^T), slots
// [0, c_end), into P^T (t.st) and s·dS^T (t.dpt): P = exp(S − lse) on the first seen(r) slots
// of lane r, 0 elsewhere.
template <class ExecSpace, class Scalar>
template <class Seen>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::query_lane_softmax(const Tile& t, std::int64_t bh,
                                                                                     int r0, int c_end,
                                                                                     const Seen& seen) const {
  const Scalar s = Scalar(opt.scale);
  Scalar l[CB], dl[CB];
  int vis[CB];
  for (int cc = 0; cc < CB; ++cc) {
    const bool row = r0 + cc < t.rows;
    l[cc] = row ? forward_lse(bh, own_row(t.i0) + r0 + cc) : Scalar(0);
    dl[cc] = row ? delta(bh, own_row(t.i0) + r0 + cc) : Scalar(0);
    vis[cc] = row ? seen(r0 + cc) : 0;
  }
  for (int c = 0; c < c_end; ++c) {
    Scalar* srow = &t.st(c, r0);
    Scalar* drow = &t.dpt(c, r0);
    FMATTN_SIMD
    for (int cc = 0; cc < CB; ++cc) {
      const Scalar p = c < vis[cc] ? exp_nonpositive(Scalar(srow[cc] - l[cc])) : Scalar(0);
      srow[cc] = p;
      drow[cc] = s * p * (drow[cc] - dl[cc]);
    }
  }
}

template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::clear_rows(const Member& team,
                                                                             const typename Tiles::Mat& m,
                                                                             int rows) const {
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows), [&](const int r) {
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, int(m.extent(1))), [&](const int x) { m(r, x) = 0; });
  });
}

// One (query tile, chunk of slots) pair: P and dS once, then dQ += dS·K into t.acc for the
// tile's rows and, when `slots` is set, the slots' terms dS^T·Q into t.acc2 and P^T·dO into
// t.acc3 (contracted over the tile's rows, read in place), which slot_rows(position, c,
// terms_k, terms_v) then stores (position: the key's, for fine chunks), in the tile shape of
// the backend.
template <class ExecSpace, class Scalar>
template <class SlotRows>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::slot_chunk(const Member& team, const Tile& t,
                                                                             std::int64_t bh, const Chunk& ch,
                                                                             bool slots,
                                                                             const SlotRows& slot_rows) const {
  if constexpr (Tiles::split_q)
    slot_chunk_split_q(team, t, bh, ch, slots, slot_rows);
  else
    slot_chunk_blocked(team, t, bh, ch, slots, slot_rows);
}

// The device shape, as the forward's (online_softmax.hpp): each thread owns whole query rows,
// its vector lanes run over the row's slots for P and dS and then over channels for dQ; then
// each thread owns whole slots, its lanes over channels for their dK and dV terms, summed over
// the rows in order. Every phase reads what other lanes wrote only after a team barrier.
template <class ExecSpace, class Scalar>
template <class SlotRows>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::slot_chunk_split_q(const Member& team, const Tile& t,
                                                                                     std::int64_t bh, const Chunk& ch,
                                                                                     bool slots,
                                                                                     const SlotRows& slot_rows) const {
  const Scalar s = Scalar(opt.scale);
  team.team_barrier();
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
    const int len = visible(t, ch, r);
    const Scalar l = forward_lse(bh, own_row(t.i0) + r), dl = delta(bh, own_row(t.i0) + r);
    // Slots the row does not see hold zero: the slot terms below run over all rows.
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, ch.len), [&](const int c) {
      Scalar p = Scalar(0), ds = Scalar(0);
      if (c < len) {
        p = exp_nonpositive(
            Scalar(row_score(&t.qt(0, r), LQ, ch.kbase + std::int64_t(c) * ch.kstride, t.logw(c), d) - l));
        ds = s * p * (row_score(&t.vt(0, r), LQ, ch.vbase + std::int64_t(c) * ch.vstride, Scalar(0), d) - dl);
      }
      t.st(c, r) = p;
      t.dpt(c, r) = ds;
    });
  });
  team.team_barrier();
  if (want_dq)
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
      const int len = visible(t, ch, r);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) {
        row_accumulate(&t.acc(r, x), Scalar(1), &t.dpt(0, r), LQ, ch.kbase + x, ch.kstride, len);
      });
    });
  if (!slots) return;
  const Scalar* qrows = q(bh, own_row(t.i0));
  const Scalar* grows = &dout(bh, own_row(t.i0), 0);
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, ch.len), [&](const int c) {
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) {
      t.acc2(c, x) = Scalar(0);
      t.acc3(c, x) = Scalar(0);
      row_accumulate(&t.acc2(c, x), Scalar(1), &t.dpt(c, 0), 1, qrows + x, d, t.rows);
      row_accumulate(&t.acc3(c, x), Scalar(1), &t.st(c, 0), 1, grows + x, d, t.rows);
    });
  });
  team.team_barrier();
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, ch.len),
                       [&](const int c) { slot_rows(ch.pos0 + c, c, &t.acc2(c, 0), &t.acc3(c, 0)); });
}

// The host shape: register blocks of query lanes (causal fine chunks: a lane block scores only
// the slots its rows see), one thread per team.
template <class ExecSpace, class Scalar>
template <class SlotRows>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::slot_chunk_blocked(const Member& team, const Tile& t,
                                                                                     std::int64_t bh, const Chunk& ch,
                                                                                     bool slots,
                                                                                     const SlotRows& slot_rows) const {
  team.team_barrier();
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.lanes / CB), [&](const int lane_block) {
    const int r0 = lane_block * CB;
    const int len = seen_by_rows_before(t, ch, r0 + CB);
    query_lane_scores<KB>(t, r0, ch.kbase, ch.kstride, ch.vbase, ch.vstride, 0, len);
    query_lane_softmax(t, bh, r0, len, [&](int r) { return visible(t, ch, r); });
    // Slots these lanes do not see are read by the products over rows (blocks of RB rows
    // reach into the next lanes, the slot terms run over all lanes): zero.
    for (int c = len; c < ch.len; ++c) {
      Scalar* srow = &t.st(c, r0);
      Scalar* drow = &t.dpt(c, r0);
      FMATTN_SIMD
      for (int cc = 0; cc < CB; ++cc) srow[cc] = drow[cc] = Scalar(0);
    }
  });
  if (slots) {
    clear_rows(team, t.acc2, ch.len);
    clear_rows(team, t.acc3, ch.len);
  }
  team.team_barrier();
  const int ld = Tiles::row_length(d);
  if (want_dq)
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, (t.rows + RB - 1) / RB), [&](const int block) {
      const int r0 = block * RB;
      row_blocks<RB, CB>(&t.acc(0, 0), ld, nullptr, &t.dpt(0, 0), 1, LQ, ch.kbase, ch.kstride, d, true, r0,
                         r0 + RB < t.rows ? r0 + RB : t.rows,
                         [&](int, int r_end) { return Kokkos::pair<int, int>(0, seen_by_rows_before(t, ch, r_end)); });
    });
  if (!slots) return;
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, (ch.len + RB - 1) / RB), [&](const int block) {
    const int c0 = block * RB, c_end = c0 + RB < ch.len ? c0 + RB : ch.len;
    const auto rows = [&](int, int) { return Kokkos::pair<int, int>(0, t.rows); };
    row_blocks<RB, CB>(&t.acc2(0, 0), ld, nullptr, &t.dpt(0, 0), LQ, 1, q(bh, own_row(t.i0)), d, d, false, c0, c_end,
                       rows);
    row_blocks<RB, CB>(&t.acc3(0, 0), ld, nullptr, &t.st(0, 0), LQ, 1, &dout(bh, own_row(t.i0), 0), d, d, false, c0,
                       c_end, rows);
  });
  team.team_barrier();
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, ch.len),
                       [&](const int c) { slot_rows(ch.pos0 + c, c, &t.acc2(c, 0), &t.acc3(c, 0)); });
}

}  // namespace fmattn::detail
