// The register-blocked products of every attention tile, forward and backward. The one
// micro-kernel underneath (the seam for a GPU tensor-core version):
//   acc[r][0..CB) += Σ_{c in [c0, c1)} A(r, c) · B(c, 0..CB),
// A(r, c) = a[r·ars + c·acs] broadcast, row c of B the CB contiguous values at b + c·brs.
// With A = key rows and B = a transposed lane matrix it forms scores (keys × query lanes); with
// A = a transposed score matrix and B = value rows it forms outputs (rows × channels). The
// accumulators stay in registers over the whole contraction.
#pragma once

#include "kernels/simd.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

template <int NR, int CB, class Scalar>
KOKKOS_INLINE_FUNCTION void accumulate_block(Scalar (&acc)[NR][CB], const Scalar* a, std::int64_t ars, std::int64_t acs,
                                             const Scalar* b, std::int64_t brs, int c0, int c1) {
  for (int c = c0; c < c1; ++c) {
    const Scalar* brow = b + c * brs;
    for (int rr = 0; rr < NR; ++rr) {
      const Scalar x = a[rr * ars + c * acs];
      FMATTN_SIMD
      for (int cc = 0; cc < CB; ++cc) acc[rr][cc] += x * brow[cc];
    }
  }
}

// The same with only the first `width` (< CB) values of each B row read: B rows that are not
// padded to whole lane blocks (rows of a [n][d] array read in place when d is not a multiple
// of CB). Accumulators past `width` are left as they are.
template <int NR, int CB, class Scalar>
KOKKOS_INLINE_FUNCTION void accumulate_block_tail(Scalar (&acc)[NR][CB], const Scalar* a, std::int64_t ars,
                                                  std::int64_t acs, const Scalar* b, std::int64_t brs, int c0, int c1,
                                                  int width) {
  for (int c = c0; c < c1; ++c) {
    const Scalar* brow = b + c * brs;
    for (int rr = 0; rr < NR; ++rr) {
      const Scalar x = a[rr * ars + c * acs];
      for (int cc = 0; cc < width; ++cc) acc[rr][cc] += x * brow[cc];
    }
  }
}

// The two tile products built on it, over whole tiles. Their optional pointers (null: none)
// take their type from the others: nullptr deduces no Scalar.
template <class T>
struct NonDeduced {
  using type = T;
};

// Scores, slots × query lanes: out[c][r] = init[c] + Σ_x A_c[x]·B[x][r] for the NK slots
// from c0 and the CB lanes from r0, where `out` and `b` point at lane r0 of their row 0,
// slot c's row of A is at a + c·as, and init may be null (0).
template <int NK, int CB, class Scalar>
KOKKOS_INLINE_FUNCTION void lane_block(Scalar* out, std::int64_t os, const typename NonDeduced<Scalar>::type* init,
                                       const Scalar* a, std::int64_t as, const Scalar* b, std::int64_t bs, int depth,
                                       int c0) {
  Scalar acc[NK][CB];
  FMATTN_UNROLL
  for (int kk = 0; kk < NK; ++kk) {
    const Scalar w = init ? init[c0 + kk] : Scalar(0);
    FMATTN_UNROLL
    for (int cc = 0; cc < CB; ++cc) acc[kk][cc] = w;
  }
  accumulate_block<NK, CB>(acc, a + c0 * as, as, 1, b, bs, 0, depth);
  FMATTN_UNROLL
  for (int kk = 0; kk < NK; ++kk) {
    Scalar* orow = out + (c0 + kk) * os;
    FMATTN_UNROLL
    for (int cc = 0; cc < CB; ++cc) orow[cc] = acc[kk][cc];
  }
}

// lane_block for slots [c0, c_end): blocks of NK slots, the rest in blocks of NK/2, ...
template <int NK, int CB, class Scalar>
KOKKOS_INLINE_FUNCTION void lane_blocks(Scalar* out, std::int64_t os, const typename NonDeduced<Scalar>::type* init,
                                        const Scalar* a, std::int64_t as, const Scalar* b, std::int64_t bs, int depth,
                                        int c0, int c_end) {
  for (; c0 + NK <= c_end; c0 += NK) lane_block<NK, CB>(out, os, init, a, as, b, bs, depth, c0);
  if constexpr (NK > 1) lane_blocks<NK / 2, CB>(out, os, init, a, as, b, bs, depth, c0, c_end);
}

// Rows × channels: acc[r][x] = rescale[r]·acc[r][x] + Σ_{c in [c0, c1)} P(r, c)·V_c[x] for
// the NR rows from r0 and the CB channels from x0 (only the first `width` when not Full: V rows
// read in place), where P(r, c) = p[r·prs + c·pcs], V_c is at v + c·vs, and rescale null keeps
// acc as it is. Full and partial blocks are separate instantiations: an accumulator array that a
// runtime-bounded loop also indexes lives in memory rather than in registers, which halved the
// speed of the full blocks (bench/tile_gemm.cpp).
template <int NR, int CB, bool Full, class Scalar>
KOKKOS_INLINE_FUNCTION void row_block(Scalar* acc, std::int64_t accs, const typename NonDeduced<Scalar>::type* rescale,
                                      const Scalar* p, std::int64_t prs, std::int64_t pcs, const Scalar* v,
                                      std::int64_t vs, int c0, int c1, int width) {
  Scalar a[NR][CB];
  FMATTN_UNROLL
  for (int rr = 0; rr < NR; ++rr) {
    const Scalar f = rescale ? rescale[rr] : Scalar(1);
    const Scalar* arow = acc + rr * accs;
    FMATTN_UNROLL
    for (int cc = 0; cc < CB; ++cc) a[rr][cc] = arow[cc] * f;
  }
  if constexpr (Full)
    accumulate_block<NR, CB>(a, p, prs, pcs, v, vs, c0, c1);
  else
    accumulate_block_tail<NR, CB>(a, p, prs, pcs, v, vs, c0, c1, width);
  FMATTN_UNROLL
  for (int rr = 0; rr < NR; ++rr) {
    Scalar* arow = acc + rr * accs;
    FMATTN_UNROLL
    for (int cc = 0; cc < CB; ++cc) arow[cc] = a[rr][cc];
  }
}

// row_block over rows [r0, r_end) and all channels: blocks of NR rows, the rest in blocks of
// NR/2, ...; a block of rows [r, r + NR) contracts over the slots range(r, r + NR) returns.
// Channel blocks past d are computed on zero padding (`padded`: V rows in scratch, padded to
// whole blocks) or skipped (V rows read in place).
template <int NR, int CB, class Scalar, class Range>
KOKKOS_INLINE_FUNCTION void row_blocks(Scalar* acc, std::int64_t accs, const typename NonDeduced<Scalar>::type* rescale,
                                       const Scalar* p, std::int64_t prs, std::int64_t pcs, const Scalar* v,
                                       std::int64_t vs, int d, bool padded, int r0, int r_end, const Range& range) {
  const int dp = (d + CB - 1) / CB * CB;
  for (; r0 + NR <= r_end; r0 += NR) {
    const auto span = range(r0, r0 + NR);
    for (int x0 = 0; x0 < (padded ? dp : d); x0 += CB) {
      const Scalar* rs = rescale ? rescale + r0 : nullptr;
      if (padded || x0 + CB <= d)
        row_block<NR, CB, true>(acc + r0 * accs + x0, accs, rs, p + r0 * prs, prs, pcs, v + x0, vs, span.first,
                                span.second, CB);
      else
        row_block<NR, CB, false>(acc + r0 * accs + x0, accs, rs, p + r0 * prs, prs, pcs, v + x0, vs, span.first,
                                 span.second, d - x0);
    }
  }
  if constexpr (NR > 1) row_blocks<NR / 2, CB>(acc, accs, rescale, p, prs, pcs, v, vs, d, padded, r0, r_end, range);
}

// The two products of the device shape (split-Q), per vector lane: the score of one slot against
// one query row (q_x at q + x·qs, the slot's key row contiguous, plus its log-weight), and one
// output channel of one row, acc = rescale·acc + Σ_{c < len} P_c·V_c (P_c at p + c·ps, V_c at
// v + c·vs). A tensor-core micro-kernel for CUDA or HIP replaces these two.
template <class Scalar>
KOKKOS_INLINE_FUNCTION Scalar row_score(const Scalar* q, std::int64_t qs, const Scalar* k, Scalar logw, int d) {
  Scalar s = logw;
  for (int x = 0; x < d; ++x) s += q[x * qs] * k[x];
  return s;
}

template <class Scalar>
KOKKOS_INLINE_FUNCTION void row_accumulate(Scalar* acc, Scalar rescale, const Scalar* p, std::int64_t ps,
                                           const Scalar* v, std::int64_t vs, int len) {
  Scalar a = *acc * rescale;
  for (int c = 0; c < len; ++c) a += p[c * ps] * v[c * vs];
  *acc = a;
}

}  // namespace fmattn::detail
