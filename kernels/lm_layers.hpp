// The language model's layers other than attention and the dense products (docs/language-model.md):
// embedding, LayerNorm, GELU, biases, the head split, the cross-entropy of the tied logits,
// forward and backward. Every sum that produces a result runs in a fixed order (one thread per
// output, rows in increasing order), never through atomics or parallel_reduce, so a model
// trains to the same bits at any thread count.
#pragma once

#include "kernels/fast_exp.hpp"
#include "kernels/kokkos_compat.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail::lm {

template <class Exec>
using Range = Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>;
template <class Exec>
using Range2 = Kokkos::MDRangePolicy<Exec, Kokkos::Rank<2>, Kokkos::IndexType<std::int64_t>>;

// Column sums run one block of `column_block` contiguous columns per thread, rows in order:
// each column's sum has one fixed order, and the rows are read contiguously.
inline constexpr std::int64_t column_block = 16;

// Rows r = w·T + t of the windows of a call: x(r, c) = E(token(r), c) + P(t, c), T = P's rows;
// an empty P (positions none) adds nothing.
template <class Exec, class Tokens, class CMatrix, class Matrix>
void embed(const Exec& space, const Tokens& token, const CMatrix& E, const CMatrix& P, const Matrix& x) {
  const std::int64_t T = P.extent(0);
  using S = typename Matrix::non_const_value_type;
  Kokkos::parallel_for(
      "fmattn::lm::embed", Range2<Exec>(space, {0, 0}, {std::int64_t(x.extent(0)), std::int64_t(x.extent(1))}),
      KOKKOS_LAMBDA(const std::int64_t r, const std::int64_t c) {
        x(r, c) = E(token(r), c) + (T > 0 ? P(r % T, c) : S(0));
      });
}

// dE(v, ·) += dx of the rows holding byte v, in increasing row (`order` lists the rows grouped
// by byte, group v at [start(v), start(v + 1))); dP(t, ·) += dx of row t of each window, in
// window order, unless dP is empty (positions none). Both are the sums of the windows taken one
// at a time, in the same order.
template <class Exec, class Index, class CMatrix, class Matrix>
void embed_backward(const Exec& space, const Index& order, const Index& start, const CMatrix& dx, const Matrix& dE,
                    const Matrix& dP) {
  const std::int64_t V = dE.extent(0), W = dE.extent(1), T = dP.extent(0);
  Kokkos::parallel_for(
      "fmattn::lm::embed_backward_tokens", Range2<Exec>(space, {0, 0}, {V, W}),
      KOKKOS_LAMBDA(const std::int64_t v, const std::int64_t c) {
        auto sum = dE(v, c);
        for (std::int64_t i = start(v); i < start(v + 1); ++i) sum += dx(order(i), c);
        dE(v, c) = sum;
      });
  if (T == 0) return;
  const std::int64_t windows = dx.extent(0) / T;
  Kokkos::parallel_for(
      "fmattn::lm::embed_backward_positions", Range2<Exec>(space, {0, 0}, {T, W}),
      KOKKOS_LAMBDA(const std::int64_t t, const std::int64_t c) {
        auto sum = dP(t, c);
        for (std::int64_t w = 0; w < windows; ++w) sum += dx(w * T + t, c);
        dP(t, c) = sum;
      });
}

// y = (x − mean) · rstd · gain + bias per row, eps 1e-5, biased variance; mean and rstd kept
// for the backward. Row statistics in double.
template <class Exec, class CMatrix, class CVector, class Matrix, class Vector>
void layer_norm(const Exec& space, const CMatrix& x, const CVector& gain, const CVector& bias, const Matrix& y,
                const Vector& mean, const Vector& rstd) {
  const std::int64_t W = x.extent(1);
  using S = typename Matrix::non_const_value_type;
  Kokkos::parallel_for(
      "fmattn::lm::layer_norm", Range<Exec>(space, 0, x.extent(0)), KOKKOS_LAMBDA(const std::int64_t t) {
        double s = 0;
        for (std::int64_t c = 0; c < W; ++c) s += double(x(t, c));
        const double mu = s / double(W);
        double ss = 0;
        for (std::int64_t c = 0; c < W; ++c) ss += (double(x(t, c)) - mu) * (double(x(t, c)) - mu);
        const double r = 1.0 / compat::sqrt(ss / double(W) + 1e-5);
        mean(t) = S(mu);
        rstd(t) = S(r);
        for (std::int64_t c = 0; c < W; ++c) y(t, c) = S((double(x(t, c)) - mu) * r) * gain(c) + bias(c);
      });
}

// Given dy, adds the LayerNorm's input gradient to dx and its gain and bias gradients to
// dgain and dbias.
template <class Exec, class CMatrix, class CVector, class Matrix, class Vector>
void layer_norm_backward(const Exec& space, const CMatrix& dy, const CMatrix& x, const CVector& mean,
                         const CVector& rstd, const CVector& gain, const Matrix& dx, const Vector& dgain,
                         const Vector& dbias) {
  const std::int64_t T = x.extent(0), W = x.extent(1);
  using S = typename Matrix::non_const_value_type;
  Kokkos::parallel_for(
      "fmattn::lm::layer_norm_backward_input", Range<Exec>(space, 0, T), KOKKOS_LAMBDA(const std::int64_t t) {
        const double mu = mean(t), r = rstd(t);
        double sg = 0, sgx = 0;
        for (std::int64_t c = 0; c < W; ++c) {
          const double g = double(dy(t, c)) * double(gain(c));
          sg += g;
          sgx += g * (double(x(t, c)) - mu) * r;
        }
        sg /= double(W);
        sgx /= double(W);
        for (std::int64_t c = 0; c < W; ++c) {
          const double xhat = (double(x(t, c)) - mu) * r;
          dx(t, c) += S(r * (double(dy(t, c)) * double(gain(c)) - sg - xhat * sgx));
        }
      });
  Kokkos::parallel_for(
      "fmattn::lm::layer_norm_backward_params", Range<Exec>(space, 0, (W + column_block - 1) / column_block),
      KOKKOS_LAMBDA(const std::int64_t blk) {
        const std::int64_t c0 = blk * column_block, n = W - c0 < column_block ? W - c0 : column_block;
        S sg[column_block], sb[column_block];
        for (std::int64_t j = 0; j < n; ++j) {
          sg[j] = dgain(c0 + j);
          sb[j] = dbias(c0 + j);
        }
        for (std::int64_t t = 0; t < T; ++t) {
          const S mu = mean(t), r = rstd(t);
          for (std::int64_t j = 0; j < n; ++j) {
            sg[j] += dy(t, c0 + j) * ((x(t, c0 + j) - mu) * r);
            sb[j] += dy(t, c0 + j);
          }
        }
        for (std::int64_t j = 0; j < n; ++j) {
          dgain(c0 + j) = sg[j];
          dbias(c0 + j) = sb[j];
        }
      });
}

// m(t, c) += b(c).
template <class Exec, class Matrix, class CVector>
void add_bias(const Exec& space, const Matrix& m, const CVector& b) {
  const std::int64_t C = m.extent(1);
  Kokkos::parallel_for(
      "fmattn::lm::add_bias", Range<Exec>(space, 0, m.extent(0)), KOKKOS_LAMBDA(const std::int64_t t) {
        for (std::int64_t c = 0; c < C; ++c) m(t, c) += b(c);
      });
}

// out(c) += Σ_t m(t, c), rows in increasing order: the gradient of a bias.
template <class Exec, class CMatrix, class Vector>
void add_column_sums(const Exec& space, const CMatrix& m, const Vector& out) {
  const std::int64_t T = m.extent(0), C = m.extent(1);
  using S = typename Vector::non_const_value_type;
  Kokkos::parallel_for(
      "fmattn::lm::column_sums", Range<Exec>(space, 0, (C + column_block - 1) / column_block),
      KOKKOS_LAMBDA(const std::int64_t blk) {
        const std::int64_t c0 = blk * column_block, n = C - c0 < column_block ? C - c0 : column_block;
        S sum[column_block];
        for (std::int64_t j = 0; j < n; ++j) sum[j] = out(c0 + j);
        for (std::int64_t t = 0; t < T; ++t)
          for (std::int64_t j = 0; j < n; ++j) sum[j] += m(t, c0 + j);
        for (std::int64_t j = 0; j < n; ++j) out(c0 + j) = sum[j];
      });
}

// GELU, tanh approximation (docs/language-model.md), and its derivative, in the model's
// precision. tanh from the vectorizable exp of fast_exp.hpp: libm's tanh in double cost more
// than the MLP's GEMMs.
template <class S>
KOKKOS_INLINE_FUNCTION S fast_tanh(S a) {
  const S e = exp_nonpositive(S(-2) * (a < S(0) ? -a : a));
  const S t = (S(1) - e) / (S(1) + e);
  return a < S(0) ? -t : t;
}
template <class S>
KOKKOS_INLINE_FUNCTION S gelu(S u) {
  return S(0.5) * u * (S(1) + fast_tanh(S(0.7978845608028654) * (u + S(0.044715) * u * u * u)));
}
template <class S>
KOKKOS_INLINE_FUNCTION S gelu_derivative(S u) {
  const S th = fast_tanh(S(0.7978845608028654) * (u + S(0.044715) * u * u * u));
  return S(0.5) * (S(1) + th) +
         S(0.5) * u * (S(1) - th * th) * S(0.7978845608028654) * (S(1) + S(3.0 * 0.044715) * u * u);
}

// u += b; g = GELU(u).
template <class Exec, class Matrix, class CVector>
void bias_gelu(const Exec& space, const Matrix& u, const CVector& b, const Matrix& g) {
  const std::int64_t C = u.extent(1);
  Kokkos::parallel_for(
      "fmattn::lm::bias_gelu", Range<Exec>(space, 0, u.extent(0)), KOKKOS_LAMBDA(const std::int64_t t) {
        for (std::int64_t c = 0; c < C; ++c) {
          u(t, c) += b(c);
          g(t, c) = gelu(u(t, c));
        }
      });
}

// dg *= GELU'(u), in place.
template <class Exec, class CMatrix, class Matrix>
void gelu_backward(const Exec& space, const CMatrix& u, const Matrix& dg) {
  const std::int64_t C = u.extent(1);
  Kokkos::parallel_for(
      "fmattn::lm::gelu_backward", Range<Exec>(space, 0, u.extent(0)), KOKKOS_LAMBDA(const std::int64_t t) {
        for (std::int64_t c = 0; c < C; ++c) dg(t, c) *= gelu_derivative(u(t, c));
      });
}

// Between the model's rows m [windows·T][H·d] and the attention's heads a [windows·H][rows][d]
// from row `first` (a sharded window's keys: T own rows after a halo), either way: one
// (window·head, position) row of d contiguous values each.
template <class Exec, class Matrix, class Tensor>
void move_heads(const Exec& space, const Matrix& m, const Tensor& a, bool to_heads, std::int64_t first) {
  const std::int64_t d = a.extent(2), H = m.extent(1) / d, WH = a.extent(0), T = WH > 0 ? m.extent(0) * H / WH : 0;
  Kokkos::parallel_for(
      "fmattn::lm::move_heads", Range<Exec>(space, 0, WH * T), KOKKOS_LAMBDA(const std::int64_t r) {
        const std::int64_t wh = r / T, t = r % T, row = wh / H * T + t, h = wh % H;
        for (std::int64_t c = 0; c < d; ++c) {
          if (to_heads)
            a(wh, first + t, c) = m(row, h * d + c);
          else
            m(row, h * d + c) = a(wh, first + t, c);
        }
      });
}
template <class Exec, class Matrix, class Tensor>
void split_heads(const Exec& space, const Matrix& m, const Tensor& a, std::int64_t first = 0) {
  move_heads(space, m, a, true, first);
}
template <class Exec, class Tensor, class Matrix>
void merge_heads(const Exec& space, const Tensor& a, const Matrix& m, std::int64_t first = 0) {
  move_heads(space, m, a, false, first);
}

// out(c, r) = in(r, c).
template <class Exec, class CMatrix, class Matrix>
void transpose(const Exec& space, const CMatrix& in, const Matrix& out) {
  Kokkos::parallel_for(
      "fmattn::lm::transpose", Range2<Exec>(space, {0, 0}, {std::int64_t(in.extent(0)), std::int64_t(in.extent(1))}),
      KOKKOS_LAMBDA(const std::int64_t r, const std::int64_t c) { out(c, r) = in(r, c); });
}

// Cross-entropy of logits [T][V] against target(t): loss(t) = logsumexp − logit of the target,
// in double. With grad_scale > 0, dlogits = (softmax − one-hot) · grad_scale.
template <class Exec, class CMatrix, class Tokens, class Losses, class Matrix>
void cross_entropy(const Exec& space, const CMatrix& logits, const Tokens& target, const Losses& loss,
                   const Matrix& dlogits, double grad_scale) {
  const std::int64_t V = logits.extent(1);
  using S = typename Matrix::non_const_value_type;
  Kokkos::parallel_for(
      "fmattn::lm::cross_entropy", Range<Exec>(space, 0, logits.extent(0)), KOKKOS_LAMBDA(const std::int64_t t) {
        double mx = double(logits(t, 0));
        for (std::int64_t v = 1; v < V; ++v) mx = double(logits(t, v)) > mx ? double(logits(t, v)) : mx;
        double sum = 0;
        for (std::int64_t v = 0; v < V; ++v) sum += compat::exp(double(logits(t, v)) - mx);
        const double lse = mx + compat::log(sum);
        loss(t) = lse - double(logits(t, target(t)));
        if (grad_scale > 0)
          for (std::int64_t v = 0; v < V; ++v)
            dlogits(t, v) = S((compat::exp(double(logits(t, v)) - lse) - (v == target(t) ? 1.0 : 0.0)) * grad_scale);
      });
}

}  // namespace fmattn::detail::lm
