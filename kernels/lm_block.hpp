// One block of the model (docs/language-model.md) on rows, the attention handed in: the one
// definition that training's forward and the decoder's step both run, so that the two compute
// the same function.
#pragma once

#include <fmattn/model/model_views.hpp>
#include "kernels/dense_gemm.hpp"
#include "kernels/lm_layers.hpp"

namespace fmattn::detail {

// A block's rows: its input x and output x_next, and between them what the backward keeps (a1 =
// LN1(x), h = x + attention, a2 = LN2(h), the MLP's u and g = GELU(u), the LayerNorms' row
// statistics) and the q, k, v, y rows of attention ([rows][W], heads side by side).
template <class S, class Memory>
struct BlockRows {
  ModelMatrix<S, Memory> x, a1, q, k, v, y, h, a2, u, g, x_next;
  ModelVector<S, Memory> mean1, rstd1, mean2, rstd2;
};

// x_next = h + GELU(LN2(h)·W1 + b1)·W2 + b2 with h = x + attend(q, k, v)·Wo + bo, q, k, v =
// LN1(x)·W{q,k,v} + b{q,k,v}; attend(q, k, v, y) writes y.
template <class Exec, class S, class Memory, class Attend>
void block_forward(const Exec& e, const BlockViews<S, Memory>& p, const BlockRows<S, Memory>& r, Attend&& attend) {
  lm::layer_norm(e, r.x, p.ln1_gain, p.ln1_bias, r.a1, r.mean1, r.rstd1);
  dense_gemm(e, 'N', 'N', r.a1, p.wq, S(0), r.q);
  dense_gemm(e, 'N', 'N', r.a1, p.wk, S(0), r.k);
  dense_gemm(e, 'N', 'N', r.a1, p.wv, S(0), r.v);
  lm::add_bias(e, r.q, p.bq);
  lm::add_bias(e, r.k, p.bk);
  lm::add_bias(e, r.v, p.bv);
  attend(r.q, r.k, r.v, r.y);
  Kokkos::deep_copy(e, r.h, r.x);
  dense_gemm(e, 'N', 'N', r.y, p.wo, S(1), r.h);
  lm::add_bias(e, r.h, p.bo);
  lm::layer_norm(e, r.h, p.ln2_gain, p.ln2_bias, r.a2, r.mean2, r.rstd2);
  dense_gemm(e, 'N', 'N', r.a2, p.w1, S(0), r.u);
  lm::bias_gelu(e, r.u, p.b1, r.g);
  Kokkos::deep_copy(e, r.x_next, r.h);
  dense_gemm(e, 'N', 'N', r.g, p.w2, S(1), r.x_next);
  lm::add_bias(e, r.x_next, p.b2);
}

}  // namespace fmattn::detail
