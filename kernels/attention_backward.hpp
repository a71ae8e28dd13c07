// The backward pass of Fast Multipole Attention (spec §1–5) for a scalar loss whose gradient
// with respect to the output is dO: gradients of Q, K, V, of the coarse keys and values of
// every level and, for learned downsampling, of the weights and biases of every level.
//
// Flash-style and tiled like the forward (attention_tiles.hpp): scores are recomputed tile by
// tile, never stored; each row brings its log-sum-exp from the forward and delta_i = dO_i·O_i,
// so the extra memory is O(n·d). With P_ij = α_j exp(σ_ij − lse_i) over the slots j of query i:
//   dV_j += P_ij dO_i,   dS_ij = P_ij (dO_i · V_j − delta_i),
//   dQ_i += s dS_ij K_j, dK_j += s dS_ij Q_i,
// where K_j, V_j are fine tokens (near field) or coarse tokens (far field). Four tile passes:
//   prep    delta, which rows have dO ≠ 0, and the lane matrices (s·Q)^T and dO^T;
//   coarse  one team per coarse cell: its dK̃, dṼ over the queries whose far field lists it;
//   queries one team per query tile: dQ over its near-field key chunks and far-field slots;
//   keys    one team per key tile: dK, dV over the query chunks that see it (the inverse
//           near field), plus each key's share of the coarse gradients (the transpose of spec §2).
// Then the learned weights and biases gather theirs over heads and cells.
//
// Determinism: every gradient element is produced by one thread that sums its terms in a fixed
// order, so no atomics and results bit-identical from run to run and for any thread count.
// Query chunks whose dO rows are all zero are skipped: a loss on sampled rows (fmattn fit) costs
// about what those rows see.
#pragma once

#include "attention_tiles.hpp"
#include "coarse_levels.hpp"
#include "geometry.hpp"
#include "kokkos_compat.hpp"
#include "options.hpp"
#include "simd.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn {

template <class ExecSpace, class Scalar>
struct AttentionBackward {
  using Tiles = AttentionTiles<ExecSpace, Scalar>;
  using Mem = typename ExecSpace::memory_space;
  using In = Kokkos::View<const Scalar***, Kokkos::LayoutRight, Mem>;
  using Out = Kokkos::View<Scalar***, Kokkos::LayoutRight, Mem>;
  using Rows = Kokkos::View<Scalar**, Kokkos::LayoutRight, Mem>;
  using ConstRows = Kokkos::View<const Scalar**, Kokkos::LayoutRight, Mem>;
  using Flags = Kokkos::View<std::uint8_t**, Kokkos::LayoutRight, Mem>;
  using Grad = Kokkos::View<double*, Mem>;
  using Policy = typename Tiles::Policy;
  using Member = typename Tiles::Member;
  using Tile = typename Tiles::Tile;
  using Chunk = typename Tiles::Chunk;
  static constexpr int Tq = Tiles::Tq, Tk = Tiles::Tk, CB = Tiles::CB, KB = Tiles::KB, RB = Tiles::RB,
                       LQ = Tiles::LQ;
  // Coarse tokens of one cell handled at a time: they are score rows (Tk) and output rows (Tq).
  static constexpr int slot_group = Tq < Tk ? Tq : Tk;
  struct PrepTag {};
  struct QueryTag {};
  struct KeyTag {};
  struct CoarseTag {};
  struct WeightTag {};
  struct BiasTag {};

  // Geometry, options and the chunk streaming of the forward. Its k and v are the keys and
  // values for the query pass, and the queries and dO for the key pass (both stream rows).
  Tiles tiles;
  Tiles row_stream;  // the same with k = q and v = dout: the key pass streams query rows
  Geometry g;
  AttentionOptions opt;
  int d = 0;
  In q, k, v, out, dout;             // forward inputs and output, output gradient [bh][n][d]
  In kc, vc;                         // coarse levels [bh][coarse tokens][d]
  LevelWeights<Scalar, Mem> kw, vw;  // learned downsampling of K and V
  ConstRows lse;                     // [bh][n] from the forward
  Rows delta;                        // [bh][n] dO_i · O_i
  Flags active;                      // [bh][n] dO_i != 0
  Out qt, dot;                       // (s·Q)^T and dO^T [bh][d][ldn], zero past n
  std::int64_t ldn = 0;              // row length of qt and dot: n rounded up, plus a cache line
  Out dq, dk, dv;                    // [bh][n][d]; an empty View is not computed
  Out dkc, dvc;                      // [bh][coarse tokens][d]
  Grad dkw, dkb, dvw, dvb;           // weight gradients, flattened like the weights
  std::int64_t tiles_per_block = 0, tiles_per_head = 0;

  // Row length of the lane matrices: whole lane blocks past n (tiles read up to CB lanes past
  // their last row), and not a power of two so that their rows do not share cache sets.
  static std::int64_t lane_row_length(std::int64_t n) { return (n + CB - 1) / CB * CB + Tiles::pad + CB; }

  KOKKOS_INLINE_FUNCTION bool any_active(std::int64_t bh, std::int64_t lo, std::int64_t hi) const {
    for (std::int64_t i = lo; i < hi; ++i)
      if (active(bh, i)) return true;
    return false;
  }

  // delta, active, and the transposed lane matrices; position i past n only clears the lanes.
  KOKKOS_INLINE_FUNCTION void operator()(PrepTag, const std::int64_t bh, const std::int64_t i) const {
    const Scalar s = Scalar(opt.scale);
    if (i >= g.n) {
      for (int x = 0; x < d; ++x) qt(bh, x, i) = dot(bh, x, i) = Scalar(0);
      return;
    }
    Scalar sum = 0;
    bool any = false;
    for (int x = 0; x < d; ++x) {
      const Scalar g_ = dout(bh, i, x);
      sum += g_ * out(bh, i, x);
      any = any || g_ != Scalar(0);
      qt(bh, x, i) = s * q(bh, i, x);
      dot(bh, x, i) = g_;
    }
    delta(bh, i) = sum;
    active(bh, i) = any;
  }

  // Scores of a lane block of queries (rows of the transposed lane matrices from position i0)
  // against `len` slots from slot c0: S^T into t.st (plus the slot log-weights), dP^T into t.dpt.
  KOKKOS_INLINE_FUNCTION void query_lane_scores(const Tile& t, std::int64_t bh, std::int64_t i0, int r0,
                                                const Scalar* krows, int kstride, const Scalar* vrows, int vstride,
                                                int c0, int c_end) const {
    Tiles::template lane_blocks<KB>(&t.st(0, r0), LQ, &t.logw(0), krows, kstride, &qt(bh, 0, i0 + r0), ldn, d, c0,
                                    c_end);
    Tiles::template lane_blocks<KB>(&t.dpt(0, r0), LQ, nullptr, vrows, vstride, &dot(bh, 0, i0 + r0), ldn, d, c0,
                                    c_end);
  }

  // dS^T = P^T (dP^T − delta) into t.st for slots [0, c_end) of lanes r0.. (queries from i0),
  // P = exp(S − lse) on the slots lane r sees (the first seen(r)), 0 elsewhere; P^T stays in
  // t.dpt's place only when keep_p (the coarse pass needs both).
  template <class Seen>
  KOKKOS_INLINE_FUNCTION void query_lane_softmax(const Tile& t, std::int64_t bh, std::int64_t i0, int r0, int c_end,
                                                 const Seen& seen, bool keep_p) const {
    Scalar l[CB], dl[CB];
    int vis[CB];
    for (int cc = 0; cc < CB; ++cc) {
      const bool row = r0 + cc < t.rows;
      l[cc] = row ? lse(bh, i0 + r0 + cc) : Scalar(0);
      dl[cc] = row ? delta(bh, i0 + r0 + cc) : Scalar(0);
      vis[cc] = row ? seen(r0 + cc) : 0;
    }
    for (int c = 0; c < c_end; ++c) {
      Scalar* srow = &t.st(c, r0);
      Scalar* drow = &t.dpt(c, r0);
      FMATTN_SIMD
      for (int cc = 0; cc < CB; ++cc) {
        const Scalar p = c < vis[cc] ? exp_nonpositive(Scalar(srow[cc] - l[cc])) : Scalar(0);
        const Scalar ds = p * (drow[cc] - dl[cc]);
        srow[cc] = keep_p ? p : ds;
        drow[cc] = keep_p ? ds : drow[cc];
      }
    }
  }

  // dQ of one query tile: a chunk of key slots (fine keys or gathered coarse tokens).
  KOKKOS_INLINE_FUNCTION void query_chunk(const Member& team, const Tile& t, std::int64_t bh, const Chunk& ch) const {
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.lanes / CB), [&](const int lane_block) {
      const int r0 = lane_block * CB;
      const int len = tiles.seen_by_rows_before(t, ch, r0 + CB);
      query_lane_scores(t, bh, t.i0, r0, ch.kbase, ch.kstride, ch.vbase, ch.vstride, 0, len);
      query_lane_softmax(t, bh, t.i0, r0, len, [&](int r) { return tiles.visible(t, ch, r); }, false);
      // A block of RB rows may reach into the next lanes' slots: zero for these lanes.
      for (int c = len; c < tiles.seen_by_rows_before(t, ch, r0 + CB + RB - 1); ++c) {
        Scalar* srow = &t.st(c, r0);
        FMATTN_SIMD
        for (int cc = 0; cc < CB; ++cc) srow[cc] = Scalar(0);
      }
    });
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, (t.rows + RB - 1) / RB), [&](const int block) {
      const int r0 = block * RB;
      tiles.template row_blocks<RB>(&t.acc(0, 0), Tiles::row_length(d), nullptr, &t.st(0, 0), 1, LQ, ch.kbase,
                                    ch.kstride, true, r0, r0 + RB < t.rows ? r0 + RB : t.rows, [&](int, int r_end) {
                                      return Kokkos::pair<int, int>(0, tiles.seen_by_rows_before(t, ch, r_end));
                                    });
    });
  }

  KOKKOS_INLINE_FUNCTION void clear_rows(const Member& team, const typename Tiles::Mat& m, int rows) const {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows), [&](const int r) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, int(m.extent(1))), [&](const int x) { m(r, x) = 0; });
    });
  }

  // Query tile: (batch·head, fine block, tile of the block), as the forward's tiles.
  KOKKOS_INLINE_FUNCTION void operator()(QueryTag, const Member& team) const {
    const std::int64_t bh = team.league_rank() / tiles_per_head, tile = team.league_rank() % tiles_per_head;
    const std::int64_t B = tile / tiles_per_block;
    Tile t = tiles.make_tile(team, true);
    t.i0 = B * g.m + (tile % tiles_per_block) * Tq;
    const std::int64_t block_end = (B + 1) * g.m < g.n ? (B + 1) * g.m : g.n;
    if (t.i0 >= block_end) return;
    t.rows = int(block_end - t.i0 < Tq ? block_end - t.i0 : Tq);
    t.lanes = (t.rows + CB - 1) / CB * CB;
    const bool live = any_active(bh, t.i0, t.i0 + t.rows);
    if (live) {
      clear_rows(team, t.acc, t.rows);
      const auto chunk = [&](const Chunk& ch) { query_chunk(team, t, bh, ch); };
      const bool causal = g.variant == Variant::causal;
      std::int64_t lo = 0, hi = g.n;
      if (opt.method == Method::fma) g.near_range(B, lo, hi);
      if (causal && hi > t.i0 + t.rows) hi = t.i0 + t.rows;
      tiles.fine_range(team, t, bh, lo, hi, causal, chunk);
      if (opt.method == Method::fma) tiles.far_field(team, t, bh, 1, g.L, B, chunk);
    }
    team.team_barrier();
    const Scalar s = Scalar(opt.scale);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
      Scalar* row = &dq(bh, t.i0 + r, 0);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d),
                           [&](const int x) { row[x] = live ? s * t.acc(r, x) : Scalar(0); });
    });
  }

  // dK, dV of one key tile (keys j0.. as lanes): a chunk of query rows (Q in ks, dO in vs) from
  // position ch.pos0. A causal query i sees key j when i >= j: lane r sees the slots from first(r).
  KOKKOS_INLINE_FUNCTION int first_query(const Tile& t, const Chunk& ch, int r) const {
    if (!ch.causal) return 0;
    const std::int64_t f = t.i0 + r - ch.pos0;
    return f < 0 ? 0 : f > ch.len ? ch.len : int(f);
  }

  KOKKOS_INLINE_FUNCTION void key_chunk(const Member& team, const Tile& t, std::int64_t bh, const Chunk& ch) const {
    if (!any_active(bh, ch.pos0, ch.pos0 + ch.len)) return;
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, ch.len), [&](const int c) {
      Kokkos::single(Kokkos::PerThread(team), [&]() {
        t.logw(c) = -lse(bh, ch.pos0 + c);
        t.aux(c) = -delta(bh, ch.pos0 + c);
      });
    });
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.lanes / CB), [&](const int lane_block) {
      const int r0 = lane_block * CB, c0 = first_query(t, ch, r0);
      // S = Q_c·(sK)^T − lse_c and dP − delta_c = dO_c·V^T − delta_c, slots × key lanes.
      Tiles::template lane_blocks<KB>(&t.st(0, r0), LQ, &t.logw(0), ch.kbase, ch.kstride, &t.qt(0, r0), LQ, d, c0,
                                      ch.len);
      Tiles::template lane_blocks<KB>(&t.dpt(0, r0), LQ, &t.aux(0), ch.vbase, ch.vstride, &t.vt(0, r0), LQ, d, c0,
                                      ch.len);
      int from[CB];
      for (int cc = 0; cc < CB; ++cc) from[cc] = r0 + cc < t.rows ? first_query(t, ch, r0 + cc) : ch.len;
      for (int c = c0; c < ch.len; ++c) {
        Scalar* srow = &t.st(c, r0);
        Scalar* drow = &t.dpt(c, r0);
        FMATTN_SIMD
        for (int cc = 0; cc < CB; ++cc) {
          const Scalar p = c >= from[cc] ? exp_nonpositive(srow[cc]) : Scalar(0);
          srow[cc] = p;
          drow[cc] *= p;
        }
      }
      // Blocks of RB rows starting in earlier lanes read from their first row's first slot.
      const int lowest = first_query(t, ch, r0 - RB + 1 > 0 ? r0 - RB + 1 : 0);
      for (int c = lowest; c < c0; ++c) {
        Scalar* srow = &t.st(c, r0);
        Scalar* drow = &t.dpt(c, r0);
        FMATTN_SIMD
        for (int cc = 0; cc < CB; ++cc) srow[cc] = drow[cc] = Scalar(0);
      }
    });
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, (t.rows + RB - 1) / RB), [&](const int block) {
      const int r0 = block * RB, r_end = r0 + RB < t.rows ? r0 + RB : t.rows;
      const auto range = [&](int r_first, int) { return Kokkos::pair<int, int>(first_query(t, ch, r_first), ch.len); };
      const int ld = Tiles::row_length(d);
      tiles.template row_blocks<RB>(&t.acc2(0, 0), ld, nullptr, &t.st(0, 0), 1, LQ, ch.vbase, ch.vstride, true, r0,
                                    r_end, range);
      tiles.template row_blocks<RB>(&t.acc(0, 0), ld, nullptr, &t.dpt(0, 0), 1, LQ, ch.kbase, ch.kstride, true, r0,
                                    r_end, range);
    });
  }

  // Adds fine token j's share of the gradients of the coarse tokens made from it, every level.
  KOKKOS_INLINE_FUNCTION void add_coarse_share(std::int64_t h, std::int64_t j, Scalar* dkr, Scalar* dvr) const {
    for (int l = 1; l <= g.L; ++l) {
      const std::int64_t w = g.cell_size(l), cell = j / w, pos = j % w, base = g.level_offset(l) + cell * g.p;
      if (opt.downsampling == Downsampling::average) {
        const int r = int(pos / (w / g.p));
        const Scalar inv = Scalar(1.0 / g.count(Downsampling::average, l, cell, r));
        const Scalar* gk = &dkc(h, base + r, 0);
        const Scalar* gv = &dvc(h, base + r, 0);
        FMATTN_SIMD
        for (int c = 0; c < d; ++c) {
          dkr[c] += inv * gk[c];
          dvr[c] += inv * gv[c];
        }
        continue;
      }
      const std::int64_t off = g.weight_offset(l, d);
      for (int r = 0; r < g.p; ++r) {
        const Scalar* wk = kw.weight.data() + off + (r * w + pos) * d;
        const Scalar* wv = vw.weight.data() + off + (r * w + pos) * d;
        const Scalar* gk = &dkc(h, base + r, 0);
        const Scalar* gv = &dvc(h, base + r, 0);
        FMATTN_SIMD
        for (int c = 0; c < d; ++c) {
          dkr[c] += wk[c] * gk[c];
          dvr[c] += wv[c] * gv[c];
        }
      }
    }
  }

  // Key tile: (batch·head, fine block, tile of the block). Its keys are seen by the queries of
  // the blocks whose near field holds them (FMA), or by all queries allowed (exact).
  KOKKOS_INLINE_FUNCTION void operator()(KeyTag, const Member& team) const {
    const std::int64_t bh = team.league_rank() / tiles_per_head, tile = team.league_rank() % tiles_per_head;
    const std::int64_t B = tile / tiles_per_block;
    Tile t = tiles.make_tile(team, true);
    t.i0 = B * g.m + (tile % tiles_per_block) * Tq;
    const std::int64_t block_end = (B + 1) * g.m < g.n ? (B + 1) * g.m : g.n;
    if (t.i0 >= block_end) return;
    t.rows = int(block_end - t.i0 < Tq ? block_end - t.i0 : Tq);
    t.lanes = (t.rows + CB - 1) / CB * CB;
    const Scalar s = Scalar(opt.scale);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.lanes), [&](const int r) {
      const bool row = r < t.rows;
      for (int x = 0; x < d; ++x) {
        t.qt(x, r) = row ? s * k(bh, t.i0 + r, x) : Scalar(0);
        t.vt(x, r) = row ? v(bh, t.i0 + r, x) : Scalar(0);
      }
    });
    clear_rows(team, t.acc, t.rows);
    clear_rows(team, t.acc2, t.rows);
    const bool causal = g.variant == Variant::causal;
    std::int64_t lo = causal ? t.i0 : 0, hi = g.n;
    if (opt.method == Method::fma) {
      if (!causal) lo = (B - 1) * g.m > 0 ? (B - 1) * g.m : 0;
      hi = (B + 2) * g.m < g.n ? (B + 2) * g.m : g.n;
    }
    row_stream.fine_range(team, t, bh, lo, hi, causal, [&](const Chunk& ch) { key_chunk(team, t, bh, ch); });
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
      Scalar* dkr = &dk(bh, t.i0 + r, 0);
      Scalar* dvr = &dv(bh, t.i0 + r, 0);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) {
        dkr[x] = s * t.acc(r, x);
        dvr[x] = t.acc2(r, x);
      });
      if (opt.method == Method::fma)
        Kokkos::single(Kokkos::PerThread(team), [&]() { add_coarse_share(bh, t.i0 + r, dkr, dvr); });
    });
  }

  // Coarse cell: (batch·head, level, cell), levels finest first. Its present coarse tokens
  // (a prefix of the cell's p) are score rows; the queries of every cell whose far field lists
  // it stream past as lanes, read in place from the lane matrices and the rows of Q and dO.
  KOKKOS_INLINE_FUNCTION void operator()(CoarseTag, const Member& team) const {
    const std::int64_t bh = team.league_rank() / tiles_per_head;
    std::int64_t cell = team.league_rank() % tiles_per_head;
    int l = 1;
    while (cell >= g.num_cells(l)) cell -= g.num_cells(l++);
    const std::int64_t w = g.cell_size(l), cells = g.num_cells(l), base = g.level_offset(l) + cell * g.p;
    int present = 0;
    while (present < g.p && g.count(opt.downsampling, l, cell, present) > 0) ++present;
    Tile t = tiles.make_tile(team, true);
    const Scalar s = Scalar(opt.scale);
    const int ld = Tiles::row_length(d);
    for (int s0 = 0; s0 < g.p; s0 += slot_group) {
      const int slots = present - s0 < 0 ? 0 : present - s0 < slot_group ? present - s0 : slot_group;
      team.team_barrier();
      clear_rows(team, t.acc, slot_group);
      clear_rows(team, t.acc2, slot_group);
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, slots), [&](const int c) {
        Kokkos::single(Kokkos::PerThread(team), [&]() {
          const double cnt = g.count(opt.downsampling, l, cell, s0 + c);
          t.logw(c) = opt.count_weighting ? Scalar(compat::log(cnt)) : Scalar(0);
        });
      });
      for (std::int64_t b = cell - 3; slots > 0 && b <= cell + 3; ++b) {
        if (b < 0 || b >= cells || b * w >= g.n) continue;
        std::int64_t list[max_far_cells];
        const int nc = g.far_cells(l, b, list);
        bool listed = false;
        for (int j = 0; j < nc; ++j) listed = listed || list[j] == cell;
        if (!listed) continue;
        const std::int64_t end = (b + 1) * w < g.n ? (b + 1) * w : g.n;
        for (std::int64_t i0 = b * w; i0 < end; i0 += Tq) {
          t.rows = int(end - i0 < Tq ? end - i0 : Tq);
          t.lanes = (t.rows + CB - 1) / CB * CB;
          if (!any_active(bh, i0, i0 + t.rows)) continue;
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.lanes / CB), [&](const int lane_block) {
            const int r0 = lane_block * CB;
            query_lane_scores(t, bh, i0, r0, &kc(bh, base + s0, 0), d, &vc(bh, base + s0, 0), d, 0, slots);
            query_lane_softmax(t, bh, i0, r0, slots, [&](int) { return slots; }, true);
          });
          team.team_barrier();
          // dṼ += P^T·dO and dK̃ += dS^T·Q: token rows, contracted over the query lanes.
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, (slots + RB - 1) / RB), [&](const int block) {
            const int r0 = block * RB, r_end = r0 + RB < slots ? r0 + RB : slots;
            const auto range = [&](int, int) { return Kokkos::pair<int, int>(0, t.rows); };
            tiles.template row_blocks<RB>(&t.acc2(0, 0), ld, nullptr, &t.st(0, 0), LQ, 1, &dout(bh, i0, 0), d, false,
                                          r0, r_end, range);
            tiles.template row_blocks<RB>(&t.acc(0, 0), ld, nullptr, &t.dpt(0, 0), LQ, 1, &q(bh, i0, 0), d, false, r0,
                                          r_end, range);
          });
        }
      }
      team.team_barrier();
      const int group = g.p - s0 < slot_group ? g.p - s0 : slot_group;
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, group), [&](const int c) {
        Scalar* gk = &dkc(bh, base + s0 + c, 0);
        Scalar* gv = &dvc(bh, base + s0 + c, 0);
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) {
          gk[x] = c < slots ? s * t.acc(c, x) : Scalar(0);
          gv[x] = c < slots ? t.acc2(c, x) : Scalar(0);
        });
      });
    }
  }

  // Weights W_l[r][pos][:] of K and V for one block of positions of one level: the sum over
  // heads and cells of the coarse gradient times the fine token it multiplied. A block of
  // positions is a contiguous run of fine rows in every cell, so K and V stream through once
  // per level and block instead of once per position; cells whose coarse gradients are zero
  // (seen by no query with a nonzero dO) are skipped.
  static constexpr int weight_block = 16;
  KOKKOS_INLINE_FUNCTION static std::int64_t weight_blocks(const Geometry& g, int l) {
    return (g.cell_size(l) + weight_block - 1) / weight_block;
  }

  KOKKOS_INLINE_FUNCTION bool zero_row(const Scalar* x) const {
    bool zero = true;
    for (int c = 0; c < d; ++c) zero = zero && x[c] == Scalar(0);
    return zero;
  }

  KOKKOS_INLINE_FUNCTION void operator()(WeightTag, std::int64_t f) const {
    int l = 1;
    while (f >= weight_blocks(g, l)) f -= weight_blocks(g, l++);
    const std::int64_t w = g.cell_size(l), pos0 = f * weight_block, off = g.weight_offset(l, d);
    const std::int64_t base = g.level_offset(l);
    const int npos = int(w - pos0 < weight_block ? w - pos0 : weight_block);
    for (int r = 0; r < g.p; ++r)
      for (std::int64_t x = 0; x < npos * d; ++x) {
        dkw(off + (r * w + pos0) * d + x) = 0;
        dvw(off + (r * w + pos0) * d + x) = 0;
      }
    for (std::int64_t h = 0; h < std::int64_t(k.extent(0)); ++h)
      for (std::int64_t cell = 0; cell * w + pos0 < g.n; ++cell) {
        const std::int64_t row0 = cell * w + pos0;
        const int rows = int(g.n - row0 < npos ? g.n - row0 : npos);
        for (int r = 0; r < g.p; ++r) {
          const Scalar* gk = &dkc(h, base + cell * g.p + r, 0);
          const Scalar* gv = &dvc(h, base + cell * g.p + r, 0);
          if (zero_row(gk) && zero_row(gv)) continue;
          for (int j = 0; j < rows; ++j) {
            const Scalar* xk = &k(h, row0 + j, 0);
            const Scalar* xv = &v(h, row0 + j, 0);
            double* sk = &dkw(off + (r * w + pos0 + j) * d);
            double* sv = &dvw(off + (r * w + pos0 + j) * d);
            FMATTN_SIMD
            for (int c = 0; c < d; ++c) {
              sk[c] += double(gk[c]) * double(xk[c]);
              sv[c] += double(gv[c]) * double(xv[c]);
            }
          }
        }
      }
  }

  // Row b_l[r][:] of the K and V biases (f = (l - 1) * p + r): the sum of the coarse gradients
  // over heads and cells (absent tokens hold zero gradients).
  KOKKOS_INLINE_FUNCTION void operator()(BiasTag, const std::int64_t f) const {
    const int r = int(f % g.p), l = int(f / g.p) + 1;
    const std::int64_t base = g.level_offset(l) + r;
    double* sk = &dkb(f * d);
    double* sv = &dvb(f * d);
    for (int c = 0; c < d; ++c) sk[c] = sv[c] = 0;
    for (std::int64_t h = 0; h < std::int64_t(k.extent(0)); ++h)
      for (std::int64_t cell = 0; cell < g.num_cells(l); ++cell) {
        const Scalar* gk = &dkc(h, base + cell * g.p, 0);
        const Scalar* gv = &dvc(h, base + cell * g.p, 0);
        FMATTN_SIMD
        for (int c = 0; c < d; ++c) {
          sk[c] += double(gk[c]);
          sv[c] += double(gv[c]);
        }
      }
  }
};

// Runs the passes in dependency order: prep, coarse cells, query tiles, key tiles, weights.
// `f` carries the inputs, the workspace and the output Views (its tiles member the forward's
// geometry and coarse levels); empty dq/dk/dv or dkw skip those parts.
template <class ExecSpace, class Scalar>
void run_attention_backward(const ExecSpace& space, AttentionBackward<ExecSpace, Scalar> f) {
  using K = AttentionBackward<ExecSpace, Scalar>;
  using Idx = Kokkos::IndexType<std::int64_t>;
  const std::int64_t H = std::int64_t(f.q.extent(0));
  if (H == 0) return;
  const bool fma = f.opt.method == Method::fma && f.g.L > 0;
  const bool coarse = fma && (f.dk.extent(0) || f.dkw.extent(0));
  Kokkos::parallel_for("fmattn::backward::prep",
                       Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>, Idx, typename K::PrepTag>(
                           space, {0, 0}, {H, std::int64_t(f.ldn)}),
                       f);
  const std::size_t scratch = K::Tiles::scratch_bytes(f.d, true);
  f.tiles.scratch_level = scratch <= std::size_t(K::Policy::scratch_size_max(0)) ? 0 : 1;
  f.row_stream.scratch_level = f.tiles.scratch_level;
  auto launch = [&](const char* name, auto tag, std::int64_t teams) {
    using Tag = decltype(tag);
    Kokkos::TeamPolicy<ExecSpace, Kokkos::Schedule<Kokkos::Dynamic>, Tag> policy(space, int(teams), Kokkos::AUTO);
    Kokkos::parallel_for(name, policy.set_scratch_size(f.tiles.scratch_level, Kokkos::PerTeam(scratch)), f);
  };
  if (coarse) {
    std::int64_t cells = 0;
    for (int l = 1; l <= f.g.L; ++l) cells += f.g.num_cells(l);
    f.tiles_per_head = cells;
    launch("fmattn::backward::coarse_cells", typename K::CoarseTag{}, H * cells);
  } else if (f.dkc.extent(0)) {
    Kokkos::deep_copy(space, f.dkc, Scalar(0));
    Kokkos::deep_copy(space, f.dvc, Scalar(0));
  }
  f.tiles_per_block = (f.g.m + K::Tq - 1) / K::Tq;
  f.tiles_per_head = present_blocks(f.g) * f.tiles_per_block;
  if (f.dq.extent(0)) launch("fmattn::backward::query_tiles", typename K::QueryTag{}, H * f.tiles_per_head);
  if (f.dk.extent(0)) launch("fmattn::backward::key_tiles", typename K::KeyTag{}, H * f.tiles_per_head);
  if (f.dkw.extent(0)) {
    std::int64_t blocks = 0;
    for (int l = 1; l <= f.g.L; ++l) blocks += K::weight_blocks(f.g, l);
    Kokkos::parallel_for("fmattn::backward::weights",
                         Kokkos::RangePolicy<ExecSpace, Idx, typename K::WeightTag>(space, 0, blocks), f);
    Kokkos::parallel_for("fmattn::backward::biases",
                         Kokkos::RangePolicy<ExecSpace, Idx, typename K::BiasTag>(space, 0, f.dkb.extent(0) / f.d), f);
  }
}

}  // namespace fmattn
