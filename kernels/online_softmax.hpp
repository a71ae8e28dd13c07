// The online softmax of a tile (spec §4), flash-style: each row keeps its running max and
// denominator and an unnormalised output; every chunk of slots (fine keys or coarse tokens,
// each with a log-weight) is scored against the tile's queries, then folded in with a rescale
// of what came before. No row's scores are ever held beyond one chunk.
#pragma once

#include "kernels/attention_tiles.hpp"
#include "kernels/fast_exp.hpp"
#include "kernels/kokkos_compat.hpp"
#include "kernels/simd.hpp"
#include "kernels/tile_products.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

// Loads `rows` query rows (row r from qrow(r)) scaled and transposed, clears the softmax
// state and the accumulators. Query lanes from `rows` to `lanes` are zero; lane blocks past
// them are never computed (a coarse-query tile has only p rows).
template <class ExecSpace, class Scalar>
template <class RowPtr>
KOKKOS_INLINE_FUNCTION void AttentionTiles<ExecSpace, Scalar>::load_queries(const Member& team, Tile& t,
                                                                            RowPtr qrow) const {
  const Scalar scale = Scalar(opt.scale);
  t.lanes = (t.rows + CB - 1) / CB * CB;
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.lanes), [&](const int r) {
    const Scalar* row = r < t.rows ? qrow(r) : nullptr;
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d),
                         [&](const int x) { t.qt(x, r) = row ? scale * row[x] : Scalar(0); });
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, dp), [&](const int x) { t.acc(r, x) = Scalar(0); });
    Kokkos::single(Kokkos::PerThread(team), [&]() {
      t.rmax(r) = Scalar(0);
      t.rsum(r) = Scalar(0);
    });
  });
}

// Folds partial sums (max m, denominator den, numerator num[d] relative to m) into row r.
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionTiles<ExecSpace, Scalar>::merge(const Member& team, const Tile& t, int r, Scalar m,
                                                                     Scalar den, const Scalar* num) const {
  const Scalar old_sum = t.rsum(r);
  const Scalar new_max = (old_sum > Scalar(0) && t.rmax(r) > m) ? t.rmax(r) : m;
  const Scalar keep = old_sum > Scalar(0) ? exp_nonpositive(Scalar(t.rmax(r) - new_max)) : Scalar(0);
  const Scalar take = exp_nonpositive(Scalar(m - new_max));
  Scalar* arow = &t.acc(r, 0);
  if (num) {
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d),
                         [&](const int x) { arow[x] = arow[x] * keep + take * num[x]; });
  } else {
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) { arow[x] *= keep; });
  }
  Kokkos::single(Kokkos::PerThread(team), [&]() {
    t.rmax(r) = new_max;
    t.rsum(r) = old_sum * keep + den * take;
  });
}

// Slots of row r seen in a chunk: a prefix (causal fine chunks are in position order).
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION int AttentionTiles<ExecSpace, Scalar>::visible(const Tile& t, const Chunk& ch, int r) const {
  if (!ch.causal) return ch.len;
  const std::int64_t v = t.i0 + r - ch.pos0 + 1;
  return v < 0 ? 0 : v > ch.len ? ch.len : int(v);
}

// Slots seen by any of the rows before r_end: in a causal fine chunk the keys past the last
// of those rows are skipped entirely (half of the diagonal block), elsewhere all slots.
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION int AttentionTiles<ExecSpace, Scalar>::seen_by_rows_before(const Tile& t, const Chunk& ch,
                                                                                  int r_end) const {
  if (!ch.causal) return ch.len;
  const std::int64_t v = t.i0 + r_end - ch.pos0;
  return v < 0 ? 0 : v > ch.len ? ch.len : int(v);
}

// Scores of the chunk's slots, then the online-softmax update of every row (spec §4), in the
// tile shape of the backend.
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionTiles<ExecSpace, Scalar>::process_chunk(const Member& team, const Tile& t,
                                                                             const Chunk& ch) const {
  if constexpr (split_q)
    process_chunk_split_q(team, t, ch);
  else
    process_chunk_blocked(team, t, ch);
}

// The device shape: each thread owns whole rows, its vector lanes run over the row's visible
// slots (scores, max, sum) and then over channels (P·V). Every phase reads what other lanes
// wrote only after a team barrier, so nothing depends on how a backend maps indices to lanes.
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionTiles<ExecSpace, Scalar>::process_chunk_split_q(const Member& team, const Tile& t,
                                                                                     const Chunk& ch) const {
  team.team_barrier();
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
    const int len = visible(t, ch, r);
    if (len == 0) {
      Kokkos::single(Kokkos::PerThread(team), [&]() { t.rescale(r) = Scalar(1); });
      return;
    }
    Scalar top;
    Kokkos::parallel_reduce(
        Kokkos::ThreadVectorRange(team, len),
        [&](const int c, Scalar& m) {
          const Scalar s = row_score(&t.qt(0, r), LQ, ch.kbase + std::int64_t(c) * ch.kstride, t.logw(c), d);
          t.st(c, r) = s;
          m = s > m ? s : m;
        },
        Kokkos::Max<Scalar>(top));
    Kokkos::single(Kokkos::PerThread(team), [&]() {
      const Scalar old_max = t.rmax(r);
      const bool had = t.rsum(r) > Scalar(0);
      if (had && old_max > top) top = old_max;
      t.rescale(r) = had ? exp_nonpositive(Scalar(old_max - top)) : Scalar(0);
      t.rmax(r) = top;
    });
  });
  team.team_barrier();
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
    const int len = visible(t, ch, r);
    if (len == 0) return;
    const Scalar top = t.rmax(r);
    Scalar sum = Scalar(0);
    Kokkos::parallel_reduce(
        Kokkos::ThreadVectorRange(team, len),
        [&](const int c, Scalar& partial) {
          const Scalar p = exp_nonpositive(Scalar(t.st(c, r) - top));
          t.st(c, r) = p;
          partial += p;
        },
        sum);
    Kokkos::single(Kokkos::PerThread(team), [&]() { t.rsum(r) = t.rsum(r) * t.rescale(r) + sum; });
  });
  team.team_barrier();
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
    const int len = visible(t, ch, r);
    if (len == 0) return;
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) {
      row_accumulate(&t.acc(r, x), t.rescale(r), &t.st(0, r), LQ, ch.vbase + x, ch.vstride, len);
    });
  });
}

// The host shape: register blocks of query lanes, one thread per team.
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionTiles<ExecSpace, Scalar>::process_chunk_blocked(const Member& team, const Tile& t,
                                                                                     const Chunk& ch) const {
  team.team_barrier();
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.lanes / CB), [&](const int lane_block) {
    const int r0 = lane_block * CB;
    lane_blocks<KB, CB>(&t.st(0, r0), LQ, &t.logw(0), ch.kbase, ch.kstride, &t.qt(0, r0), LQ, d, 0,
                        seen_by_rows_before(t, ch, r0 + CB));
  });
  team.team_barrier();
  // Softmax along keys, vectorized across query lanes: chunk max over the visible slots,
  // rescale factors, then P = exp(S - max) (0 for unseen slots) and its row sums. Only the
  // slots scored above are read. A block of RB value rows may reach into the next lanes and
  // read the slots they see: those are zero for these lanes.
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.lanes / CB), [&](const int lane_block) {
    const int r0 = lane_block * CB;
    const int len = seen_by_rows_before(t, ch, r0 + CB);
    for (int c = len; c < seen_by_rows_before(t, ch, r0 + CB + RB - 1); ++c) {
      Scalar* srow = &t.st(c, r0);
      FMATTN_SIMD
      for (int cc = 0; cc < CB; ++cc) srow[cc] = Scalar(0);
    }
    if (len == 0) {
      for (int cc = 0; cc < CB; ++cc) t.rescale(r0 + cc) = Scalar(1);
      return;
    }
    Scalar mx[CB], sum[CB], top[CB];
    int vis[CB];
    for (int cc = 0; cc < CB; ++cc) {
      vis[cc] = visible(t, ch, r0 + cc);
      mx[cc] = t.st(0, r0 + cc);
      sum[cc] = Scalar(0);
    }
    for (int c = 1; c < len; ++c) {
      const Scalar* srow = &t.st(c, r0);
      // Every lane's score is loaded, seen or not (all are computed): a load under the `c <
      // vis` condition becomes a masked load whose masked-off lanes keep stale register
      // contents, and the compare that follows then runs on them (FE_INVALID on a stale NaN).
      FMATTN_SIMD
      for (int cc = 0; cc < CB; ++cc) {
        const Scalar s = srow[cc];
        mx[cc] = (c < vis[cc] && s > mx[cc]) ? s : mx[cc];
      }
    }
    FMATTN_SIMD
    for (int cc = 0; cc < CB; ++cc) {
      const Scalar old_max = t.rmax(r0 + cc), old_sum = t.rsum(r0 + cc);
      const bool seen = vis[cc] > 0, had = old_sum > Scalar(0);
      top[cc] = !seen ? old_max : (had && old_max > mx[cc]) ? old_max : mx[cc];
      t.rescale(r0 + cc) = !had ? Scalar(0) : exp_nonpositive(Scalar(old_max - top[cc]));
    }
    for (int c = 0; c < len; ++c) {
      Scalar* srow = &t.st(c, r0);
      FMATTN_SIMD
      for (int cc = 0; cc < CB; ++cc) {
        const Scalar p = exp_nonpositive(Scalar(srow[cc] - top[cc]));
        srow[cc] = c < vis[cc] ? p : Scalar(0);
        sum[cc] += srow[cc];
      }
    }
    for (int cc = 0; cc < CB; ++cc) {
      t.rsum(r0 + cc) = t.rsum(r0 + cc) * t.rescale(r0 + cc) + sum[cc];
      t.rmax(r0 + cc) = top[cc];
    }
  });
  team.team_barrier();
  // acc = acc·rescale + P·V; a causal block of rows reads only the slots its last row sees.
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, (t.rows + RB - 1) / RB), [&](const int block) {
    const int r0 = block * RB;
    row_blocks<RB, CB>(&t.acc(0, 0), row_length(d), &t.rescale(0), &t.st(0, 0), 1, LQ, ch.vbase, ch.vstride, d, true,
                       r0, r0 + RB < t.rows ? r0 + RB : t.rows,
                       [&](int, int r_end) { return Kokkos::pair<int, int>(0, seen_by_rows_before(t, ch, r_end)); });
  });
}

// A sink of total weight w, score 0 and value 0 (zero_sink boundary) joins every row.
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionTiles<ExecSpace, Scalar>::add_sink(const Member& team, const Tile& t,
                                                                        double w) const {
  if (w <= 0) return;
  team.team_barrier();
  const Scalar logw = Scalar(compat::log(w));
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows),
                       [&](const int r) { merge(team, t, r, logw, Scalar(1), nullptr); });
}

}  // namespace fmattn::detail
