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
#include "kernels/attention_tiles.hpp"
#include "kernels/coarse_levels.hpp"
#include "kernels/interaction_walk.hpp"
#include "kernels/kokkos_compat.hpp"
#include "kernels/online_softmax.hpp"
#include "kernels/simd.hpp"
#include "kernels/tile_products.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

template <class ExecSpace, class Scalar>
struct AttentionBackward {
  using Tiles = AttentionTiles<ExecSpace, Scalar>;
  using Mem = typename ExecSpace::memory_space;
  using In = Kokkos::View<const Scalar***, Kokkos::LayoutRight, Mem>;
  using Out = Kokkos::View<Scalar***, Kokkos::LayoutRight, Mem>;
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

  // Geometry, options, coarse levels and the key streaming of the forward.
  Tiles tiles;
  Geometry g;
  AttentionOptions opt;
  int d = 0;
  In q, k, v, out, dout;             // forward inputs and output, output gradient [bh][n][d]
  In kc, vc;                         // coarse levels [bh][coarse tokens][d]
  LevelWeights<Scalar, Mem> kw, vw;  // learned downsampling of K and V
  ConstRows lse;                     // [bh][n] from the forward
  Rows delta;                        // [bh][n] dO_i · O_i
  Out dq, dk, dv;                    // [bh][n][d]; an empty View is not computed
  Out dkc, dvc;                      // [bh][coarse tokens][d]
  Grad dkw, dkb, dvw, dvb;           // weight gradients, flattened like the weights
  bool want_dq = false, want_dkv = false, want_coarse = false;
  bool far_done = false;  // the far pass wrote dQ: the pairs add to it
  // The far pass's windows: team T holds, for each level l, rows for the cells from
  // T·span / w_l − 3 on, window_cells[l] of them, p rows each, from window_offset[l]; rows of
  // dK̃ terms in pk and of dṼ terms in pv, [bh][teams · window_rows][d].
  std::int64_t span = 0, blocks_per_team = 0, teams_per_head = 0, window_rows = 0;
  std::int64_t window_offset[max_levels + 2] = {};
  std::int64_t window_cells[max_levels + 2] = {};
  Out pk, pv;
  // The pairs: tiles of tile_rows positions (inside fine blocks for FMA); this launch's diagonal.
  std::int64_t tile_rows = 0, tiles_per_head = 0, diagonal = 0;

  // Loads the tile's (s·Q)^T into t.qt and dO^T into t.vt (zero past its rows) and writes the
  // delta of its rows. Returns whether any row has a nonzero dO.
  KOKKOS_INLINE_FUNCTION bool load_query_tile(const Member& team, const Tile& t, std::int64_t bh) const {
    const Scalar s = Scalar(opt.scale);
    int live = 0;
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(team, t.lanes),
        [&](const int r, int& any) {
          const bool row = r < t.rows;
          const Scalar* qi = row ? &q(bh, t.i0 + r, 0) : nullptr;
          const Scalar* gi = row ? &dout(bh, t.i0 + r, 0) : nullptr;
          for (int x = 0; x < d; ++x) {
            t.qt(x, r) = row ? s * qi[x] : Scalar(0);
            t.vt(x, r) = row ? gi[x] : Scalar(0);
          }
          if (!row) return;
          const Scalar* o = &out(bh, t.i0 + r, 0);
          Scalar sum = 0;
          bool nonzero = false;
          for (int x = 0; x < d; ++x) {
            sum += gi[x] * o[x];
            nonzero = nonzero || gi[x] != Scalar(0);
          }
          Kokkos::single(Kokkos::PerThread(team), [&]() { delta(bh, t.i0 + r) = sum; });
          any = any || nonzero;
        },
        Kokkos::LOr<int>(live));
    return live != 0;
  }

  // Scores of the lane block of queries from r0 (t.qt, t.vt) against slots [c0, c_end): S^T
  // plus the slot log-weights into t.st, dP^T into t.dpt.
  template <int NK>
  KOKKOS_INLINE_FUNCTION void query_lane_scores(const Tile& t, int r0, const Scalar* krows, int kstride,
                                                const Scalar* vrows, int vstride, int c0, int c_end) const {
    lane_blocks<NK, CB>(&t.st(0, r0), LQ, &t.logw(0), krows, kstride, &t.qt(0, r0), LQ, d, c0, c_end);
    lane_blocks<NK, CB>(&t.dpt(0, r0), LQ, nullptr, vrows, vstride, &t.vt(0, r0), LQ, d, c0, c_end);
  }

  // Turns the lane block from r0 of t.st (S^T + log-weights) and t.dpt (dP^T), slots
  // [0, c_end), into P^T (t.st) and s·dS^T (t.dpt): P = exp(S − lse) on the first seen(r) slots
  // of lane r, 0 elsewhere.
  template <class Seen>
  KOKKOS_INLINE_FUNCTION void query_lane_softmax(const Tile& t, std::int64_t bh, int r0, int c_end,
                                                 const Seen& seen) const {
    const Scalar s = Scalar(opt.scale);
    Scalar l[CB], dl[CB];
    int vis[CB];
    for (int cc = 0; cc < CB; ++cc) {
      const bool row = r0 + cc < t.rows;
      l[cc] = row ? lse(bh, t.i0 + r0 + cc) : Scalar(0);
      dl[cc] = row ? delta(bh, t.i0 + r0 + cc) : Scalar(0);
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

  KOKKOS_INLINE_FUNCTION void clear_rows(const Member& team, const typename Tiles::Mat& m, int rows) const {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows), [&](const int r) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, int(m.extent(1))), [&](const int x) { m(r, x) = 0; });
    });
  }

  // One (query tile, chunk of slots) pair: P and dS once, then dQ += dS·K into t.acc for the
  // tile's rows and, when `slots` is set, the slots' terms dS^T·Q into t.acc2 and P^T·dO into
  // t.acc3 (contracted over the tile's rows, read in place), which slot_rows(position, c,
  // terms_k, terms_v) then stores (position: the key's, for fine chunks). Causal fine chunks: a lane block scores only
  // the slots its rows see.
  template <class SlotRows>
  KOKKOS_INLINE_FUNCTION void slot_chunk(const Member& team, const Tile& t, std::int64_t bh, const Chunk& ch,
                                         bool slots, const SlotRows& slot_rows) const {
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.lanes / CB), [&](const int lane_block) {
      const int r0 = lane_block * CB;
      const int len = tiles.seen_by_rows_before(t, ch, r0 + CB);
      query_lane_scores<KB>(t, r0, ch.kbase, ch.kstride, ch.vbase, ch.vstride, 0, len);
      query_lane_softmax(t, bh, r0, len, [&](int r) { return tiles.visible(t, ch, r); });
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
                           r0 + RB < t.rows ? r0 + RB : t.rows, [&](int, int r_end) {
                             return Kokkos::pair<int, int>(0, tiles.seen_by_rows_before(t, ch, r_end));
                           });
      });
    if (!slots) return;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, (ch.len + RB - 1) / RB), [&](const int block) {
      const int c0 = block * RB, c_end = c0 + RB < ch.len ? c0 + RB : ch.len;
      const auto rows = [&](int, int) { return Kokkos::pair<int, int>(0, t.rows); };
      row_blocks<RB, CB>(&t.acc2(0, 0), ld, nullptr, &t.dpt(0, 0), LQ, 1, &q(bh, t.i0, 0), d, d, false, c0, c_end,
                         rows);
      row_blocks<RB, CB>(&t.acc3(0, 0), ld, nullptr, &t.st(0, 0), LQ, 1, &dout(bh, t.i0, 0), d, d, false, c0, c_end,
                         rows);
    });
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, ch.len),
                         [&](const int c) { slot_rows(ch.pos0 + c, c, &t.acc2(c, 0), &t.acc3(c, 0)); });
  }

  // Far team: (batch·head, span of blocks). Its window rows start cleared; each tile streams
  // its far-field slots and writes its rows of dQ (the pairs add the near field).
  KOKKOS_INLINE_FUNCTION void operator()(FarTag, const Member& team) const {
    const std::int64_t bh = team.league_rank() / teams_per_head, T = team.league_rank() % teams_per_head;
    const std::int64_t team_row0 = T * window_rows, first_pos = T * span;
    Tile t = tiles.make_tile(team, true);
    if (want_coarse)
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, window_rows), [&](const int r) {
        Scalar* rk = &pk(bh, team_row0 + r, 0);
        Scalar* rv = &pv(bh, team_row0 + r, 0);
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) { rk[x] = rv[x] = Scalar(0); });
      });
    // The window row of far-field slot c, from its coarse-array index.
    const auto window_row = [&](int c) {
      std::int64_t idx = t.slot(c);
      const int l = level_of(g, idx);
      const std::int64_t w = g.cell_size(l), cell = idx / g.p;
      return team_row0 + window_offset[l] + (cell - (first_pos / w - 3)) * g.p + idx % g.p;
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
    for (std::int64_t B = T * blocks_per_team; B < (T + 1) * blocks_per_team && B * g.m < g.n; ++B)
      for (std::int64_t i0 = B * g.m; i0 < (B + 1) * g.m && i0 < g.n; i0 += tile_rows) {
        const std::int64_t block_end = (B + 1) * g.m < g.n ? (B + 1) * g.m : g.n;
        team.team_barrier();
        t.i0 = i0;
        t.rows = int(block_end - i0 < tile_rows ? block_end - i0 : tile_rows);
        t.lanes = (t.rows + CB - 1) / CB * CB;
        const bool live = load_query_tile(team, t, bh);
        if (live) {
          if (want_dq) clear_rows(team, t.acc, t.rows);
          tiles.far_field(team, t, bh, 1, g.L, B,
                          [&](const Chunk& ch) { slot_chunk(team, t, bh, ch, want_coarse, add_terms); });
        }
        if (!want_dq) continue;
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
          Scalar* row = &dq(bh, t.i0 + r, 0);
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d),
                               [&](const int x) { row[x] = live ? t.acc(r, x) : Scalar(0); });
        });
      }
  }

  // Coarse token `flat` (all levels): the sum of its rows in the windows of the query teams
  // whose queries may list it (cells within 3 of it), in team order.
  KOKKOS_INLINE_FUNCTION void operator()(ReduceTag, const std::int64_t bh, const std::int64_t flat) const {
    std::int64_t t = flat;
    const int l = level_of(g, t);
    const std::int64_t w = g.cell_size(l), cell = t / g.p, r = t % g.p;
    const std::int64_t lo = cell - 3 > 0 ? cell - 3 : 0, hi = (cell + 4) * w;
    const std::int64_t T_end = (hi + span - 1) / span < teams_per_head ? (hi + span - 1) / span : teams_per_head;
    Scalar* gk = &dkc(bh, flat, 0);
    Scalar* gv = &dvc(bh, flat, 0);
    for (int x = 0; x < d; ++x) gk[x] = gv[x] = Scalar(0);
    for (std::int64_t T = lo * w / span; T < T_end; ++T) {
      const std::int64_t first = T * span / w - 3;
      if (cell < first || cell >= first + window_cells[l]) continue;
      const std::int64_t row = T * window_rows + window_offset[l] + (cell - first) * g.p + r;
      const Scalar* rk = &pk(bh, row, 0);
      const Scalar* rv = &pv(bh, row, 0);
      FMATTN_SIMD
      for (int x = 0; x < d; ++x) {
        gk[x] += rk[x];
        gv[x] += rv[x];
      }
    }
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

  // Tile a's positions [a·tile_rows, ...) inside its block, and its row count (0: no tile).
  KOKKOS_INLINE_FUNCTION int tile_extent(std::int64_t a, std::int64_t& i0) const {
    const std::int64_t per_block = opt.method == Method::fma ? g.m / tile_rows : 0;
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
  // every tile even when nothing is seen; the other diagonals add.
  KOKKOS_INLINE_FUNCTION void operator()(PairTag, const Member& team) const {
    const std::int64_t bh = team.league_rank() / tiles_per_head, a = team.league_rank() % tiles_per_head;
    const std::int64_t b = a - diagonal;
    if (b < 0 || b >= tiles_per_head) return;
    Tile t = tiles.make_tile(team, true);
    std::int64_t j0 = 0;
    t.rows = tile_extent(a, t.i0);
    const int keys = tile_extent(b, j0);
    if (t.rows == 0 || keys == 0) return;
    t.lanes = (t.rows + CB - 1) / CB * CB;
    const bool causal = g.variant == Variant::causal, first = diagonal == 0;
    std::int64_t lo = 0, hi = g.n;
    if (opt.method == Method::fma) g.near_range(t.i0 / g.m, lo, hi);
    if (causal && hi > t.i0 + t.rows) hi = t.i0 + t.rows;
    if (j0 < lo || j0 >= hi) return;  // not a pair of the near field (diagonal 0 always is)
    const std::int64_t j_end = j0 + keys < hi ? j0 + keys : hi;
    const bool live = load_query_tile(team, t, bh);
    const bool write_dq = want_dq && (live || (first && !far_done));
    if (write_dq) clear_rows(team, t.acc, t.rows);
    const auto store_terms = [&](std::int64_t j, int, const Scalar* terms_k, const Scalar* terms_v) {
      Scalar* rk = &dk(bh, j, 0);
      Scalar* rv = &dv(bh, j, 0);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) {
        rk[x] = first ? terms_k[x] : rk[x] + terms_k[x];
        rv[x] = first ? terms_v[x] : rv[x] + terms_v[x];
      });
      if (first && opt.method == Method::fma)
        Kokkos::single(Kokkos::PerThread(team), [&]() { add_coarse_share(bh, j, rk, rv); });
    };
    if (live) {
      tiles.fine_range(team, t, bh, j0, j_end, causal,
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
      Scalar* row = &dq(bh, t.i0 + r, 0);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d),
                           [&](const int x) { row[x] = add ? row[x] + t.acc(r, x) : t.acc(r, x); });
    });
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
      for (std::int64_t x = 0; x < std::int64_t(npos) * d; ++x) {
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

// Sizes the far pass's windows (see AttentionBackward::window_offset) and the tiles of the
// pairs; returns the window rows per head.
template <class K>
std::int64_t plan_backward(K& f) {
  const Geometry& g = f.g;
  f.blocks_per_team = K::query_span > g.m ? K::query_span / g.m : 1;
  f.span = f.blocks_per_team * g.m;
  f.teams_per_head = (present_blocks(g) + f.blocks_per_team - 1) / f.blocks_per_team;
  std::int64_t rows = 0;
  for (int l = 1; l <= g.L; ++l) {
    const std::int64_t w = g.cell_size(l), cells = w >= f.span ? 1 : f.span / w;
    f.window_cells[l] = cells + (g.variant == Variant::causal ? 1 : 6);
    f.window_offset[l] = rows;
    rows += f.window_cells[l] * g.p;
  }
  f.window_rows = rows;
  const bool fma = f.opt.method == Method::fma;
  f.tile_rows = fma && g.m < K::Tq ? g.m : K::Tq;
  f.tiles_per_head = fma ? present_blocks(g) * (g.m / f.tile_rows) : (g.n + f.tile_rows - 1) / f.tile_rows;
  return rows * f.teams_per_head;
}

// Runs the passes in dependency order: far teams, reduce, pairs diagonal by diagonal, weights.
// `f` carries the inputs, the workspace (pk, pv sized by plan_backward) and the output Views
// (its tiles member the forward's geometry and coarse levels); empty dq/dk/dv or dkw skip those
// parts.
template <class ExecSpace, class Scalar>
void run_attention_backward(const ExecSpace& space, AttentionBackward<ExecSpace, Scalar> f) {
  using K = AttentionBackward<ExecSpace, Scalar>;
  using Idx = Kokkos::IndexType<std::int64_t>;
  const std::int64_t H = std::int64_t(f.q.extent(0));
  if (H == 0) return;
  plan_backward(f);
  const bool fma = f.opt.method == Method::fma;
  f.want_dq = f.dq.extent(0) != 0;
  f.want_dkv = f.dk.extent(0) != 0;
  f.want_coarse = fma && f.g.L > 0 && (f.want_dkv || f.dkw.extent(0));
  const std::size_t scratch = K::Tiles::scratch_bytes(f.d, true);
  f.tiles.scratch_level = scratch <= std::size_t(K::Policy::scratch_size_max(0)) ? 0 : 1;
  auto launch = [&](const char* name, auto tag, std::int64_t teams) {
    using Tag = decltype(tag);
    Kokkos::TeamPolicy<ExecSpace, Kokkos::Schedule<Kokkos::Dynamic>, Tag> policy(space, int(teams), Kokkos::AUTO);
    Kokkos::parallel_for(name, policy.set_scratch_size(f.tiles.scratch_level, Kokkos::PerTeam(scratch)), f);
  };
  f.far_done = fma && f.g.L > 0 && (f.want_dq || f.want_coarse);
  if (f.far_done) launch("fmattn::backward::far_field", typename K::FarTag{}, H * f.teams_per_head);
  if (f.want_coarse)
    Kokkos::parallel_for("fmattn::backward::coarse_reduce",
                         Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>, Idx, typename K::ReduceTag>(
                             space, {0, 0}, {H, std::int64_t(f.dkc.extent(1))}),
                         f);
  if (f.want_dq || f.want_dkv) {
    // Diagonals 0, 1, -1, 2, -2, ... of the pairs that can see each other: those of the near
    // field (FMA) or all (exact); causal attention has no negative ones.
    const std::int64_t per_block = fma ? f.g.m / f.tile_rows : f.tiles_per_head;
    const std::int64_t reach = fma ? 2 * per_block - 1 : f.tiles_per_head - 1;
    const std::int64_t back = f.g.variant == Variant::causal ? 0 : fma ? 2 * per_block - 1 : f.tiles_per_head - 1;
    for (std::int64_t w = 0; w <= (reach > back ? reach : back); ++w)
      for (const int sign : {1, -1}) {
        if ((sign < 0 && w == 0) || (sign > 0 && w > reach) || (sign < 0 && w > back)) continue;
        f.diagonal = sign * w;
        launch("fmattn::backward::pairs", typename K::PairTag{}, H * f.tiles_per_head);
      }
  }
  if (f.dkw.extent(0)) {
    std::int64_t blocks = 0;
    for (int l = 1; l <= f.g.L; ++l) blocks += K::weight_blocks(f.g, l);
    Kokkos::parallel_for("fmattn::backward::weights",
                         Kokkos::RangePolicy<ExecSpace, Idx, typename K::WeightTag>(space, 0, blocks), f);
    Kokkos::parallel_for("fmattn::backward::biases",
                         Kokkos::RangePolicy<ExecSpace, Idx, typename K::BiasTag>(space, 0, f.dkb.extent(0) / f.d), f);
  }
}

}  // namespace fmattn::detail
