// The interaction-list walk of a tile (spec §3): the fine keys of its near field, and the
// coarse tokens of its far field level by level (with their count log-weights and the
// zero_sink boundary's weight), gathered into team scratch a chunk at a time and handed to an
// operation (the forward's online softmax, or a backward pass).
#pragma once

#include <fmattn/core/geometry.hpp>
#include <fmattn/core/options.hpp>
#include <fmattn/core/shard.hpp>

#include "kernels/attention_tiles.hpp"
#include "kernels/kokkos_compat.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

// Copies a key and a value row into slot c of the chunk (channels d..dp are zero).
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionTiles<ExecSpace, Scalar>::gather_slot(const Member& team, const Tile& t, int c,
                                                                           const Scalar* krow,
                                                                           const Scalar* vrow) const {
  Scalar* ks = &t.ks(c, 0);
  Scalar* vs = &t.vs(c, 0);
  Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) {
    ks[x] = krow[x];
    vs[x] = vrow[x];
  });
  Kokkos::single(Kokkos::PerThread(team), [&]() {
    for (int x = d; x < dp; ++x) ks[x] = vs[x] = Scalar(0);
  });
}

// Fine keys [lo, hi) in chunks of Tk, copied into padded scratch rows: read in place, rows d
// apart (a power of two) evict each other from L1 (measured: up to a fifth slower at d = 128).
// Each chunk goes to op(chunk) (the forward's online softmax, or a backward pass).
template <class ExecSpace, class Scalar>
template <class Op>
KOKKOS_INLINE_FUNCTION void AttentionTiles<ExecSpace, Scalar>::fine_range(const Member& team, const Tile& t,
                                                                          std::int64_t bh, std::int64_t lo,
                                                                          std::int64_t hi, bool causal,
                                                                          const Op& op) const {
  for (std::int64_t c0 = lo; c0 < hi; c0 += Tk) {
    const int len = int(hi - c0 < Tk ? hi - c0 : Tk);
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len), [&](const int c) {
      gather_slot(team, t, c, k(bh, c0 + c - s.key_begin), v(bh, c0 + c - s.key_begin));
      Kokkos::single(Kokkos::PerThread(team), [&]() { t.logw(c) = Scalar(0); });
    });
    op(Chunk{t.ks.data(), t.vs.data(), row_length(d), row_length(d), len, causal, c0});
  }
}

// Streams the coarse slots of levels l_first..l_last, where the tile's cell at level l is
// b_first >> (l - l_first), gathered Tk at a time. Returns the total weight of zero_sink
// far-field slots (cells left of the sequence start).
template <class ExecSpace, class Scalar>
template <class Op>
KOKKOS_INLINE_FUNCTION double AttentionTiles<ExecSpace, Scalar>::far_field(const Member& team, const Tile& t,
                                                                           std::int64_t bh, int l_first, int l_last,
                                                                           std::int64_t b_first, const Op& op) const {
  double sink = 0;
  int filled = 0;
  // A cell's present tokens are consecutive slots of the list, so the team lists them a run at a
  // time, each lane writing its own slots' coarse index and log-weight; a chunk's key and value
  // rows are then gathered by the whole team at once: one barrier per chunk, not per slot, and
  // no thread walks the slots alone.
  const auto flush = [&]() {
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, filled),
                         [&](const int c) { gather_slot(team, t, c, kc(bh, t.slot(c)), vc(bh, t.slot(c))); });
    op(Chunk{t.ks.data(), t.vs.data(), row_length(d), row_length(d), filled, false, 0});
    filled = 0;
  };
  for (int l = l_first; l <= l_last; ++l) {
    std::int64_t cells[max_far_cells];
    int negative = 0;
    const int nc = g.far_cells(l, b_first >> (l - l_first), cells, &negative);
    sink += double(negative) * (opt.count_weighting ? double(g.cell_size(l)) : double(g.p));
    const std::int64_t wl = g.cell_size(l);
    // Every token of a fully present cell stands for w_l/p fine tokens: one log per level.
    const Scalar full_logw = opt.count_weighting ? Scalar(compat::log(double(wl / g.p))) : Scalar(0);
    for (int j = 0; j < nc; ++j) {
      const std::int64_t cell = cells[j];
      const bool full = (cell + 1) * wl <= g.n;
      const int present = g.present_tokens(opt.downsampling, l, cell);  // absent tokens get no slot
      for (int r0 = 0; r0 < present;) {
        const int run = present - r0 < Tk - filled ? present - r0 : Tk - filled;
        if (filled == 0) team.team_barrier();  // the previous chunk's readers are done with the list
        Kokkos::parallel_for(Kokkos::TeamVectorRange(team, run), [&](const int i) {
          const int r = r0 + i;
          t.logw(filled + i) =
              full || !opt.count_weighting ? full_logw : Scalar(compat::log(g.count(opt.downsampling, l, cell, r)));
          t.slot(filled + i) = s.coarse_index(l, cell, r);
        });
        filled += run;
        r0 += run;
        if (filled == Tk) flush();
      }
    }
  }
  if (filled > 0) flush();
  return opt.boundary == Boundary::zero_sink ? sink : 0.0;
}

}  // namespace fmattn::detail
