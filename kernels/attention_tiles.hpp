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

#include "fast_exp.hpp"
#include "geometry.hpp"
#include "kokkos_compat.hpp"
#include "shard.hpp"
#include "simd.hpp"
#include "tile_products.hpp"
#include "tile_traits.hpp"

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <functional>

#include <cmath>
#include <cstdint>

namespace fmattn {

// Unnormalised softmax partial sums of one row: max, denominator, numerator [d].
template <class Scalar, class MemSpace>
struct Partials {
  Kokkos::View<Scalar**, Kokkos::LayoutRight, MemSpace> max, den;  // [bh][coarse tokens]
  Kokkos::View<Scalar***, Kokkos::LayoutRight, MemSpace> num;      // [bh][coarse tokens][d]
};

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

  Geometry g;
  Shard s;  // the queries, fine K/V rows and coarse cells held here (the whole sequence unless sharded)
  AttentionOptions opt;
  In q, k, v;  // [bh][rows][d]: q from s.token_begin, k and v from s.key_begin
  In qc;       // [bh][coarse tokens][d] coarse queries (linear variant)
  In kc, vc;   // [bh][coarse tokens][d]; empty for exact
  Out o;       // [bh][own rows][d] from s.token_begin
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
    std::int64_t i0;  // position of row 0 (fine queries)
    int rows;
    int lanes;  // rows rounded up to whole lane blocks: the lanes the products compute
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

  // Loads `rows` query rows (row r from qrow(r)) scaled and transposed, clears the softmax
  // state and the accumulators. Query lanes from `rows` to `lanes` are zero; lane blocks past
  // them are never computed (a coarse-query tile has only p rows).
  template <class RowPtr>
  KOKKOS_INLINE_FUNCTION void load_queries(const Member& team, Tile& t, RowPtr qrow) const {
    const Scalar scale = Scalar(opt.scale);
    t.lanes = (t.rows + CB - 1) / CB * CB;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.lanes), [&](const int r) {
      const Scalar* row = r < t.rows ? qrow(r) : nullptr;
      for (int x = 0; x < d; ++x) t.qt(x, r) = row ? scale * row[x] : Scalar(0);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, dp), [&](const int x) { t.acc(r, x) = Scalar(0); });
      Kokkos::single(Kokkos::PerThread(team), [&]() {
        t.rmax(r) = Scalar(0);
        t.rsum(r) = Scalar(0);
      });
    });
  }

  // Folds partial sums (max m, denominator den, numerator num[d] relative to m) into row r.
  KOKKOS_INLINE_FUNCTION void merge(const Member& team, const Tile& t, int r, Scalar m, Scalar den,
                                    const Scalar* num) const {
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

  // Scores, slots × query lanes: out[c][r] = init[c] + Σ_x A_c[x]·B[x][r] for the NK slots
  // from c0 and the CB lanes from r0, where `out` and `b` point at lane r0 of their row 0,
  // slot c's row of A is at a + c·as, and init may be null (0).
  template <int NK>
  KOKKOS_INLINE_FUNCTION static void lane_block(Scalar* out, std::int64_t os, const Scalar* init, const Scalar* a,
                                                std::int64_t as, const Scalar* b, std::int64_t bs, int depth, int c0) {
    Scalar acc[NK][CB];
    for (int kk = 0; kk < NK; ++kk) {
      const Scalar w = init ? init[c0 + kk] : Scalar(0);
      FMATTN_SIMD
      for (int cc = 0; cc < CB; ++cc) acc[kk][cc] = w;
    }
    accumulate_block<NK, CB>(acc, a + c0 * as, as, 1, b, bs, 0, depth);
    for (int kk = 0; kk < NK; ++kk) {
      Scalar* orow = out + (c0 + kk) * os;
      FMATTN_SIMD
      for (int cc = 0; cc < CB; ++cc) orow[cc] = acc[kk][cc];
    }
  }

  // lane_block for slots [c0, c_end): blocks of NK slots, the rest in blocks of NK/2, ...
  template <int NK>
  KOKKOS_INLINE_FUNCTION static void lane_blocks(Scalar* out, std::int64_t os, const Scalar* init, const Scalar* a,
                                                 std::int64_t as, const Scalar* b, std::int64_t bs, int depth, int c0,
                                                 int c_end) {
    for (; c0 + NK <= c_end; c0 += NK) lane_block<NK>(out, os, init, a, as, b, bs, depth, c0);
    if constexpr (NK > 1) lane_blocks<NK / 2>(out, os, init, a, as, b, bs, depth, c0, c_end);
  }

  // Rows × channels: acc[r][x] = rescale[r]·acc[r][x] + Σ_{c in [c0, c1)} P(r, c)·V_c[x] for
  // the NR rows from r0 and the CB channels from x0 (fewer past `width`: V rows read in place),
  // where P(r, c) = p[r·prs + c·pcs], V_c is at v + c·vs, and rescale null keeps acc as it is.
  template <int NR>
  KOKKOS_INLINE_FUNCTION static void row_block(Scalar* acc, std::int64_t accs, const Scalar* rescale, const Scalar* p,
                                               std::int64_t prs, std::int64_t pcs, const Scalar* v, std::int64_t vs,
                                               int c0, int c1, int width) {
    Scalar a[NR][CB];
    for (int rr = 0; rr < NR; ++rr) {
      const Scalar f = rescale ? rescale[rr] : Scalar(1);
      const Scalar* arow = acc + rr * accs;
      FMATTN_SIMD
      for (int cc = 0; cc < CB; ++cc) a[rr][cc] = arow[cc] * f;
    }
    if (width == CB)
      accumulate_block<NR, CB>(a, p, prs, pcs, v, vs, c0, c1);
    else
      accumulate_block_tail<NR, CB>(a, p, prs, pcs, v, vs, c0, c1, width);
    for (int rr = 0; rr < NR; ++rr) {
      Scalar* arow = acc + rr * accs;
      FMATTN_SIMD
      for (int cc = 0; cc < CB; ++cc) arow[cc] = a[rr][cc];
    }
  }

  // row_block over rows [r0, r_end) and all channels: blocks of NR rows, the rest in blocks of
  // NR/2, ...; a block of rows [r, r + NR) contracts over the slots range(r, r + NR) returns.
  // Channel blocks past d are computed on zero padding (scratch V) or skipped (V in place).
  template <int NR, class Range>
  KOKKOS_INLINE_FUNCTION void row_blocks(Scalar* acc, std::int64_t accs, const Scalar* rescale, const Scalar* p,
                                         std::int64_t prs, std::int64_t pcs, const Scalar* v, std::int64_t vs,
                                         bool padded, int r0, int r_end, const Range& range) const {
    for (; r0 + NR <= r_end; r0 += NR) {
      const auto span = range(r0, r0 + NR);
      for (int x0 = 0; x0 < (padded ? dp : d); x0 += CB)
        row_block<NR>(acc + r0 * accs + x0, accs, rescale ? rescale + r0 : nullptr, p + r0 * prs, prs, pcs, v + x0, vs,
                      span.first, span.second, padded || x0 + CB <= d ? CB : d - x0);
    }
    if constexpr (NR > 1) row_blocks<NR / 2>(acc, accs, rescale, p, prs, pcs, v, vs, padded, r0, r_end, range);
  }

  // Slots of row r seen in a chunk: a prefix (causal fine chunks are in position order).
  KOKKOS_INLINE_FUNCTION int visible(const Tile& t, const Chunk& ch, int r) const {
    if (!ch.causal) return ch.len;
    const std::int64_t v = t.i0 + r - ch.pos0 + 1;
    return v < 0 ? 0 : v > ch.len ? ch.len : int(v);
  }

  // Slots seen by any of the rows before r_end: in a causal fine chunk the keys past the last
  // of those rows are skipped entirely (half of the diagonal block), elsewhere all slots.
  KOKKOS_INLINE_FUNCTION int seen_by_rows_before(const Tile& t, const Chunk& ch, int r_end) const {
    if (!ch.causal) return ch.len;
    const std::int64_t v = t.i0 + r_end - ch.pos0;
    return v < 0 ? 0 : v > ch.len ? ch.len : int(v);
  }

  // Scores of the chunk's slots, then the online-softmax update of every row (spec §4).
  KOKKOS_INLINE_FUNCTION void process_chunk(const Member& team, const Tile& t, const Chunk& ch) const {
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.lanes / CB), [&](const int lane_block) {
      const int r0 = lane_block * CB;
      lane_blocks<KB>(&t.st(0, r0), LQ, &t.logw(0), ch.kbase, ch.kstride, &t.qt(0, r0), LQ, d, 0,
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
      row_blocks<RB>(&t.acc(0, 0), row_length(d), &t.rescale(0), &t.st(0, 0), 1, LQ, ch.vbase, ch.vstride, true, r0,
                     r0 + RB < t.rows ? r0 + RB : t.rows,
                     [&](int, int r_end) { return Kokkos::pair<int, int>(0, seen_by_rows_before(t, ch, r_end)); });
    });
  }

  // Copies a key and a value row into slot c of the chunk (channels d..dp are zero).
  KOKKOS_INLINE_FUNCTION void gather_slot(const Member& team, const Tile& t, int c, const Scalar* krow,
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
  template <class Op>
  KOKKOS_INLINE_FUNCTION void fine_range(const Member& team, const Tile& t, std::int64_t bh, std::int64_t lo,
                                         std::int64_t hi, bool causal, const Op& op) const {
    for (std::int64_t c0 = lo; c0 < hi; c0 += Tk) {
      const int len = int(hi - c0 < Tk ? hi - c0 : Tk);
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len), [&](const int c) {
        gather_slot(team, t, c, &k(bh, c0 + c - s.key_begin, 0), &v(bh, c0 + c - s.key_begin, 0));
        Kokkos::single(Kokkos::PerThread(team), [&]() { t.logw(c) = Scalar(0); });
      });
      op(Chunk{t.ks.data(), t.vs.data(), row_length(d), row_length(d), len, causal, c0});
    }
  }

  // Streams the coarse slots of levels l_first..l_last, where the tile's cell at level l is
  // b_first >> (l - l_first), gathered Tk at a time. Returns the total weight of zero_sink
  // far-field slots (cells left of the sequence start).
  template <class Op>
  KOKKOS_INLINE_FUNCTION double far_field(const Member& team, const Tile& t, std::int64_t bh, int l_first, int l_last,
                                          std::int64_t b_first, const Op& op) const {
    double sink = 0;
    int filled = 0;
    // The slots are listed (coarse index and log-weight) by one thread, then a chunk's key and
    // value rows are gathered by the whole team at once: one barrier per chunk, not per slot.
    const auto flush = [&]() {
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, filled),
                           [&](const int c) { gather_slot(team, t, c, &kc(bh, t.slot(c), 0), &vc(bh, t.slot(c), 0)); });
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
        const bool full = (cells[j] + 1) * wl <= g.n;
        for (int r = 0; r < g.p; ++r) {
          const double cnt = full ? double(wl / g.p) : g.count(opt.downsampling, l, cells[j], r);
          if (cnt == 0) continue;  // absent coarse token
          const Scalar logw = full || !opt.count_weighting ? full_logw : Scalar(compat::log(cnt));
          const std::int64_t idx = s.coarse_index(l, cells[j], r);
          if (filled == 0) team.team_barrier();  // the previous chunk's readers are done with the list
          const int c = filled++;
          Kokkos::single(Kokkos::PerTeam(team), [&]() {
            t.logw(c) = logw;
            t.slot(c) = idx;
          });
          if (filled == Tk) flush();
        }
      }
    }
    if (filled > 0) flush();
    return opt.boundary == Boundary::zero_sink ? sink : 0.0;
  }

  // A sink of total weight w, score 0 and value 0 (zero_sink boundary) joins every row.
  KOKKOS_INLINE_FUNCTION void add_sink(const Member& team, const Tile& t, double w) const {
    if (w <= 0) return;
    team.team_barrier();
    const Scalar logw = Scalar(compat::log(w));
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows),
                         [&](const int r) { merge(team, t, r, logw, Scalar(1), nullptr); });
  }

  // Fine queries: near field, then the far field streamed (O(n log n)) or merged from the
  // coarse queries' partial sums (linear variant); normalised output.
  KOKKOS_INLINE_FUNCTION void fine_tile(const Member& team) const {
    const std::int64_t bh = (league0 + team.league_rank()) / tiles_per_head;
    const std::int64_t tile = (league0 + team.league_rank()) % tiles_per_head;
    const std::int64_t B = s.block_begin + tile / tiles_per_block;
    Tile t = make_tile(team);
    t.i0 = B * g.m + (tile % tiles_per_block) * Tq;
    const std::int64_t block_end = (B + 1) * g.m < g.n ? (B + 1) * g.m : g.n;
    if (t.i0 >= block_end) return;
    t.rows = int(block_end - t.i0 < Tq ? block_end - t.i0 : Tq);
    const std::int64_t row0 = t.i0 - s.token_begin(g);
    load_queries(team, t, [&](int r) { return &q(bh, row0 + r, 0); });

    const bool causal = g.variant == Variant::causal;
    std::int64_t lo = 0, hi = g.n;
    if (opt.method == Method::fma) g.near_range(B, lo, hi);
    if (causal && hi > t.i0 + t.rows) hi = t.i0 + t.rows;
    const auto softmax = [&](const Chunk& ch) { process_chunk(team, t, ch); };
    fine_range(team, t, bh, lo, hi, causal, softmax);

    if (opt.method == Method::fma) {
      double sink = (B == 0 && opt.boundary == Boundary::zero_sink) ? double(g.m) : 0.0;  // block left of the start
      if (opt.coarse_queries) {
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
          const std::int64_t i = t.i0 + r;
          for (int l = 1; l <= g.L; ++l) {
            const std::int64_t w = g.cell_size(l);
            const std::int64_t idx = s.coarse_index(l, i / w, int((i % w) / (w / g.p)));
            if (part.den(bh, idx) > Scalar(0))
              merge(team, t, r, part.max(bh, idx), part.den(bh, idx), &part.num(bh, idx, 0));
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
      Scalar* orow = &o(bh, row0 + r, 0);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) { orow[x] = t.acc(r, x) * inv; });
      if (lse.extent(0))
        Kokkos::single(Kokkos::PerThread(team),
                       [&]() { lse(bh, row0 + r) = t.rmax(r) + Scalar(compat::log(double(t.rsum(r)))); });
    });
  }

  // Coarse queries of one cell at one level (linear variant): that level's far field only,
  // written as partial sums.
  KOKKOS_INLINE_FUNCTION void coarse_tile(const Member& team) const {
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
    load_queries(team, t, [&](int r) { return &qc(bh, row0 + r, 0); });
    add_sink(team, t, far_field(team, t, bh, l, l, cell, [&](const Chunk& ch) { process_chunk(team, t, ch); }));
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
      Scalar* nrow = &part.num(bh, row0 + r, 0);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) { nrow[x] = t.acc(r, x); });
      Kokkos::single(Kokkos::PerThread(team), [&]() {
        part.max(bh, row0 + r) = t.rmax(r);
        part.den(bh, row0 + r) = t.rsum(r);
      });
    });
  }

  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    if (coarse_pass)
      coarse_tile(team);
    else
      fine_tile(team);
  }
};

// out = attention(q, k, v) for all batch·heads: FMA when opt.method is fma (kc, vc hold the
// coarse levels; with opt.coarse_queries also qc, the coarse queries, and `part` the partial
// sums workspace), exact attention otherwise. With `progress`, the fine tiles run in up to
// `progress_steps` launches and progress(fraction done) is called after each. A non-empty `lse`
// receives each row's log-sum-exp (log of the softmax denominator), which the backward needs.
inline constexpr int progress_steps = 100;

template <class ExecSpace, class Scalar>
void evaluate_attention(
    const ExecSpace& space, const Geometry& g, const Shard& shard, const AttentionOptions& opt,
    typename AttentionTiles<ExecSpace, Scalar>::In q, typename AttentionTiles<ExecSpace, Scalar>::In k,
    typename AttentionTiles<ExecSpace, Scalar>::In v, typename AttentionTiles<ExecSpace, Scalar>::In qc,
    typename AttentionTiles<ExecSpace, Scalar>::In kc, typename AttentionTiles<ExecSpace, Scalar>::In vc,
    const Partials<Scalar, typename ExecSpace::memory_space>& part, typename AttentionTiles<ExecSpace, Scalar>::Out out,
    const std::function<void(double)>& progress = {},
    Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecSpace::memory_space> lse = {}) {
  using K = AttentionTiles<ExecSpace, Scalar>;
  K f;
  f.g = g;
  f.s = shard;
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
    typename K::Policy policy(space, int(heads * f.tiles_per_head), Kokkos::AUTO);
    Kokkos::parallel_for("fmattn::attention::coarse_queries",
                         policy.set_scratch_size(f.scratch_level, Kokkos::PerTeam(scratch)), f);
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
    typename K::Policy policy(space, int(std::min(piece, tiles - f.league0)), Kokkos::AUTO);
    Kokkos::parallel_for("fmattn::attention::tiles", policy.set_scratch_size(f.scratch_level, Kokkos::PerTeam(scratch)),
                         f);
    if (progress) {
      space.fence();
      progress(double(std::min(f.league0 + piece, tiles)) / double(tiles));
    }
  }
}

}  // namespace fmattn
