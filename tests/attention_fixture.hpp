// Helpers for attention tests: random heads, Views from host vectors, running the kernels and
// comparing against the brute-force reference.
#pragma once

#include <fmattn/core/attention.hpp>
#include <fmattn/core/weights.hpp>
#include "reference_fma.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace testing_fma {

using Heads = std::vector<std::vector<double>>;  // [head][n*d]

// The execution space the kernel tests run on: the default one, or the backend this copy of
// the test executable is built for (tests/CMakeLists.txt builds the kernel tests once per
// backend of the Kokkos build, as FMATTN_TEST_EXEC_SPACE).
#ifndef FMATTN_TEST_EXEC_SPACE
#define FMATTN_TEST_EXEC_SPACE Kokkos::DefaultExecutionSpace
#endif
using TestSpace = FMATTN_TEST_EXEC_SPACE;
template <class S>
using TestAttention = fmattn::Attention<S, TestSpace>;

// A fresh seed per process unless FMATTN_TEST_SEED pins one; it is printed with any failure.
inline std::uint64_t test_seed() {
  static const std::uint64_t seed = [] {
    if (const char* s = std::getenv("FMATTN_TEST_SEED")) return std::uint64_t(std::strtoull(s, nullptr, 10));
    return std::uint64_t(std::random_device{}()) << 32 | std::random_device{}();
  }();
  return seed;
}

inline Heads random_heads(std::mt19937_64& rng, int heads, std::int64_t n, int d, double sd = 1.0) {
  std::normal_distribution<double> g(0.0, sd);
  Heads h(heads, std::vector<double>(n * d));
  for (auto& x : h)
    for (auto& y : x) y = g(rng);
  return h;
}

template <class S>
typename TestAttention<S>::Tensor to_view(const Heads& h, std::int64_t n, int d) {
  typename TestAttention<S>::Tensor t("t", h.size(), n, d);
  auto host = Kokkos::create_mirror_view(t);
  for (std::size_t a = 0; a < h.size(); ++a)
    for (std::int64_t i = 0; i < n * d; ++i) host(a, i / d, i % d) = S(h[a][i]);
  Kokkos::deep_copy(t, host);
  return t;
}

template <class S>
Heads from_view(const typename TestAttention<S>::Tensor& t) {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), t);
  const std::int64_t n = t.extent(1), d = t.extent(2);
  Heads h(t.extent(0), std::vector<double>(n * d));
  for (std::size_t a = 0; a < h.size(); ++a)
    for (std::int64_t i = 0; i < n * d; ++i) h[a][i] = double(host(a, i / d, i % d));
  return h;
}

inline fmattn::AttentionOptions options_of(const ref::Params& P) {
  fmattn::AttentionOptions o;
  o.method = P.exact ? fmattn::Method::exact : P.local ? fmattn::Method::local : fmattn::Method::fma;
  o.downsampling = P.learned ? fmattn::Downsampling::learned : fmattn::Downsampling::average;
  o.count_weighting = P.count_weighting;
  o.boundary = P.zero_sink ? fmattn::Boundary::zero_sink : fmattn::Boundary::masked;
  o.scale = P.scale;
  o.coarse_queries = P.coarse_queries;
  return o;
}

template <class S>
Heads run_kernel(const ref::Params& P, const Heads& q, const Heads& k, const Heads& v,
                 const fmattn::DownsamplingWeights* w = nullptr) {
  const auto g =
      fmattn::make_geometry(P.n, P.m, P.p, P.causal ? fmattn::Variant::causal : fmattn::Variant::bidirectional);
  TestAttention<S> att(g, options_of(P), P.d, std::int64_t(q.size()));
  if (w) att.set_weights(*w);
  typename TestAttention<S>::Tensor out("out", q.size(), P.n, P.d);
  att.forward(to_view<S>(q, P.n, P.d), to_view<S>(k, P.n, P.d), to_view<S>(v, P.n, P.d), out);
  return from_view<S>(out);
}

template <class T>
Heads run_reference(const ref::Params& P, const Heads& q, const Heads& k, const Heads& v,
                    const ref::Weights* w = nullptr) {
  Heads out;
  for (std::size_t a = 0; a < q.size(); ++a) {
    std::vector<T> qa(q[a].begin(), q[a].end()), ka(k[a].begin(), k[a].end()), va(v[a].begin(), v[a].end());
    const auto o = ref::attention<T>(P, qa, ka, va, w);
    out.emplace_back(o.begin(), o.end());
  }
  return out;
}

// Largest per-head relative Frobenius error of `got` against `want`.
inline double rel_error(const Heads& got, const Heads& want) {
  double worst = 0;
  for (std::size_t a = 0; a < got.size(); ++a) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < got[a].size(); ++i) {
      num += (got[a][i] - want[a][i]) * (got[a][i] - want[a][i]);
      den += want[a][i] * want[a][i];
    }
    worst = std::max(worst, std::sqrt(num / std::max(den, 1e-300)));
  }
  return worst;
}

// Random learned weights (not the average operator) in both layouts.
inline void random_weights(std::mt19937_64& rng, const fmattn::Geometry& g, int d, fmattn::DownsamplingWeights& w,
                           ref::Weights& r) {
  w = fmattn::DownsamplingWeights::average(g, d);
  std::normal_distribution<double> noise(0.0, 1.0);
  for (auto* vec : {&w.q_weight, &w.k_weight, &w.v_weight})
    for (auto& x : *vec) x = x * (1.0 + 0.3 * noise(rng)) + 0.01 * noise(rng);
  for (auto* vec : {&w.q_bias, &w.k_bias, &w.v_bias})
    for (auto& x : *vec) x = 0.1 * noise(rng);
  r = ref::Weights{w.k_weight, w.k_bias, w.v_weight, w.v_bias, w.q_weight, w.q_bias};
}

struct Shape {
  std::int64_t n;
  int m, p, d;
};

// The parameters of most tests in one expression: a shape, a variant and a score scale, every
// other option at its default (set the few others on the result).
inline ref::Params problem(const Shape& s, bool causal = true, double scale = 1.0) {
  ref::Params P;
  P.n = s.n;
  P.m = s.m;
  P.p = s.p;
  P.d = s.d;
  P.causal = causal;
  P.scale = scale;
  return P;
}

// Problem parameters: the shape s with the options of P.
inline ref::Params with_shape(ref::Params P, const Shape& s) {
  P.n = s.n;
  P.m = s.m;
  P.p = s.p;
  P.d = s.d;
  return P;
}

// P with a variant, a downsampling and count weighting on or off.
inline ref::Params with_options(ref::Params P, bool causal, bool learned, bool count_weighting) {
  P.causal = causal;
  P.learned = learned;
  P.count_weighting = count_weighting;
  return P;
}

// The float64 kernel against the float64 reference on fresh random inputs (two heads, random
// learned weights when P.learned) for every shape; P supplies everything but the shape.
inline void expect_kernel_matches_reference(ref::Params P, const std::vector<Shape>& shapes) {
  std::mt19937_64 rng(test_seed());
  for (const Shape& s : shapes) {
    P = with_shape(P, s);
    SCOPED_TRACE("seed " + std::to_string(test_seed()) + " n " + std::to_string(s.n) + " m " + std::to_string(s.m) +
                 " p " + std::to_string(s.p) + " d " + std::to_string(s.d));
    const auto q = random_heads(rng, 2, P.n, P.d), k = random_heads(rng, 2, P.n, P.d),
               v = random_heads(rng, 2, P.n, P.d);
    fmattn::DownsamplingWeights w;
    ref::Weights rw;
    const auto g =
        fmattn::make_geometry(P.n, P.m, P.p, P.causal ? fmattn::Variant::causal : fmattn::Variant::bidirectional);
    if (P.learned) random_weights(rng, g, P.d, w, rw);
    const auto got = run_kernel<double>(P, q, k, v, P.learned ? &w : nullptr);
    EXPECT_LT(rel_error(got, run_reference<double>(P, q, k, v, P.learned ? &rw : nullptr)), 1e-12);
  }
}

}  // namespace testing_fma
