// The state of the backward functor (attention_backward.hpp has the passes): the forward's
// tile functor it extends (geometry, options, inputs, coarse levels, key streaming), the
// forward's output and log-sum-exp, the gradients it writes, the far pass's windows and the
// pairs' tiling. Its member functions are defined in one file per pass.
#pragma once

#include <fmattn/core/geometry.hpp>
#include <fmattn/core/options.hpp>

#include "kernels/attention_tiles.hpp"
#include "kernels/coarse_levels.hpp"
#include "kernels/simd.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

template <class ExecSpace, class Scalar>
struct AttentionBackward : AttentionTiles<ExecSpace, Scalar> {
  using Tiles = AttentionTiles<ExecSpace, Scalar>;
  using Mem = typename Tiles::Mem;
  using In = typename Tiles::In;
  using Out = typename Tiles::Out;
  using Rows = Kokkos::View<Scalar**, Kokkos::LayoutRight, Mem>;
  using ConstRows = Kokkos::View<const Scalar**, Kokkos::LayoutRight, Mem>;
  using Grad = Kokkos::View<double*, Mem>;
  using Policy = typename Tiles::Policy;
  using Member = typename Tiles::Member;
  using Tile = typename Tiles::Tile;
  using Chunk = typename Tiles::Chunk;
  static constexpr int Tq = Tiles::Tq, Tk = Tiles::Tk, CB = Tiles::CB, KB = Tiles::KB, RB = Tiles::RB, LQ = Tiles::LQ;
  // Query positions per team of the far pass: its tiles share the far-field cells of every
  // level whose cells are at least this long, so their dK̃, dṼ terms sum in the team.
  static constexpr std::int64_t query_span = 512;
  struct FarTag {};
  struct ReduceTag {};
  struct PairTag {};
  struct WeightTag {};
  struct BiasTag {};

  // Of the forward: geometry, options, inputs q, k, v [bh][n][d], coarse levels kc, vc, and
  // the walks of a tile's fine keys and coarse slots.
  using Tiles::d;
  using Tiles::far_field;
  using Tiles::fine_range;
  using Tiles::g;
  using Tiles::k;
  using Tiles::kc;
  using Tiles::make_tile;
  using Tiles::opt;
  using Tiles::q;
  using Tiles::s;
  using Tiles::seen_by_rows_before;
  using Tiles::v;
  using Tiles::vc;
  using Tiles::visible;
  In out, dout;                      // forward output, output gradient [bh][n][d]
  LevelWeights<Scalar, Mem> kw, vw;  // learned downsampling of K and V
  ConstRows forward_lse;             // [bh][n] from the forward
  Rows delta;                        // [bh][n] dO_i · O_i
  Out dq, dk, dv;                    // [bh][n][d]; an empty View is not computed
  Out dkc, dvc;                      // [bh][coarse tokens][d]
  Grad dkw, dkb, dvw, dvb;           // weight gradients, flattened like the weights
  bool want_dq = false, want_dkv = false, want_coarse = false;
  bool far_done = false;  // the far pass wrote dQ: the pairs add to it
  // The far pass's windows: team T holds, for each level l, rows for the cells from
  // T·span / w_l − 3 on, window_cells(l) of them, p rows each, from window_offset(l); rows of
  // dK̃ terms in pk and of dṼ terms in pv, [bh][teams · window_rows][d]. The per-level table is
  // a small View (row l: offset, cells), not arrays for every possible level in the functor.
  std::int64_t span = 0, blocks_per_team = 0, teams_per_head = 0, window_rows = 0;
  Kokkos::View<const std::int64_t* [2], Kokkos::LayoutRight, Mem> windows;
  KOKKOS_INLINE_FUNCTION std::int64_t window_offset(int l) const { return windows(l, 0); }
  // The far teams cover the shard's own blocks: team T holds blocks [T, T + 1)·blocks_per_team.
  KOKKOS_INLINE_FUNCTION std::int64_t first_team() const { return s.block_begin / blocks_per_team; }
  KOKKOS_INLINE_FUNCTION std::int64_t window_cells(int l) const { return windows(l, 1); }
  Out pk, pv;
  // The pairs: tiles of tile_rows positions (inside fine blocks for FMA); this launch's diagonal.
  std::int64_t tile_rows = 0, pair_tiles = 0, diagonal = 0;

  // A shard's own rows (q, out, dout, lse, delta, dq) start at its first token; its stored
  // fine K/V rows (k, v, dk, dv) at s.key_begin; its coarse rows are the window of cells it
  // stores (s.coarse_index). The whole sequence is the shard that starts at 0 and stores all.
  KOKKOS_INLINE_FUNCTION std::int64_t own_row(std::int64_t i) const { return i - s.token_begin(g); }
  KOKKOS_INLINE_FUNCTION std::int64_t key_row(std::int64_t j) const { return j - s.key_begin; }
  // Fine blocks whose K/V rows are stored: own blocks and the halo.
  KOKKOS_INLINE_FUNCTION bool stores_block(std::int64_t B) const {
    const std::int64_t right = g.variant == Variant::bidirectional ? 1 : 0;
    return B >= s.key_begin / g.m && B < s.block_end + right && B * g.m < g.n;
  }

  // f(c) for the channels c of a row: the thread's vector lanes on the device shape, one SIMD
  // loop on the host (where a ThreadVectorRange is a plain loop, with no promise to vectorise).
  template <class F>
  KOKKOS_INLINE_FUNCTION void for_channels(const Member& team, const F& f) const {
    if constexpr (Tiles::split_q) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), f);
    } else {
      FMATTN_SIMD
      for (int c = 0; c < d; ++c) f(c);
    }
  }

  // One (query tile, chunk of slots) pair (backward_chunk.hpp).
  KOKKOS_INLINE_FUNCTION bool load_query_tile(const Member& team, const Tile& t, std::int64_t bh) const;
  template <int NK>
  KOKKOS_INLINE_FUNCTION void query_lane_scores(const Tile& t, int r0, const Scalar* krows, int kstride,
                                                const Scalar* vrows, int vstride, int c0, int c_end) const;
  template <class Seen>
  KOKKOS_INLINE_FUNCTION void query_lane_softmax(const Tile& t, std::int64_t bh, int r0, int c_end,
                                                 const Seen& seen) const;
  KOKKOS_INLINE_FUNCTION void clear_rows(const Member& team, const typename Tiles::Mat& m, int rows) const;
  template <class SlotRows>
  KOKKOS_INLINE_FUNCTION void slot_chunk(const Member& team, const Tile& t, std::int64_t bh, const Chunk& ch,
                                         bool slots, const SlotRows& slot_rows) const;
  template <class SlotRows>
  KOKKOS_INLINE_FUNCTION void slot_chunk_blocked(const Member& team, const Tile& t, std::int64_t bh, const Chunk& ch,
                                                 bool slots, const SlotRows& slot_rows) const;
  template <class SlotRows>
  KOKKOS_INLINE_FUNCTION void slot_chunk_split_q(const Member& team, const Tile& t, std::int64_t bh, const Chunk& ch,
                                                 bool slots, const SlotRows& slot_rows) const;

  // The far pass and the reduction of its windows (backward_far_field.hpp).
  KOKKOS_INLINE_FUNCTION void operator()(FarTag, const Member& team) const;
  KOKKOS_INLINE_FUNCTION void operator()(ReduceTag, std::int64_t bh, std::int64_t flat) const;
  KOKKOS_INLINE_FUNCTION void operator()(ReduceTag, std::int64_t bh, std::int64_t flat, std::int64_t c) const;
  KOKKOS_INLINE_FUNCTION void reduce_channels(std::int64_t bh, std::int64_t flat, int c_begin, int c_end) const;

  // Pairs of fine tiles, one diagonal per launch (backward_pairs.hpp).
  KOKKOS_INLINE_FUNCTION void add_coarse_share(const Member& team, std::int64_t h, std::int64_t j, Scalar* dkr,
                                               Scalar* dvr) const;
  KOKKOS_INLINE_FUNCTION int tile_extent(std::int64_t a, std::int64_t& i0) const;
  KOKKOS_INLINE_FUNCTION void operator()(PairTag, const Member& team) const;

  // Weights W_l[r][pos][:] of K and V for one block of positions of one level: the sum over
  // heads and cells of the coarse gradient times the fine token it multiplied. A block of
  // positions is a contiguous run of fine rows in every cell, so K and V stream through once
  // per level and block instead of once per position; cells whose coarse gradients are zero
  // (seen by no query with a nonzero dO) are skipped.
  static constexpr int weight_block = 16;
  KOKKOS_INLINE_FUNCTION static std::int64_t weight_blocks(const Geometry& g, int l) {
    return (g.cell_size(l) + weight_block - 1) / weight_block;
  }

  // Weight and bias gradients (backward_weights.hpp).
  KOKKOS_INLINE_FUNCTION bool zero_row(const Scalar* x) const;
  // One block of weight positions (bias rows) with all channels (host shape), or one channel
  // of it (device shape, TileTraits::channels_in_parallel).
  KOKKOS_INLINE_FUNCTION void operator()(WeightTag, std::int64_t f) const;
  KOKKOS_INLINE_FUNCTION void operator()(WeightTag, std::int64_t f, std::int64_t c) const;
  KOKKOS_INLINE_FUNCTION void operator()(BiasTag, std::int64_t f) const;
  KOKKOS_INLINE_FUNCTION void operator()(BiasTag, std::int64_t f, std::int64_t c) const;
  KOKKOS_INLINE_FUNCTION void weight_channels(std::int64_t f, int c_begin, int c_end) const;
  KOKKOS_INLINE_FUNCTION void bias_channels(std::int64_t f, int c_begin, int c_end) const;
};

}  // namespace fmattn::detail
