// The backward pass of Fast Multipole Attention (spec §1–5) for a scalar loss whose gradient
// with respect to the output is dO: gradients of Q, K, V, of the coarse keys and values of
// every level and, for learned downsampling, of the weights and biases of every level.
//
// Flash-style: scores are recomputed, never stored; each row keeps only its log-sum-exp and
// delta_i = dO_i · out_i, so the extra memory is O(n) per head plus the coarse gradients.
// With P_ij = α_j exp(σ_ij − lse_i) over the slots j of query i (spec §4):
//   dV_j += P_ij dO_i,   dσ_ij = P_ij (dO_i · V_j − delta_i),
//   dQ_i += s dσ_ij K_j, dK_j += s dσ_ij Q_i,
// where K_j, V_j are fine tokens (near field) or coarse tokens (far field). Coarse gradients
// then flow down to the fine tokens they were made from (the transpose of spec §2).
//
// Determinism: every gradient element is produced by one thread that gathers its terms in a
// fixed order (keys gather their queries through the inverse interaction lists; weights
// gather over heads and cells), so no atomics and bit-identical results from run to run.
// Rows with dO_i = 0 are skipped everywhere: a loss on sampled rows (fmattn fit) costs only
// what those rows see.
#pragma once

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
  using Mem = typename ExecSpace::memory_space;
  using In = Kokkos::View<const Scalar***, Kokkos::LayoutRight, Mem>;
  using Out = Kokkos::View<Scalar***, Kokkos::LayoutRight, Mem>;
  using Rows = Kokkos::View<Scalar**, Kokkos::LayoutRight, Mem>;
  using Flags = Kokkos::View<std::uint8_t**, Kokkos::LayoutRight, Mem>;
  using Grad = Kokkos::View<double*, Mem>;
  struct RowTag {};
  struct CoarseTag {};
  struct FineTag {};
  struct WeightTag {};
  struct BiasTag {};

  Geometry g;
  AttentionOptions opt;
  int d = 0;
  In q, k, v, kc, vc, dout;          // forward inputs, coarse levels, output gradient
  LevelWeights<Scalar, Mem> kw, vw;  // learned downsampling of K and V
  Rows lse, delta;                   // [bh][n] per-row statistics
  Flags active;                      // [bh][n] dO_i != 0
  Out dq, dk, dv;                    // [bh][n][d]; an empty View is not computed
  Out dkc, dvc;                      // [bh][coarse tokens][d]
  Grad dkw, dkb, dvw, dvb;           // weight gradients, flattened like the weights

  KOKKOS_INLINE_FUNCTION Scalar dot(const Scalar* a, const Scalar* b) const {
    Scalar sum = 0;
    FMATTN_SIMD_SUM
    for (int c = 0; c < d; ++c) sum += a[c] * b[c];
    return sum;
  }

  KOKKOS_INLINE_FUNCTION static void axpy(Scalar a, const Scalar* x, Scalar* y, int d) {
    FMATTN_SIMD
    for (int c = 0; c < d; ++c) y[c] += a * x[c];
  }

  // Calls f(key, value, alpha) for every slot of query i (spec §3–4) in a fixed order and
  // returns the total weight of the zero_sink slots (score 0, value 0; spec §5).
  template <class F>
  KOKKOS_INLINE_FUNCTION Scalar for_each_slot(std::int64_t h, std::int64_t i, F&& f) const {
    const bool exact = opt.method == Method::exact;
    const bool sinks = opt.boundary == Boundary::zero_sink && !exact;
    const std::int64_t B = i / g.m;
    std::int64_t lo = 0, hi = g.n;
    if (!exact) g.near_range(B, lo, hi);
    if (g.variant == Variant::causal && hi > i + 1) hi = i + 1;
    for (std::int64_t j = lo; j < hi; ++j) f(&k(h, j, 0), &v(h, j, 0), Scalar(1));
    if (exact) return Scalar(0);
    double sink = sinks && B == 0 ? double(g.m) : 0.0;
    for (int l = 1; l <= g.L; ++l) {
      std::int64_t cells[max_far_cells];
      int negative = 0;
      const int nc = g.far_cells(l, i / g.cell_size(l), cells, &negative);
      if (sinks) sink += double(negative) * (opt.count_weighting ? double(g.cell_size(l)) : double(g.p));
      const std::int64_t base = g.level_offset(l);
      for (int c = 0; c < nc; ++c)
        for (int r = 0; r < g.p; ++r) {
          const double cnt = g.count(opt.downsampling, l, cells[c], r);
          if (cnt == 0) continue;  // absent coarse token
          const std::int64_t t = base + cells[c] * g.p + r;
          f(&kc(h, t, 0), &vc(h, t, 0), Scalar(opt.count_weighting ? cnt : 1.0));
        }
    }
    return Scalar(sink);
  }

  // Row statistics (lse, delta) and dQ of query i: three sweeps over its slots.
  KOKKOS_INLINE_FUNCTION void operator()(RowTag, const std::int64_t h, const std::int64_t i) const {
    const Scalar* dO = &dout(h, i, 0);
    bool any = false;
    for (int c = 0; c < d; ++c) any = any || dO[c] != Scalar(0);
    active(h, i) = any;
    Scalar* dqi = dq.extent(0) ? &dq(h, i, 0) : nullptr;
    if (dqi)
      for (int c = 0; c < d; ++c) dqi[c] = 0;
    if (!any) {
      lse(h, i) = delta(h, i) = 0;
      return;
    }
    const Scalar* qi = &q(h, i, 0);
    const Scalar s = Scalar(opt.scale);
    Scalar M = Kokkos::reduction_identity<Scalar>::max();
    const Scalar sink = for_each_slot(h, i, [&](const Scalar* key, const Scalar*, Scalar) {
      const Scalar sigma = s * dot(qi, key);
      M = sigma > M ? sigma : M;
    });
    if (sink > Scalar(0) && M < Scalar(0)) M = 0;
    Scalar den = sink > Scalar(0) ? sink * compat::exp(-M) : Scalar(0), acc = 0;
    for_each_slot(h, i, [&](const Scalar* key, const Scalar* val, Scalar alpha) {
      const Scalar e = alpha * compat::exp(s * dot(qi, key) - M);
      den += e;
      acc += e * dot(dO, val);
    });
    const Scalar l = M + compat::log(den), dl = acc / den;
    lse(h, i) = l;
    delta(h, i) = dl;
    if (!dqi) return;
    for_each_slot(h, i, [&](const Scalar* key, const Scalar* val, Scalar alpha) {
      const Scalar P = alpha * compat::exp(s * dot(qi, key) - l);
      axpy(s * P * (dot(dO, val) - dl), key, dqi, d);
    });
  }

  // Adds the terms of queries [lo, hi) that see the slot (key, val, alpha) to dkr and dvr.
  KOKKOS_INLINE_FUNCTION void gather_queries(std::int64_t h, std::int64_t lo, std::int64_t hi, const Scalar* key,
                                             const Scalar* val, Scalar alpha, Scalar* dkr, Scalar* dvr) const {
    const Scalar s = Scalar(opt.scale);
    for (std::int64_t i = lo; i < hi; ++i) {
      if (!active(h, i)) continue;
      const Scalar* qi = &q(h, i, 0);
      const Scalar* dO = &dout(h, i, 0);
      const Scalar P = alpha * compat::exp(s * dot(qi, key) - lse(h, i));
      axpy(P, dO, dvr, d);
      axpy(s * P * (dot(dO, val) - delta(h, i)), qi, dkr, d);
    }
  }

  // Coarse token t (flat, all levels): the queries whose far field holds its cell are the
  // cells b within 3 of it that list it (spec §3 read backwards).
  KOKKOS_INLINE_FUNCTION void operator()(CoarseTag, const std::int64_t h, const std::int64_t flat) const {
    Scalar* dkr = &dkc(h, flat, 0);
    Scalar* dvr = &dvc(h, flat, 0);
    for (int c = 0; c < d; ++c) dkr[c] = dvr[c] = 0;
    std::int64_t t = flat;
    const int l = level_of(g, t);
    const std::int64_t cell = t / g.p, w = g.cell_size(l), cells = g.num_cells(l);
    const double cnt = g.count(opt.downsampling, l, cell, int(t % g.p));
    if (cnt == 0) return;
    const Scalar alpha = Scalar(opt.count_weighting ? cnt : 1.0);
    for (std::int64_t b = cell - 3; b <= cell + 3; ++b) {
      if (b < 0 || b >= cells || b * w >= g.n) continue;
      std::int64_t list[max_far_cells];
      const int nc = g.far_cells(l, b, list);
      bool listed = false;
      for (int j = 0; j < nc; ++j) listed = listed || list[j] == cell;
      if (listed)
        gather_queries(h, b * w, b * w + w < g.n ? b * w + w : g.n, &kc(h, flat, 0), &vc(h, flat, 0), alpha, dkr, dvr);
    }
  }

  // Fine token j: its near-field queries, then its share of the gradient of the coarse token
  // that stands for it at each level.
  KOKKOS_INLINE_FUNCTION void operator()(FineTag, const std::int64_t h, const std::int64_t j) const {
    Scalar* dkr = &dk(h, j, 0);
    Scalar* dvr = &dv(h, j, 0);
    for (int c = 0; c < d; ++c) dkr[c] = dvr[c] = 0;
    const bool causal = g.variant == Variant::causal;
    const std::int64_t B = j / g.m;
    std::int64_t lo = causal ? j : 0, hi = g.n;
    if (opt.method == Method::fma) {
      if (!causal) lo = (B - 1) * g.m > 0 ? (B - 1) * g.m : 0;
      hi = (B + 2) * g.m < g.n ? (B + 2) * g.m : g.n;
    }
    gather_queries(h, lo, hi, &k(h, j, 0), &v(h, j, 0), Scalar(1), dkr, dvr);
    if (opt.method == Method::exact) return;
    for (int l = 1; l <= g.L; ++l) {
      const std::int64_t w = g.cell_size(l), cell = j / w, pos = j % w, base = g.level_offset(l) + cell * g.p;
      if (opt.downsampling == Downsampling::average) {
        const int r = int(pos / (w / g.p));
        const Scalar inv = Scalar(1.0 / g.count(Downsampling::average, l, cell, r));
        axpy(inv, &dkc(h, base + r, 0), dkr, d);
        axpy(inv, &dvc(h, base + r, 0), dvr, d);
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

// Runs the passes in dependency order: rows (lse, delta, dQ), coarse tokens, fine tokens,
// weights. `f` carries the inputs and the output Views; empty dq/dk/dv or dkw skip those parts.
template <class ExecSpace, class Scalar>
void run_attention_backward(const ExecSpace& space, const AttentionBackward<ExecSpace, Scalar>& f) {
  using K = AttentionBackward<ExecSpace, Scalar>;
  using Idx = Kokkos::IndexType<std::int64_t>;
  const std::int64_t H = std::int64_t(f.q.extent(0)), n = f.g.n, T = std::int64_t(f.dkc.extent(1));
  if (H == 0) return;
  Kokkos::parallel_for(
      "fmattn::backward::rows",
      Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>, Idx, typename K::RowTag>(space, {0, 0}, {H, n}), f);
  if (T > 0)
    Kokkos::parallel_for(
        "fmattn::backward::coarse_tokens",
        Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>, Idx, typename K::CoarseTag>(space, {0, 0}, {H, T}), f);
  if (f.dk.extent(0))
    Kokkos::parallel_for(
        "fmattn::backward::fine_tokens",
        Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>, Idx, typename K::FineTag>(space, {0, 0}, {H, n}), f);
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
