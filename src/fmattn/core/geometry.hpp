// Level geometry of Fast Multipole Attention (spec §1–3): padded length, coarse levels, cell
// sizes, interaction lists and coarse-token counts. One small header used by the kernels, the
// drivers, the tests and the MPI planner alike, so that all of them agree on who sees what.
#pragma once

#include <fmattn/core/options.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn {

// At most this many cells of one level are in a query's far field (spec §3).
inline constexpr int max_far_cells = 3;
// 2^62 tokens is far beyond any machine; the cap keeps the level loops bounded.
inline constexpr int max_levels = 62;

struct Geometry {
  std::int64_t n = 1;  // sequence length
  std::int64_t N = 1;  // padded length
  int m = 1;           // finest block size
  int p = 1;           // coarse tokens per cell
  int L = 0;           // number of coarse levels
  Variant variant = Variant::causal;

  KOKKOS_INLINE_FUNCTION std::int64_t cell_size(int l) const { return std::int64_t(m) << (l - 1); }
  KOKKOS_INLINE_FUNCTION std::int64_t num_cells(int l) const { return N / cell_size(l); }
  KOKKOS_INLINE_FUNCTION std::int64_t num_blocks() const { return N / m; }
  // Present fine tokens in [begin, begin + len).
  KOKKOS_INLINE_FUNCTION std::int64_t present(std::int64_t begin, std::int64_t len) const {
    const std::int64_t end = begin + len < n ? begin + len : n;
    return end > begin ? end - begin : 0;
  }

  // Index of the first coarse token of level l in the all-levels coarse array; levels are
  // stored finest first, each as num_cells(l) * p tokens.
  KOKKOS_INLINE_FUNCTION std::int64_t level_offset(int l) const {
    std::int64_t off = 0;
    for (int k = 1; k < l; ++k) off += num_cells(k) * p;
    return off;
  }
  KOKKOS_INLINE_FUNCTION std::int64_t total_coarse_tokens() const { return level_offset(L + 1); }

  // Offset of level l's weights in the flattened learned-weight array ([p][w_l][d] per level).
  KOKKOS_INLINE_FUNCTION std::int64_t weight_offset(int l, int d) const {
    std::int64_t off = 0;
    for (int k = 1; k < l; ++k) off += std::int64_t(p) * cell_size(k) * d;
    return off;
  }
  KOKKOS_INLINE_FUNCTION std::int64_t total_weights(int d) const { return weight_offset(L + 1, d); }

  // Count of coarse token r of cell g at level l (spec §2): for average, the present tokens of
  // its sub-segment; for learned, the present tokens of the cell divided by p.
  KOKKOS_INLINE_FUNCTION double count(Downsampling ds, int l, std::int64_t g, int r) const {
    const std::int64_t w = cell_size(l);
    if (ds == Downsampling::average) return double(present(g * w + r * (w / p), w / p));
    return double(present(g * w, w)) / p;
  }

  // Coarse tokens of cell g at level l with a nonzero count. They are always the first ones:
  // average sub-segments fill from the left, and a learned cell's tokens are present together,
  // so the present tokens of a cell are r = 0 .. present_tokens - 1.
  KOKKOS_INLINE_FUNCTION int present_tokens(Downsampling ds, int l, std::int64_t g) const {
    const std::int64_t w = cell_size(l), fine = present(g * w, w);
    if (ds != Downsampling::average) return fine > 0 ? p : 0;
    const std::int64_t segment = w / p;
    return int((fine + segment - 1) / segment);
  }

  // Far-field cells of cell b at level l (spec §3), in increasing order; cells outside
  // 0 .. num_cells(l)-1 are left out. `negative` receives how many listed cells were < 0 (the
  // zero_sink boundary turns those into sink slots). Returns the number of cells written.
  KOKKOS_INLINE_FUNCTION int far_cells(int l, std::int64_t b, std::int64_t out[max_far_cells],
                                       int* negative = nullptr) const {
    std::int64_t cand[max_far_cells];
    int k = 0;
    const bool odd = (b & 1) != 0;
    if (odd) cand[k++] = b - 3;
    cand[k++] = b - 2;
    if (variant == Variant::bidirectional) {
      cand[k++] = b + 2;
      if (!odd) cand[k++] = b + 3;
    }
    const std::int64_t cells = num_cells(l);
    int c = 0, neg = 0;
    for (int j = 0; j < k; ++j) {
      if (cand[j] < 0) {
        ++neg;
      } else if (cand[j] < cells) {
        out[c++] = cand[j];
      }
    }
    if (negative) *negative = neg;
    return c;
  }

  // Fine keys of the near field of fine block B as one contiguous range [lo, hi) of present
  // positions; causal queries additionally keep only keys j <= i.
  KOKKOS_INLINE_FUNCTION void near_range(std::int64_t B, std::int64_t& lo, std::int64_t& hi) const {
    lo = (B - 1) * m < 0 ? 0 : (B - 1) * m;
    const std::int64_t end = (variant == Variant::bidirectional ? B + 2 : B + 1) * m;
    hi = end < n ? end : n;
  }
};

// The smallest power of two >= x (x >= 1).
KOKKOS_INLINE_FUNCTION std::int64_t next_pow2(std::int64_t x) {
  std::int64_t v = 1;
  while (v < x) v <<= 1;
  return v;
}

KOKKOS_INLINE_FUNCTION bool is_pow2(std::int64_t x) { return x > 0 && (x & (x - 1)) == 0; }

// Geometry for length n with block size m and rank p (spec §1). n >= 1, m and p powers of two.
inline Geometry make_geometry(std::int64_t n, int m, int p, Variant variant) {
  Geometry g;
  g.n = n;
  g.m = m;
  g.p = p;
  g.variant = variant;
  g.N = n <= m ? std::int64_t(m) : std::int64_t(m) * next_pow2((n + m - 1) / m);
  int log2_blocks = 0;
  while ((std::int64_t(m) << log2_blocks) < g.N) ++log2_blocks;
  g.L = log2_blocks > 1 ? log2_blocks - 1 : 0;
  return g;
}

}  // namespace fmattn
