// Causal attention for one new token per stream against a decoder's state (docs/language-model.md,
// "Generating"): the fine keys and values of the near field in a ring, and per coarse level the
// coarse keys and values of the last completed cells plus the running sums that complete the
// current cell as its tokens arrive. Per token and (stream, head), feeding the state costs
// O(p·d) per level and attending reads at most the near field and 2p coarse keys per level, so
// neither grows with the position. One thread per (stream, head), its slots in a fixed order:
// the same bits whatever the thread count or the number of streams.
#pragma once

#include <fmattn/core/options.hpp>

#include "kernels/fast_exp.hpp"
#include "kernels/simd.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

// Completed cells of one level that the state keeps: a query of cell b reads b − 3 and b − 2,
// and cell b − 1 is complete; the fourth slot takes the cell that completes at the query's own
// position before that query has read b − 3.
inline constexpr int kept_cells = 4;

struct DecodeShape {
  int heads = 1, d = 1, m = 1, p = 1;
  int levels = 0;          // coarse levels the state holds (at least sink_levels)
  int learned_levels = 0;  // levels 1 .. learned_levels downsample with learned basis functions
  int sink_levels = 0;     // zero_sink: the window's levels, whose cells before the text are sinks
  bool zero_sink = false;
  bool count_weighting = true;
  Method method = Method::fma;
  double scale = 1;
  std::int64_t ring = 1;  // fine keys kept: 2m (fma, local) or every position (exact)

  KOKKOS_INLINE_FUNCTION std::int64_t cell_size(int l) const { return std::int64_t(m) << (l - 1); }
  // Slots a query may have: the near field (or every key) and p per far cell (or sink).
  KOKKOS_INLINE_FUNCTION std::int64_t max_slots() const {
    return (method == Method::exact ? ring : 2 * std::int64_t(m)) +
           (method == Method::fma ? 2 * std::int64_t(p) * levels : 0);
  }
  // First element of level l's K (or V) basis-function weights [p][w_l][d] in a layer's row.
  KOKKOS_INLINE_FUNCTION std::int64_t weight_offset(int l) const {
    return std::int64_t(p) * d * m * ((std::int64_t(1) << (l - 1)) - 1);
  }
};

template <class S, class Memory>
struct DecodeState {
  template <class T>
  using View = Kokkos::View<T, Kokkos::LayoutRight, Memory>;
  View<S****> ring_k, ring_v;    // [layers][streams·heads][ring][d], position j at j % ring
  View<S*****> cell_k, cell_v;   // [layers][streams·heads][levels][kept_cells·p][d], cell g at g % 4
  View<S*****> sum_k, sum_v;     // [layers][streams·heads][levels][p][d], the current cells
  View<S**> weight_k, weight_v;  // [layers][learned weights], weight_offset layout
  View<S**> bias_k, bias_v;      // [layers][learned_levels·p·d]
  View<S**> scores;              // [streams·heads][max_slots]
};

// The kernels of one layer: feed a token's key and value into the state, attend a query.
template <class S, class Memory>
struct DecodeLayer {
  DecodeShape shape;
  DecodeState<S, Memory> st;
  int layer = 0;

  // Key and value rows of position t (d values each) into unit u's ring.
  KOKKOS_INLINE_FUNCTION void feed_ring(std::int64_t u, std::int64_t t, const S* k, const S* v) const {
    S* rk = &st.ring_k(layer, u, t % shape.ring, 0);
    S* rv = &st.ring_v(layer, u, t % shape.ring, 0);
    FMATTN_SIMD
    for (int c = 0; c < shape.d; ++c) {
      rk[c] = k[c];
      rv[c] = v[c];
    }
  }

  // The same rows into level l's running sums; completes the cell at its last position. The
  // sums start from the bias (learned) or 0 (average) and take the cell's tokens in order, as
  // the training forward sums them. (Rows of d contiguous values, through pointers: the loops
  // vectorize.)
  KOKKOS_INLINE_FUNCTION void feed_level(std::int64_t u, int l, std::int64_t t, const S* k, const S* v) const {
    const int p = shape.p, d = shape.d;
    const std::int64_t w = shape.cell_size(l), seg = w / p, off = t % w, pd = std::int64_t(p) * d;
    const bool learned = l <= shape.learned_levels;
    const int li = l - 1;
    S* sk = &st.sum_k(layer, u, li, 0, 0);  // [p][d]
    S* sv = &st.sum_v(layer, u, li, 0, 0);
    if (off == 0) {
      const S* bk = learned ? &st.bias_k(layer, li * pd) : nullptr;
      const S* bv = learned ? &st.bias_v(layer, li * pd) : nullptr;
      for (std::int64_t i = 0; i < pd; ++i) {
        sk[i] = bk ? bk[i] : S(0);
        sv[i] = bv ? bv[i] : S(0);
      }
    }
    if (learned) {
      const S* wk = &st.weight_k(layer, shape.weight_offset(l) + off * d);  // W_l[r][off][·] at r·w·d
      const S* wv = &st.weight_v(layer, shape.weight_offset(l) + off * d);
      for (int r = 0; r < p; ++r) {
        FMATTN_SIMD
        for (int c = 0; c < d; ++c) {
          sk[r * d + c] += wk[r * w * d + c] * k[c];
          sv[r * d + c] += wv[r * w * d + c] * v[c];
        }
      }
    } else {
      const std::int64_t r0 = off / seg * d;
      FMATTN_SIMD
      for (int c = 0; c < d; ++c) {
        sk[r0 + c] += k[c];
        sv[r0 + c] += v[c];
      }
    }
    if (off != w - 1) return;
    S* ck = &st.cell_k(layer, u, li, (t / w) % kept_cells * p, 0);
    S* cv = &st.cell_v(layer, u, li, (t / w) % kept_cells * p, 0);
    const S inv = learned ? S(1) : S(1) / S(seg);
    FMATTN_SIMD
    for (std::int64_t i = 0; i < pd; ++i) {
      ck[i] = sk[i] * inv;
      cv[i] = sv[i] * inv;
    }
  }

  // Levels whose far field a query at position t has: masked, those with a cell two before
  // its own (b ≥ 2); zero_sink, the window's levels (earlier cells are sinks).
  KOKKOS_INLINE_FUNCTION int far_levels(std::int64_t t) const {
    if (shape.method != Method::fma) return 0;
    if (shape.zero_sink) return shape.sink_levels;
    int l = 0;
    while (l < shape.levels && t / shape.cell_size(l + 1) >= 2) ++l;
    return l;
  }

  // Calls f(score, weight, value row or nullptr) for each slot of the query at position t of
  // unit u, in a fixed order: near field (or every key), then the far cells level by level. The
  // score of a sink (null value) is 0; without Scores every score is passed as 0 (not computed).
  template <bool Scores, class F>
  KOKKOS_INLINE_FUNCTION void for_each_slot(std::int64_t u, std::int64_t t, const S* q, F&& f) const {
    const int d = shape.d;
    // In `lanes` partial sums (a vector's worth, summed in a fixed order at the end): a single
    // running sum would make every multiply-add wait for the one before it.
    auto dot = [&](const S* k) {
      if (!Scores) return S(0);
      constexpr int lanes = 16;
      S part[lanes] = {};
      int c = 0;
      for (; c + lanes <= d; c += lanes) {
        FMATTN_SIMD
        for (int x = 0; x < lanes; ++x) part[x] += q[c + x] * k[c + x];
      }
      for (int x = 0; c + x < d; ++x) part[x] += q[c + x] * k[c + x];
      S s = 0;
      for (const S x : part) s += x;
      return S(shape.scale) * s;
    };
    const std::int64_t B = t / shape.m;
    std::int64_t lo = 0;
    if (shape.method != Method::exact) {
      lo = (B - 1) * shape.m;
      if (lo < 0) {
        if (shape.zero_sink)
          for (int j = 0; j < shape.m; ++j) f(S(0), S(1), static_cast<const S*>(nullptr));
        lo = 0;
      }
    }
    for (std::int64_t j = lo; j <= t; ++j) {
      const std::int64_t slot = j % shape.ring;
      f(dot(&st.ring_k(layer, u, slot, 0)), S(1), &st.ring_v(layer, u, slot, 0));
    }
    const int levels = far_levels(t);
    for (int l = 1; l <= levels; ++l) {
      const std::int64_t w = shape.cell_size(l), b = t / w;
      const S alpha = shape.count_weighting ? S(w / shape.p) : S(1);
      for (std::int64_t g = (b & 1) ? b - 3 : b - 2; g <= b - 2; ++g) {
        if (g < 0) {
          if (shape.zero_sink)
            for (int r = 0; r < shape.p; ++r) f(S(0), alpha, static_cast<const S*>(nullptr));
          continue;
        }
        const std::int64_t first = g % kept_cells * shape.p;
        for (int r = 0; r < shape.p; ++r)
          f(dot(&st.cell_k(layer, u, l - 1, first + r, 0)), alpha, &st.cell_v(layer, u, l - 1, first + r, 0));
      }
    }
  }

  // y = the attention output of the query at position t of unit u (one softmax over all slots).
  KOKKOS_INLINE_FUNCTION void attend(std::int64_t u, std::int64_t t, const S* q, S* y) const {
    std::int64_t n = 0;
    S mx = 0;
    for_each_slot<true>(u, t, q, [&](S sigma, S, const S*) {
      st.scores(u, n) = sigma;
      mx = n == 0 || sigma > mx ? sigma : mx;
      ++n;
    });
    for (int c = 0; c < shape.d; ++c) y[c] = S(0);
    S den = 0;
    n = 0;
    for_each_slot<false>(u, t, q, [&](S, S alpha, const S* value) {
      const S e = alpha * exp_nonpositive(st.scores(u, n++) - mx);
      den += e;
      if (value)
        for (int c = 0; c < shape.d; ++c) y[c] += e * value[c];
    });
    for (int c = 0; c < shape.d; ++c) y[c] /= den;
  }
};

}  // namespace fmattn::detail

namespace fmattn::detail {

// One new token per stream at position t: rows q, k, v, y [streams][heads·d] (head h of stream s
// at columns h·d of row s). Feeds k and v into the state, then attends q.
template <class Exec, class S, class Memory, class Rows, class OutRows>
void decode_token(const Exec& space, const DecodeLayer<S, Memory>& layer, std::int64_t t, const Rows& q, const Rows& k,
                  const Rows& v, const OutRows& y) {
  const std::int64_t units = std::int64_t(q.extent(0)) * layer.shape.heads;
  Kokkos::parallel_for(
      "fmattn::decode_token", Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(space, 0, units),
      KOKKOS_LAMBDA(const std::int64_t u) {
        const std::int64_t s = u / layer.shape.heads, c0 = u % layer.shape.heads * layer.shape.d;
        layer.feed_ring(u, t, &k(s, c0), &v(s, c0));
        for (int l = 1; l <= layer.shape.levels; ++l) layer.feed_level(u, l, t, &k(s, c0), &v(s, c0));
        layer.attend(u, t, &q(s, c0), &y(s, c0));
      });
}

// The state of every unit (stream·head) after positions 0 .. n − 1, from one window's keys and
// values per head [heads][≥ n][d] (every stream gets the same): the ring takes the last ring
// positions; each level feeds the tokens of its last three completed cells and of its current
// one, through the same code as decode_token.
template <class Exec, class S, class Memory, class Heads>
void decode_prefill(const Exec& space, const DecodeLayer<S, Memory>& layer, std::int64_t n, const Heads& k,
                    const Heads& v, std::int64_t streams) {
  const int items = 1 + layer.shape.levels;
  Kokkos::parallel_for(
      "fmattn::decode_prefill",
      Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(space, 0, streams * layer.shape.heads * items),
      KOKKOS_LAMBDA(const std::int64_t i) {
        const std::int64_t u = i / items, h = u % layer.shape.heads;
        const int l = int(i % items);
        if (l == 0) {
          for (std::int64_t j = n > layer.shape.ring ? n - layer.shape.ring : 0; j < n; ++j)
            layer.feed_ring(u, j, &k(h, j, 0), &v(h, j, 0));
          return;
        }
        const std::int64_t w = layer.shape.cell_size(l), cell = n / w;
        for (std::int64_t j = cell > 3 ? (cell - 3) * w : 0; j < n; ++j)
          layer.feed_level(u, l, j, &k(h, j, 0), &v(h, j, 0));
      });
}

}  // namespace fmattn::detail
