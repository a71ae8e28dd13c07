// The one register-blocked product every attention tile uses, forward and backward:
//   acc[r][0..CB) += Σ_{c in [c0, c1)} A(r, c) · B(c, 0..CB),
// A(r, c) = a[r·ars + c·acs] broadcast, row c of B the CB contiguous values at b + c·brs.
// With A = key rows and B = a transposed lane matrix it forms scores (keys × query lanes); with
// A = a transposed score matrix and B = value rows it forms outputs (rows × channels). The
// accumulators stay in registers over the whole contraction.
#pragma once

#include "simd.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn {

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

}  // namespace fmattn
