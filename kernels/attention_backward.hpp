// The backward pass of Fast Multipole Attention (spec §1–5) for a scalar loss whose gradient
// with respect to the output is dO: gradients of Q, K, V, of the coarse keys and values of
// every level and, for learned downsampling, of the weights and biases of every level.
//
// Flash-style and tiled like the forward (attention_forward.hpp): scores are recomputed tile by
// tile, never stored; each row brings its log-sum-exp from the forward and delta_i = dO_i·O_i,
// so the extra memory is O(n·d). With P_ij = α_j exp(σ_ij − lse_i) over the slots j of query i:
//   dV_j += P_ij dO_i,   dS_ij = s P_ij (dO_i · V_j − delta_i),
//   dQ_i += dS_ij K_j,   dK_j += dS_ij Q_i,
// where K_j, V_j are fine tokens (near field) or coarse tokens (far field). Every (query tile,
// chunk of slots) pair forms S, P and dS once and makes all three gradients of it: five
// products of the pair's size, as FlashAttention-2's backward. The passes:
//   far     (FMA) one team per span of query tiles streams each tile's far-field slots: dQ, and
//           the tile's terms of dK̃, dṼ summed over the team's tiles into rows of its own (its
//           window of coarse cells);
//   reduce  every coarse token sums its rows of the windows that hold it, in team order;
//   pairs   one launch per diagonal w of (query tile a, key tile a − w) pairs: the pairs of one
//           diagonal share no tile, so each adds its dQ, dK, dV terms to rows it alone touches
//           in that launch; diagonal 0 also writes each key's share of the coarse gradients
//           (the transpose of spec §2). FMA has the few diagonals of the near field, exact
//           attention all of them.
// Then the learned weights and biases gather theirs over heads and cells.
//
// Determinism: every gradient element is summed in a fixed order (diagonal by diagonal, team
// by team), with no atomics: results are bit-identical from run to run and for any thread
// count. Query tiles whose dO rows are all zero are skipped: a loss on sampled rows (fmattn fit)
// costs about what those rows see.
#pragma once

#include <fmattn/core/geometry.hpp>
#include <fmattn/core/options.hpp>

#include "kernels/backward_chunk.hpp"
#include "kernels/backward_far_field.hpp"
#include "kernels/backward_pairs.hpp"
#include "kernels/backward_state.hpp"
#include "kernels/backward_weights.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <functional>

namespace fmattn::detail {

// Sizes the far pass's windows (see AttentionBackward::windows) and the tiles of the
// pairs; returns the window rows per head.
template <class K>
std::int64_t plan_backward(K& f) {
  const Geometry& g = f.g;
  f.blocks_per_team = K::query_span > g.m ? K::query_span / g.m : 1;
  f.span = f.blocks_per_team * g.m;
  f.teams_per_head = (f.s.block_end - 1) / f.blocks_per_team - f.s.block_begin / f.blocks_per_team + 1;
  // The window table depends on the geometry alone: a caller that keeps f.windows with its
  // geometry (Attention does) has it built and copied to the device once, not on every backward.
  const bool fresh = f.windows.extent(0) != std::size_t(g.L) + 1;
  Kokkos::View<std::int64_t* [2], Kokkos::LayoutRight, typename K::Mem> windows;
  if (fresh)
    windows = decltype(windows)(Kokkos::view_alloc(Kokkos::WithoutInitializing, "fmattn::backward_windows"), g.L + 1);
  const auto host = Kokkos::create_mirror_view(windows);
  std::int64_t rows = 0;
  for (int l = 1; l <= g.L; ++l) {
    const std::int64_t w = g.cell_size(l),
                       cells = (w >= f.span ? 1 : f.span / w) + (g.variant == Variant::causal ? 1 : 6);
    if (fresh) {
      host(l, 0) = rows;
      host(l, 1) = cells;
    }
    rows += cells * g.p;
  }
  if (fresh) {
    Kokkos::deep_copy(windows, host);
    f.windows = windows;
  }
  f.window_rows = rows;
  const bool blocks = has_near_blocks(f.opt.method);
  f.tile_rows = blocks && g.m < K::Tq ? g.m : K::Tq;
  f.pair_tiles =
      blocks ? (f.s.block_end - f.s.block_begin) * (g.m / f.tile_rows) : (g.n + f.tile_rows - 1) / f.tile_rows;
  return rows * f.teams_per_head;
}

// Runs the passes in dependency order: far teams, reduce, pairs diagonal by diagonal, weights.
// `f` carries the inputs (in its AttentionTiles base, with the forward's geometry and coarse
// levels), the workspace (pk, pv sized by plan_backward) and the output Views; empty dq/dk/dv
// or dkw skip those parts. `coarse_formed`, when given, runs once the shard's queries' terms
// of the coarse gradients are in dkc, dvc (launched, not fenced) and before anything reads
// them: a sharded sequence completes them there with the other ranks' terms.
template <class ExecSpace, class Scalar>
void run_attention_backward(const ExecSpace& space, AttentionBackward<ExecSpace, Scalar> f,
                            const std::function<void()>& coarse_formed = {}) {
  using K = AttentionBackward<ExecSpace, Scalar>;
  using Idx = Kokkos::IndexType<std::int64_t>;
  const std::int64_t H = std::int64_t(f.out.extent(0));
  if (H == 0) return;
  plan_backward(f);
  const bool far = has_far_field(f.opt.method), by_blocks = has_near_blocks(f.opt.method);
  f.want_dq = f.dq.extent(0) != 0;
  f.want_dkv = f.dk.extent(0) != 0;
  f.want_coarse = far && f.g.L > 0 && (f.want_dkv || f.dkw.extent(0));
  const std::size_t scratch = K::Tiles::scratch_bytes(f.d, true);
  f.scratch_level = scratch <= std::size_t(K::Policy::scratch_size_max(0)) ? 0 : 1;
  // The team launches take the forward's tile shape; every launch passes the functor (about
  // 1.2 KiB) as a kernel argument, as the forward's tiles do.
  auto launch = [&](const char* name, auto tag, std::int64_t teams) {
    using Policy = Kokkos::TeamPolicy<ExecSpace, Kokkos::Schedule<Kokkos::Dynamic>, decltype(tag)>;
    Kokkos::parallel_for(name, K::template policy<Policy>(space, teams, f, scratch, f.scratch_level), f);
  };
  f.far_done = far && f.g.L > 0 && (f.want_dq || f.want_coarse);
  if (f.far_done) launch("fmattn::backward::far_field", typename K::FarTag{}, H * f.teams_per_head);
  constexpr bool by_channel = TileTraits<ExecSpace, Scalar>::channels_in_parallel;
  if (f.want_coarse && by_channel)
    Kokkos::parallel_for(
        "fmattn::backward::coarse_reduce",
        as_kernel_argument(Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>, Idx, typename K::ReduceTag>(
            space, {0, 0, 0}, {H, std::int64_t(f.dkc.extent(1)), std::int64_t(f.d)})),
        f);
  else if (f.want_coarse)
    Kokkos::parallel_for(
        "fmattn::backward::coarse_reduce",
        as_kernel_argument(Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>, Idx, typename K::ReduceTag>(
            space, {0, 0}, {H, std::int64_t(f.dkc.extent(1))})),
        f);
  if (f.want_coarse && coarse_formed) coarse_formed();
  if (f.want_dq || f.want_dkv) {
    // Diagonals 0, 1, -1, 2, -2, ... of the pairs that can see each other: those of the near
    // field (FMA, local) or all (exact); causal attention has no negative ones.
    const std::int64_t per_block = by_blocks ? f.g.m / f.tile_rows : f.pair_tiles;
    const std::int64_t reach = by_blocks ? 2 * per_block - 1 : f.pair_tiles - 1;
    const std::int64_t back = f.g.variant == Variant::causal ? 0 : by_blocks ? 2 * per_block - 1 : f.pair_tiles - 1;
    for (std::int64_t w = 0; w <= (reach > back ? reach : back); ++w)
      for (const int sign : {1, -1}) {
        if ((sign < 0 && w == 0) || (sign > 0 && w > reach) || (sign < 0 && w > back)) continue;
        f.diagonal = sign * w;
        launch("fmattn::backward::pairs", typename K::PairTag{}, H * f.pair_tiles);
      }
  }
  if (f.dkw.extent(0)) {
    std::int64_t blocks = 0;
    for (int l = 1; l <= f.g.L; ++l) blocks += K::weight_blocks(f.g, l);
    const std::int64_t rows = f.dkb.extent(0) / f.d;
    if constexpr (by_channel) {
      using Channels = Kokkos::Rank<2>;
      Kokkos::parallel_for("fmattn::backward::weights",
                           as_kernel_argument(Kokkos::MDRangePolicy<ExecSpace, Channels, Idx, typename K::WeightTag>(
                               space, {0, 0}, {blocks, std::int64_t(f.d)})),
                           f);
      Kokkos::parallel_for("fmattn::backward::biases",
                           as_kernel_argument(Kokkos::MDRangePolicy<ExecSpace, Channels, Idx, typename K::BiasTag>(
                               space, {0, 0}, {rows, std::int64_t(f.d)})),
                           f);
    } else {
      Kokkos::parallel_for(
          "fmattn::backward::weights",
          as_kernel_argument(Kokkos::RangePolicy<ExecSpace, Idx, typename K::WeightTag>(space, 0, blocks)), f);
      Kokkos::parallel_for("fmattn::backward::biases",
                           as_kernel_argument(Kokkos::RangePolicy<ExecSpace, Idx, typename K::BiasTag>(space, 0, rows)),
                           f);
    }
  }
}

}  // namespace fmattn::detail
