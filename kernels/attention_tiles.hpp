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
#include "simd.hpp"
#include "kokkos_compat.hpp"
#include "tile_traits.hpp"

#include <Kokkos_Core.hpp>

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
  using Policy = Kokkos::TeamPolicy<ExecSpace>;
  using Member = typename Policy::member_type;
  using Scratch = typename ExecSpace::scratch_memory_space;
  using Mat = Kokkos::View<Scalar**, Kokkos::LayoutRight, Scratch, Kokkos::MemoryUnmanaged>;
  using Vec = Kokkos::View<Scalar*, Scratch, Kokkos::MemoryUnmanaged>;
  using Pos = Kokkos::View<std::int64_t*, Scratch, Kokkos::MemoryUnmanaged>;
  static constexpr int Tq = TileTraits<ExecSpace>::query_rows;
  static constexpr int Tk = TileTraits<ExecSpace>::key_chunk;
  // Register blocks of the two small matrix products: RB rows × CB keys (or channels), kept in
  // registers over the whole inner loop.
  static constexpr int RB = TileTraits<ExecSpace>::block_rows;
  static constexpr int CB = TileTraits<ExecSpace>::block_cols;
  static_assert(Tq % RB == 0 && Tk % CB == 0, "tiles must hold whole register blocks");

  Geometry g;
  AttentionOptions opt;
  In q, k, v;  // [bh][n][d]
  In qc;       // [bh][coarse tokens][d] coarse queries (linear variant)
  In kc, vc;   // [bh][coarse tokens][d]; empty for exact
  Out o;       // [bh][n][d]
  Partials<Scalar, Mem> part;  // linear variant: written by the coarse pass, read by the fine pass
  bool coarse_pass = false;    // this launch evaluates coarse queries into `part`
  int d = 0;
  int dp = 0;  // d rounded up to CB; the padding of every scratch row is zero
  std::int64_t tiles_per_block = 0, tiles_per_cell = 0, tiles_per_head = 0;

  struct Tile {
    Mat qs, kt, vs, s, acc;  // Q·scale [Tq][d], K^T [d][Tk], V [Tk][d], scores [Tq][Tk], out [Tq][d]
    Vec logw, rmax, rsum;    // slot log-weight [Tk], running max and denominator [Tq]
    Pos kpos;                // fine key position of a slot, for the causal mask [Tk]
    std::int64_t i0;         // position of row 0 (fine queries)
    int rows;
  };

  static int padded_dim(int d) { return (d + CB - 1) / CB * CB; }

  static std::size_t scratch_bytes(int d) {
    const int dp = padded_dim(d);
    return Mat::shmem_size(Tq, dp) + Mat::shmem_size(dp, Tk) + Mat::shmem_size(Tk, dp) + Mat::shmem_size(Tq, Tk) +
           Mat::shmem_size(Tq, dp) + Vec::shmem_size(Tk) + 2 * Vec::shmem_size(Tq) + Pos::shmem_size(Tk);
  }

  KOKKOS_INLINE_FUNCTION Tile make_tile(const Member& team) const {
    const auto& scr = team.team_scratch(0);
    Tile t;
    t.qs = Mat(scr, Tq, dp);
    t.kt = Mat(scr, dp, Tk);
    t.vs = Mat(scr, Tk, dp);
    t.s = Mat(scr, Tq, Tk);
    t.acc = Mat(scr, Tq, dp);
    t.logw = Vec(scr, Tk);
    t.rmax = Vec(scr, Tq);
    t.rsum = Vec(scr, Tq);
    t.kpos = Pos(scr, Tk);
    return t;
  }

  // Loads `rows` query rows (row r from qrow(r)) scaled, and clears the softmax state. Rows past
  // `rows` and channels past d are zero, as are the padding channels of K^T and V, so that the
  // register blocks can always run over whole blocks.
  template <class RowPtr>
  KOKKOS_INLINE_FUNCTION void load_queries(const Member& team, const Tile& t, RowPtr qrow) const {
    const Scalar scale = Scalar(opt.scale);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, Tq), [&](const int r) {
      const Scalar* row = r < t.rows ? qrow(r) : nullptr;
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, dp), [&](const int x) {
        t.qs(r, x) = row && x < d ? scale * row[x] : Scalar(0);
        t.acc(r, x) = Scalar(0);
      });
      Kokkos::single(Kokkos::PerThread(team), [&]() {
        t.rmax(r) = Scalar(0);
        t.rsum(r) = Scalar(0);
      });
    });
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, Tk), [&](const int c) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, dp - d), [&](const int x) {
        t.kt(d + x, c) = Scalar(0);
        t.vs(c, d + x) = Scalar(0);
      });
    });
  }

  // Folds partial sums (max m, denominator den, numerator num[d] relative to m) into row r.
  KOKKOS_INLINE_FUNCTION void merge(const Member& team, const Tile& t, int r, Scalar m, Scalar den,
                                    const Scalar* num) const {
    const Scalar old_sum = t.rsum(r);
    const Scalar new_max = (old_sum > Scalar(0) && t.rmax(r) > m) ? t.rmax(r) : m;
    const Scalar keep = old_sum > Scalar(0) ? Scalar(compat::exp(t.rmax(r) - new_max)) : Scalar(0);
    const Scalar take = Scalar(compat::exp(m - new_max));
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

  // Scores of the chunk's `len` slots, then the online-softmax update of every row. With
  // `causal`, slot c is seen by row r only when kpos[c] <= i0 + r. Slots len.. up to the next
  // multiple of CB must be zero-filled (see pad_chunk).
  KOKKOS_INLINE_FUNCTION void process_chunk(const Member& team, const Tile& t, int len, bool causal) const {
    team.team_barrier();
    const int lp = (len + CB - 1) / CB * CB;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, (t.rows + RB - 1) / RB), [&](const int group) {
      const int r0 = group * RB;
      const Scalar* qs = &t.qs(r0, 0);  // rows of dp
      const Scalar* kt = t.kt.data();   // rows of Tk
      const Scalar* vs = t.vs.data();   // rows of dp
      Scalar* s = &t.s(r0, 0);          // rows of Tk
      Scalar* acc = &t.acc(r0, 0);      // rows of dp
      // S = logw + Q·K^T for RB rows, CB keys at a time, accumulated in registers.
      for (int c0 = 0; c0 < lp; c0 += CB) {
        Scalar a[RB][CB];
        for (int rr = 0; rr < RB; ++rr) {
          FMATTN_SIMD
          for (int cc = 0; cc < CB; ++cc) a[rr][cc] = t.logw(c0 + cc);
        }
        for (int x = 0; x < dp; ++x) {
          const Scalar* kx = kt + x * Tk + c0;
          for (int rr = 0; rr < RB; ++rr) {
            const Scalar qv = qs[rr * dp + x];
            FMATTN_SIMD
            for (int cc = 0; cc < CB; ++cc) a[rr][cc] += qv * kx[cc];
          }
        }
        for (int rr = 0; rr < RB; ++rr) {
          FMATTN_SIMD
          for (int cc = 0; cc < CB; ++cc) s[rr * Tk + c0 + cc] = a[rr][cc];
        }
      }
      // Online softmax per row: new max, rescale factor, weights exp(s - max) (0 where unseen).
      Scalar rescale[RB];
      int seen_max = 0;
      for (int rr = 0; rr < RB; ++rr) {
        const int r = r0 + rr;
        Scalar* srow = s + rr * Tk;
        const int visible = r >= t.rows ? 0 : causal ? visible_slots(t, r, len) : len;
        rescale[rr] = Scalar(1);
        if (visible == 0) {
          for (int c = 0; c < lp; ++c) srow[c] = Scalar(0);
          continue;
        }
        Scalar mx = srow[0];
        for (int c = 1; c < visible; ++c) mx = srow[c] > mx ? srow[c] : mx;
        const Scalar old_sum = t.rsum(r);
        const Scalar new_max = (old_sum > Scalar(0) && t.rmax(r) > mx) ? t.rmax(r) : mx;
        rescale[rr] = old_sum > Scalar(0) ? exp_nonpositive(Scalar(t.rmax(r) - new_max)) : Scalar(0);
        // Unseen slots hold finite scores too (zero padding): exponentiate all, then clear them,
        // which keeps the exponential loop branch-free and vectorized.
        FMATTN_SIMD
        for (int c = 0; c < lp; ++c) srow[c] = exp_nonpositive(Scalar(srow[c] - new_max));
        for (int c = visible; c < lp; ++c) srow[c] = Scalar(0);
        Scalar lanes[CB] = {};
        for (int c0 = 0; c0 < lp; c0 += CB) {
          FMATTN_SIMD
          for (int cc = 0; cc < CB; ++cc) lanes[cc] += srow[c0 + cc];
        }
        Scalar sum = 0;
        for (int cc = 0; cc < CB; ++cc) sum += lanes[cc];
        t.rmax(r) = new_max;
        t.rsum(r) = old_sum * rescale[rr] + sum;
        seen_max = visible > seen_max ? visible : seen_max;
      }
      // acc = acc·rescale + P·V for RB rows, CB channels at a time.
      for (int x0 = 0; x0 < dp; x0 += CB) {
        Scalar a[RB][CB];
        for (int rr = 0; rr < RB; ++rr) {
          FMATTN_SIMD
          for (int cc = 0; cc < CB; ++cc) a[rr][cc] = acc[rr * dp + x0 + cc] * rescale[rr];
        }
        for (int c = 0; c < seen_max; ++c) {
          const Scalar* vrow = vs + c * dp + x0;
          for (int rr = 0; rr < RB; ++rr) {
            const Scalar p = s[rr * Tk + c];
            FMATTN_SIMD
            for (int cc = 0; cc < CB; ++cc) a[rr][cc] += p * vrow[cc];
          }
        }
        for (int rr = 0; rr < RB; ++rr) {
          FMATTN_SIMD
          for (int cc = 0; cc < CB; ++cc) acc[rr * dp + x0 + cc] = a[rr][cc];
        }
      }
    });
  }

  // Zero-fills slots len.. up to the next multiple of CB, so whole register blocks see zeros.
  KOKKOS_INLINE_FUNCTION void pad_chunk(const Member& team, const Tile& t, int len) const {
    const int lp = (len + CB - 1) / CB * CB;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len, lp), [&](const int c) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, dp), [&](const int x) {
        t.kt(x, c) = Scalar(0);
        t.vs(c, x) = Scalar(0);
      });
      Kokkos::single(Kokkos::PerThread(team), [&]() {
        t.logw(c) = Scalar(0);
        t.kpos(c) = 0;
      });
    });
  }

  // Slots of a fine chunk are in increasing position order, so the visible ones are a prefix.
  KOKKOS_INLINE_FUNCTION int visible_slots(const Tile& t, int r, int len) const {
    const std::int64_t i = t.i0 + r;
    int c = len;
    while (c > 0 && t.kpos(c - 1) > i) --c;
    return c;
  }

  // Copies slot c of the chunk: key row into K^T, value row into V.
  KOKKOS_INLINE_FUNCTION void load_slot(const Member& team, const Tile& t, int c, const Scalar* krow,
                                        const Scalar* vrow) const {
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) {
      t.kt(x, c) = krow[x];
      t.vs(c, x) = vrow[x];
    });
  }

  KOKKOS_INLINE_FUNCTION void fine_range(const Member& team, const Tile& t, std::int64_t bh, std::int64_t lo,
                                         std::int64_t hi, bool causal) const {
    for (std::int64_t c0 = lo; c0 < hi; c0 += Tk) {
      const int len = int(hi - c0 < Tk ? hi - c0 : Tk);
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len), [&](const int c) {
        load_slot(team, t, c, &k(bh, c0 + c, 0), &v(bh, c0 + c, 0));
        Kokkos::single(Kokkos::PerThread(team), [&]() {
          t.kpos(c) = c0 + c;
          t.logw(c) = Scalar(0);
        });
      });
      pad_chunk(team, t, len);
      process_chunk(team, t, len, causal);
    }
  }

  // Streams the coarse slots of levels l_first..l_last, where the tile's cell at level l is
  // b_first >> (l - l_first), Tk at a time. Returns the total weight of zero_sink far-field
  // slots (cells left of the sequence start).
  KOKKOS_INLINE_FUNCTION double far_field(const Member& team, const Tile& t, std::int64_t bh, int l_first, int l_last,
                                          std::int64_t b_first) const {
    double sink = 0;
    int filled = 0;
    for (int l = l_first; l <= l_last; ++l) {
      std::int64_t cells[max_far_cells];
      int negative = 0;
      const int nc = g.far_cells(l, b_first >> (l - l_first), cells, &negative);
      sink += double(negative) * (opt.count_weighting ? double(g.cell_size(l)) : double(g.p));
      const std::int64_t base = g.level_offset(l);
      for (int j = 0; j < nc; ++j) {
        for (int r = 0; r < g.p; ++r) {
          const double cnt = g.count(opt.downsampling, l, cells[j], r);
          if (cnt == 0) continue;  // absent coarse token
          const std::int64_t idx = base + cells[j] * g.p + r;
          const int c = filled++;
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, 1), [&](const int) {
            load_slot(team, t, c, &kc(bh, idx, 0), &vc(bh, idx, 0));
            Kokkos::single(Kokkos::PerThread(team),
                           [&]() { t.logw(c) = opt.count_weighting ? Scalar(compat::log(cnt)) : Scalar(0); });
          });
          if (filled == Tk) {
            process_chunk(team, t, filled, false);
            filled = 0;
          }
        }
      }
    }
    if (filled > 0) {
      team.team_barrier();
      pad_chunk(team, t, filled);
      process_chunk(team, t, filled, false);
    }
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
    const std::int64_t bh = team.league_rank() / tiles_per_head;
    const std::int64_t tile = team.league_rank() % tiles_per_head;
    const std::int64_t B = tile / tiles_per_block;
    Tile t = make_tile(team);
    t.i0 = B * g.m + (tile % tiles_per_block) * Tq;
    const std::int64_t block_end = (B + 1) * g.m < g.n ? (B + 1) * g.m : g.n;
    if (t.i0 >= block_end) return;
    t.rows = int(block_end - t.i0 < Tq ? block_end - t.i0 : Tq);
    load_queries(team, t, [&](int r) { return &q(bh, t.i0 + r, 0); });

    const bool causal = g.variant == Variant::causal;
    std::int64_t lo = 0, hi = g.n;
    if (opt.method == Method::fma) g.near_range(B, lo, hi);
    if (causal && hi > t.i0 + t.rows) hi = t.i0 + t.rows;
    fine_range(team, t, bh, lo, hi, causal);

    if (opt.method == Method::fma) {
      double sink = (B == 0 && opt.boundary == Boundary::zero_sink) ? double(g.m) : 0.0;  // block left of the start
      if (opt.coarse_queries) {
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
          const std::int64_t i = t.i0 + r;
          for (int l = 1; l <= g.L; ++l) {
            const std::int64_t w = g.cell_size(l);
            const std::int64_t idx = g.level_offset(l) + (i / w) * g.p + (i % w) / (w / g.p);
            if (part.den(bh, idx) > Scalar(0)) merge(team, t, r, part.max(bh, idx), part.den(bh, idx), &part.num(bh, idx, 0));
          }
        });
      } else {
        sink += far_field(team, t, bh, 1, g.L, B);
      }
      add_sink(team, t, sink);
    }
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
      const Scalar inv = Scalar(1) / t.rsum(r);
      Scalar* orow = &o(bh, t.i0 + r, 0);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) { orow[x] = t.acc(r, x) * inv; });
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
    const std::int64_t row0 = g.level_offset(l) + cell * g.p + sub * Tq;
    load_queries(team, t, [&](int r) { return &qc(bh, row0 + r, 0); });
    add_sink(team, t, far_field(team, t, bh, l, l, cell));
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
// sums workspace), exact attention otherwise.
template <class ExecSpace, class Scalar>
void evaluate_attention(const ExecSpace& space, const Geometry& g, const AttentionOptions& opt,
                        typename AttentionTiles<ExecSpace, Scalar>::In q, typename AttentionTiles<ExecSpace, Scalar>::In k,
                        typename AttentionTiles<ExecSpace, Scalar>::In v,
                        typename AttentionTiles<ExecSpace, Scalar>::In qc,
                        typename AttentionTiles<ExecSpace, Scalar>::In kc,
                        typename AttentionTiles<ExecSpace, Scalar>::In vc,
                        const Partials<Scalar, typename ExecSpace::memory_space>& part,
                        typename AttentionTiles<ExecSpace, Scalar>::Out out) {
  using K = AttentionTiles<ExecSpace, Scalar>;
  K f;
  f.g = g;
  f.opt = opt;
  f.q = q;
  f.k = k;
  f.v = v;
  f.qc = qc;
  f.kc = kc;
  f.vc = vc;
  f.part = part;
  f.o = out;
  f.d = int(q.extent(2));
  f.dp = K::padded_dim(f.d);
  const std::int64_t heads = std::int64_t(q.extent(0));
  const std::size_t scratch = K::scratch_bytes(f.d);
  if (heads == 0) return;
  if (opt.method == Method::fma && opt.coarse_queries && g.L > 0) {
    std::int64_t cells = 0;
    for (int l = 1; l <= g.L; ++l) cells += g.num_cells(l);
    f.coarse_pass = true;
    f.tiles_per_cell = (g.p + K::Tq - 1) / K::Tq;
    f.tiles_per_head = cells * f.tiles_per_cell;
    typename K::Policy policy(space, int(heads * f.tiles_per_head), Kokkos::AUTO);
    Kokkos::parallel_for("fmattn::attention::coarse_queries", policy.set_scratch_size(0, Kokkos::PerTeam(scratch)), f);
    f.coarse_pass = false;
  }
  f.tiles_per_block = (g.m + K::Tq - 1) / K::Tq;
  f.tiles_per_head = ((g.n + g.m - 1) / g.m) * f.tiles_per_block;
  typename K::Policy policy(space, int(heads * f.tiles_per_head), Kokkos::AUTO);
  Kokkos::parallel_for("fmattn::attention::tiles", policy.set_scratch_size(0, Kokkos::PerTeam(scratch)), f);
}

}  // namespace fmattn
