// The scratch layout of an attention tile: the functor that evaluates a (batch·head, query
// tile) pair, its parameters, and the team-scratch matrices one tile works in. What the
// tile does is in the files of each concern:
//   tile_products.hpp     the register-blocked products S = K·Qᵀ and acc += P·V;
//   online_softmax.hpp    the running max and sum of each row, updated chunk by chunk (spec §4);
//   interaction_walk.hpp  the tile's near-field keys and far-field coarse slots, streamed
//                         through scratch in chunks (spec §3);
//   attention_forward.hpp the fine and coarse tiles and the launch.
#pragma once

#include <fmattn/core/geometry.hpp>
#include <fmattn/core/options.hpp>
#include <fmattn/core/shard.hpp>

#include "kernels/shard_view.hpp"
#include "kernels/tile_traits.hpp"
#include "kernels/token_rows.hpp"

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>

namespace fmattn::detail {

// Unnormalised softmax partial sums of one row: max, denominator, numerator [d].
template <class Scalar, class MemSpace>
struct Partials {
  Kokkos::View<Scalar**, Kokkos::LayoutRight, MemSpace> max, den;  // [bh][coarse tokens]
  TokenRows<Scalar> num;                                           // [bh][coarse tokens][d]
};

// The functor of the forward, one team per tile (and the backward's source of tiles and walks).
template <class ExecSpace, class Scalar>
struct AttentionTiles {
  using Mem = typename ExecSpace::memory_space;
  using In = Kokkos::View<const Scalar***, Kokkos::LayoutRight, Mem>;
  using Out = Kokkos::View<Scalar***, Kokkos::LayoutRight, Mem>;
  // Dynamic: tile costs differ (causal rows see more keys further on, far lists vary by cell).
  using Policy = Kokkos::TeamPolicy<ExecSpace, Kokkos::Schedule<Kokkos::Dynamic>>;
  using Member = typename Policy::member_type;
  using Scratch = typename ExecSpace::scratch_memory_space;
  using Mat = Kokkos::View<Scalar**, Kokkos::LayoutRight, Scratch, Kokkos::MemoryUnmanaged>;
  using Vec = Kokkos::View<Scalar*, Scratch, Kokkos::MemoryUnmanaged>;
  static constexpr int Tq = TileTraits<ExecSpace, Scalar>::query_rows;
  static constexpr int Tk = TileTraits<ExecSpace, Scalar>::key_chunk;
  // Register blocks of the two small products: KB keys × CB query rows for S^T = K·(sQ)^T, and
  // RB query rows × CB channels for acc += P·V, kept in registers over the inner loop.
  static constexpr int KB = TileTraits<ExecSpace, Scalar>::block_keys;
  static constexpr int RB = TileTraits<ExecSpace, Scalar>::block_rows;
  static constexpr int CB = TileTraits<ExecSpace, Scalar>::block_cols;
  static_assert(Tq % CB == 0, "tiles must hold whole blocks of query lanes");
  // Scratch rows are padded so that the rows of a matrix (and of different matrices) do not all
  // map to the same few cache sets: with d or Tq a power of two, unpadded rows sit at a
  // multiple of 256 bytes apart and evict each other from L1.
  static constexpr int pad = TileTraits<ExecSpace, Scalar>::scratch_pad;
  static constexpr int LQ = Tq + pad;  // row length of qt and st
  // The device shape (tile_traits.hpp): query rows split among the team's threads, vector lanes
  // over keys and channels; the host shape runs the register blocks above.
  static constexpr bool split_q = TileTraits<ExecSpace, Scalar>::split_q;

  Geometry g;
  ShardView<Mem> s;  // the queries, fine K/V rows and coarse cells held here (the whole sequence unless sharded)
  AttentionOptions opt;
  // The caller's Views as token rows (token_rows.hpp), which keep the functor small.
  TokenRows<const Scalar> q, k, v;  // [bh][rows][d]: q from s.token_begin, k and v from s.key_begin
  TokenRows<const Scalar> qc;       // [bh][coarse tokens][d] coarse queries (linear variant)
  TokenRows<const Scalar> kc, vc;   // [bh][coarse tokens][d]; empty for exact
  TokenRows<Scalar> o;              // [bh][own rows][d] from s.token_begin
  Kokkos::View<Scalar**, Kokkos::LayoutRight, Mem> lse;  // [bh][own rows] log-sum-exp per row, if not empty
  Partials<Scalar, Mem> part;  // linear variant: written by the coarse pass, read by the fine pass
  bool coarse_pass = false;    // this launch evaluates coarse queries into `part`
  int d = 0;
  int dp = 0;             // d rounded up to CB; channels d..dp of scratch rows are zero
  int scratch_level = 0;  // 0: fast team memory; 1 when a tile's scratch exceeds it (GPU, large d)
  std::int64_t tiles_per_block = 0, tiles_per_cell = 0, tiles_per_head = 0;
  std::int64_t league0 = 0;  // tile of league rank 0: the fine tiles may run in several launches

  // Scratch of one team. Scores are kept transposed (key-major), so the softmax runs along
  // contiguous query lanes and the P·V product broadcasts P along a key's row.
  struct Tile {
    Mat qt;          // (scale·Q)^T [d][LQ], zero past `rows`
    Mat st;          // S^T, then P^T [Tk][LQ]
    Mat acc;         // unnormalised output [Tq][ld]
    Mat ks, vs;      // key/value rows of the chunk [Tk][ld]
    Vec logw;        // log-weight of each slot [Tk]
    Vec rmax, rsum;  // running max and denominator [Tq]
    Vec rescale;     // per-chunk rescale factor [Tq]
    // The coarse-array index of each far-field slot [Tk].
    Kokkos::View<std::int64_t*, Scratch, Kokkos::MemoryUnmanaged> slot;
    // Backward tiles only (attention_backward.hpp): a second lane matrix [d][LQ], a second
    // score matrix [Tk][LQ] and two more accumulators [max(Tq, Tk)][ld].
    Mat vt, dpt, acc2, acc3;
    std::int64_t i0 = 0;  // position of row 0 (fine queries)
    int rows = 0;
    int lanes = 0;  // rows rounded up to whole lane blocks: the lanes the products compute
  };

  // A chunk of `len` slots: key and value rows at kbase/vbase with a row stride, slot
  // log-weights in the tile, and for a causal fine chunk the position of slot 0.
  struct Chunk {
    const Scalar* kbase;
    const Scalar* vbase;
    int kstride, vstride, len;
    bool causal;
    std::int64_t pos0;
  };

  // The launch shape of `league` tiles: AUTO teams on the host shape, the traits' teams on the
  // device shape; the functor (under 512 bytes, see TileShape.FunctorIsPassedAsKernelArgument)
  // goes to a GPU as a kernel argument. P: the policy type (the backward's carry a work tag).
  template <class P = Policy, class Functor>
  static auto policy(const ExecSpace& space, std::int64_t league, const Functor& f, std::size_t scratch, int level) {
    if constexpr (split_q) {
      return device_team_policy<Scalar, P>(space, league, f, scratch, level);
    } else {
      P p(space, int(league), Kokkos::AUTO);
      return as_kernel_argument(p.set_scratch_size(level, Kokkos::PerTeam(scratch)));
    }
  }

  KOKKOS_INLINE_FUNCTION static int padded_dim(int d) { return (d + CB - 1) / CB * CB; }
  // Row length of acc, ks and vs.
  KOKKOS_INLINE_FUNCTION static int row_length(int d) { return padded_dim(d) + pad; }

  static std::size_t scratch_bytes(int d, bool backward = false) {
    const int ld = row_length(d);
    const std::size_t extra =
        backward ? Mat::shmem_size(d, LQ) + Mat::shmem_size(Tk, LQ) + 2 * Mat::shmem_size(Tq > Tk ? Tq : Tk, ld) : 0;
    return Mat::shmem_size(d, LQ) + Mat::shmem_size(Tk, LQ) + Mat::shmem_size(Tq, ld) + 2 * Mat::shmem_size(Tk, ld) +
           Vec::shmem_size(Tk) + 3 * Vec::shmem_size(Tq) + Kokkos::View<std::int64_t*, Scratch>::shmem_size(Tk) + extra;
  }

  KOKKOS_INLINE_FUNCTION Tile make_tile(const Member& team, bool backward = false) const {
    const auto& scr = team.team_scratch(scratch_level);
    const int ld = row_length(d);
    Tile t;
    t.qt = Mat(scr, d, LQ);
    t.st = Mat(scr, Tk, LQ);
    t.acc = Mat(scr, Tq, ld);
    t.ks = Mat(scr, Tk, ld);
    t.vs = Mat(scr, Tk, ld);
    t.logw = Vec(scr, Tk);
    t.rmax = Vec(scr, Tq);
    t.rsum = Vec(scr, Tq);
    t.rescale = Vec(scr, Tq);
    t.slot = decltype(t.slot)(scr, Tk);
    if (backward) {
      t.vt = Mat(scr, d, LQ);
      t.dpt = Mat(scr, Tk, LQ);
      t.acc2 = Mat(scr, Tq > Tk ? Tq : Tk, ld);
      t.acc3 = Mat(scr, Tq > Tk ? Tq : Tk, ld);
    }
    return t;
  }

  // The online softmax (online_softmax.hpp): a tile's rows, their running max and sum, and
  // the update by each chunk of slots.
  template <class RowPtr>
  KOKKOS_INLINE_FUNCTION void load_queries(const Member& team, Tile& t, RowPtr qrow) const;
  KOKKOS_INLINE_FUNCTION void merge(const Member& team, const Tile& t, int r, Scalar m, Scalar den,
                                    const Scalar* num) const;
  KOKKOS_INLINE_FUNCTION int visible(const Tile& t, const Chunk& ch, int r) const;
  KOKKOS_INLINE_FUNCTION int seen_by_rows_before(const Tile& t, const Chunk& ch, int r_end) const;
  KOKKOS_INLINE_FUNCTION void process_chunk(const Member& team, const Tile& t, const Chunk& ch) const;
  KOKKOS_INLINE_FUNCTION void process_chunk_blocked(const Member& team, const Tile& t, const Chunk& ch) const;
  KOKKOS_INLINE_FUNCTION void process_chunk_split_q(const Member& team, const Tile& t, const Chunk& ch) const;
  KOKKOS_INLINE_FUNCTION void add_sink(const Member& team, const Tile& t, double w) const;

  // The interaction-list walk (interaction_walk.hpp): a tile's fine keys and coarse slots,
  // gathered into scratch chunk by chunk.
  KOKKOS_INLINE_FUNCTION void gather_slot(const Member& team, const Tile& t, int c, const Scalar* krow,
                                          const Scalar* vrow) const;
  template <class Op>
  KOKKOS_INLINE_FUNCTION void fine_range(const Member& team, const Tile& t, std::int64_t bh, std::int64_t lo,
                                         std::int64_t hi, bool causal, const Op& op) const;
  template <class Op>
  KOKKOS_INLINE_FUNCTION double far_field(const Member& team, const Tile& t, std::int64_t bh, int l_first, int l_last,
                                          std::int64_t b_first, const Op& op) const;

  // The two kinds of tiles and the launch (attention_forward.hpp).
  KOKKOS_INLINE_FUNCTION void fine_tile(const Member& team) const;
  KOKKOS_INLINE_FUNCTION void coarse_tile(const Member& team) const;
  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const;
};

}  // namespace fmattn::detail
