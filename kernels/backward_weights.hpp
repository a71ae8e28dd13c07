// The gradients of the learned downsampling weights and biases (attention_backward.hpp):
// sums over heads and cells of the coarse gradients times the fine tokens they came from.
#pragma once

#include "kernels/backward_state.hpp"
#include "kernels/simd.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION bool AttentionBackward<ExecSpace, Scalar>::zero_row(const Scalar* x) const {
  bool zero = true;
  for (int c = 0; c < d; ++c) zero = zero && x[c] == Scalar(0);
  return zero;
}

// Positions [pos0, pos0 + weight_block) of one level's weights (block f of all levels' blocks),
// channels [c_begin, c_end): the sums over heads and cells, in that order, of the shard's own
// fine tokens (a sharded sequence's ranks add their sums).
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::weight_channels(std::int64_t f, const int c_begin,
                                                                                  const int c_end) const {
  int l = 1;
  while (f >= weight_blocks(g, l)) f -= weight_blocks(g, l++);
  const std::int64_t w = g.cell_size(l), pos0 = f * weight_block, off = g.weight_offset(l, d);
  const std::int64_t own0 = s.token_begin(g), own1 = s.token_end(g);
  const int npos = int(w - pos0 < weight_block ? w - pos0 : weight_block);
  for (int r = 0; r < g.p; ++r)
    for (int j = 0; j < npos; ++j)
      for (int c = c_begin; c < c_end; ++c) {
        dkw(off + (r * w + pos0 + j) * d + c) = 0;
        dvw(off + (r * w + pos0 + j) * d + c) = 0;
      }
  for (std::int64_t h = 0; h < std::int64_t(dkc.extent(0)); ++h)
    for (std::int64_t cell = own0 / w; cell * w + pos0 < own1; ++cell) {
      // The block's rows in this cell that the shard owns.
      const std::int64_t row0 = cell * w + pos0, row_end = row0 + npos < own1 ? row0 + npos : own1;
      const int j0 = int(row0 < own0 ? own0 - row0 : 0), rows = int(row_end - row0);
      if (j0 >= rows) continue;
      for (int r = 0; r < g.p; ++r) {
        const Scalar* gk = &dkc(h, s.coarse_index(l, cell, r), 0);
        const Scalar* gv = &dvc(h, s.coarse_index(l, cell, r), 0);
        if (zero_row(gk) && zero_row(gv)) continue;
        for (int j = j0; j < rows; ++j) {
          const Scalar* xk = k(h, key_row(row0 + j));
          const Scalar* xv = v(h, key_row(row0 + j));
          double* sk = &dkw(off + (r * w + pos0 + j) * d);
          double* sv = &dvw(off + (r * w + pos0 + j) * d);
          FMATTN_SIMD
          for (int c = c_begin; c < c_end; ++c) {
            sk[c] += double(gk[c]) * double(xk[c]);
            sv[c] += double(gv[c]) * double(xv[c]);
          }
        }
      }
    }
}

template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::operator()(WeightTag, const std::int64_t f) const {
  weight_channels(f, 0, d);
}

template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::operator()(WeightTag, const std::int64_t f,
                                                                             const std::int64_t c) const {
  weight_channels(f, int(c), int(c) + 1);
}

// Row b_l[r][:] of the K and V biases (f = (l - 1) * p + r), channels [c_begin, c_end): the sum
// of the coarse gradients over heads and the cells the shard owns.
template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::bias_channels(const std::int64_t f, const int c_begin,
                                                                                const int c_end) const {
  const int r = int(f % g.p), l = int(f / g.p) + 1;
  const std::int64_t w = g.cell_size(l), own0 = s.token_begin(g), own1 = s.token_end(g);
  double* sk = &dkb(f * d);
  double* sv = &dvb(f * d);
  for (int c = c_begin; c < c_end; ++c) sk[c] = sv[c] = 0;
  // The cells whose first token the shard owns (each cell is counted by one shard).
  for (std::int64_t h = 0; h < std::int64_t(dkc.extent(0)); ++h)
    for (std::int64_t cell = (own0 + w - 1) / w; cell * w < own1; ++cell) {
      const Scalar* gk = &dkc(h, s.coarse_index(l, cell, r), 0);
      const Scalar* gv = &dvc(h, s.coarse_index(l, cell, r), 0);
      FMATTN_SIMD
      for (int c = c_begin; c < c_end; ++c) {
        sk[c] += double(gk[c]);
        sv[c] += double(gv[c]);
      }
    }
}

template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::operator()(BiasTag, const std::int64_t f) const {
  bias_channels(f, 0, d);
}

template <class ExecSpace, class Scalar>
KOKKOS_INLINE_FUNCTION void AttentionBackward<ExecSpace, Scalar>::operator()(BiasTag, const std::int64_t f,
                                                                             const std::int64_t c) const {
  bias_channels(f, int(c), int(c) + 1);
}

}  // namespace fmattn::detail
