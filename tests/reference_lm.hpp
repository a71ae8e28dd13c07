// An independent float64 implementation of docs/language-model.md (the model) for the tests: the loss and logits of
// one window, plain loops, no Kokkos. Shares no code with the library; the FMA and local attention
// go through the brute-force ref::attention of reference_fma.hpp, exact attention is written out.
#pragma once

#include "reference_fma.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace ref_lm {

enum class Method { exact, fma, local };

struct Config {
  int layers = 1, width = 16, heads = 2, context = 32;
  Method method = Method::exact;
  int block_size = 4, rank = 2;  // fma / local
  bool learned = false;          // fma: learned downsampling (basis functions per block)
  bool positions = true;         // a learned position table P; false: positions none, x_0 = E alone
  bool count_weighting = true;
  double scale = 0;  // 0: 1/sqrt(d), d = width/heads
};

// Row-major arrays by name: "embedding" [256][W], "position" [T][W] (learned positions only),
// "block_NN/..." per block, "final_norm/gain" and "final_norm/bias" [W].
using Params = std::map<std::string, std::vector<double>>;

namespace detail {

inline std::string block_name(int b) { return std::string("block_") + (b < 10 ? "0" : "") + std::to_string(b) + "/"; }

inline const std::vector<double>& get(const Params& p, const std::string& name, std::size_t size) {
  const auto it = p.find(name);
  if (it == p.end()) throw std::invalid_argument("reference LM: missing parameter " + name);
  if (it->second.size() != size)
    throw std::invalid_argument("reference LM: parameter " + name + " has " + std::to_string(it->second.size()) +
                                " values, expected " + std::to_string(size));
  return it->second;
}

// y[t][:] = LayerNorm(x[t][:]) over the width, eps 1e-5, biased variance.
inline std::vector<double> layer_norm(const std::vector<double>& x, int T, int W, const std::vector<double>& gain,
                                      const std::vector<double>& bias) {
  std::vector<double> y(x.size());
  for (int t = 0; t < T; ++t) {
    double mean = 0, var = 0;
    for (int c = 0; c < W; ++c) mean += x[t * W + c];
    mean /= W;
    for (int c = 0; c < W; ++c) var += (x[t * W + c] - mean) * (x[t * W + c] - mean);
    var /= W;
    const double inv = 1 / std::sqrt(var + 1e-5);
    for (int c = 0; c < W; ++c) y[t * W + c] = (x[t * W + c] - mean) * inv * gain[c] + bias[c];
  }
  return y;
}

// y [T][O] = x [T][I] · w [I][O] + b [O].
inline std::vector<double> affine(const std::vector<double>& x, int T, int I, int O, const std::vector<double>& w,
                                  const std::vector<double>& b) {
  std::vector<double> y(std::size_t(T) * O);
  for (int t = 0; t < T; ++t)
    for (int o = 0; o < O; ++o) {
      double s = b[o];
      for (int i = 0; i < I; ++i) s += x[t * I + i] * w[std::size_t(i) * O + o];
      y[std::size_t(t) * O + o] = s;
    }
  return y;
}

inline double gelu(double u) {
  const double pi = 3.14159265358979323846;
  return 0.5 * u * (1 + std::tanh(std::sqrt(2 / pi) * (u + 0.044715 * u * u * u)));
}

// Causal softmax(q kᵀ·scale) v for one head, x [T][d].
inline std::vector<double> exact_attention(const std::vector<double>& q, const std::vector<double>& k,
                                           const std::vector<double>& v, int T, int d, double scale) {
  std::vector<double> out(std::size_t(T) * d, 0.0), s(T);
  for (int i = 0; i < T; ++i) {
    double M = -std::numeric_limits<double>::infinity();
    for (int j = 0; j <= i; ++j) {
      double dot = 0;
      for (int c = 0; c < d; ++c) dot += q[i * d + c] * k[j * d + c];
      s[j] = scale * dot;
      M = std::max(M, s[j]);
    }
    double den = 0;
    for (int j = 0; j <= i; ++j) {
      const double e = std::exp(s[j] - M);
      den += e;
      for (int c = 0; c < d; ++c) out[i * d + c] += e * v[j * d + c];
    }
    for (int c = 0; c < d; ++c) out[i * d + c] /= den;
  }
  return out;
}

// Sizes of the learned basis functions of one of K, V for a sequence of T (layout of ref::Weights).
inline void downsampling_sizes(int T, int m, int p, int d, std::size_t& weight, std::size_t& bias) {
  const int L = ref::levels(T, m);
  weight = 0;
  for (int l = 1; l <= L; ++l) weight += std::size_t(p) * (std::size_t(m) << (l - 1)) * d;
  bias = std::size_t(L) * p * d;
}

}  // namespace detail

// logits [T][256] row-major of the forward of docs/language-model.md on window[0..T-1].
inline std::vector<double> logits(const Config& c, const Params& p, const std::vector<unsigned char>& window) {
  using namespace detail;
  const int W = c.width, T = c.context, H = c.heads, F = 4 * W;
  if (c.layers < 0 || W < 1 || H < 1 || W % H != 0 || T < 1)
    throw std::invalid_argument("reference LM: bad layers/width/heads/context");
  if (window.size() < std::size_t(T)) throw std::invalid_argument("reference LM: window shorter than the context");
  auto pow2 = [](int x) { return x >= 1 && (x & (x - 1)) == 0; };
  if (c.method != Method::exact && !(pow2(c.block_size) && pow2(c.rank) && c.rank <= c.block_size))
    throw std::invalid_argument("reference LM: block_size and rank must be powers of two with rank <= block_size");
  const int d = W / H;
  const double scale = c.scale != 0 ? c.scale : 1 / std::sqrt(double(d));
  const std::size_t WW = std::size_t(W) * W;

  const auto& E = get(p, "embedding", 256 * std::size_t(W));
  if (!c.positions && p.count("position"))
    throw std::invalid_argument("reference LM: a model without positions has no parameter 'position'");
  std::vector<double> x(std::size_t(T) * W);
  for (int t = 0; t < T; ++t)
    for (int ch = 0; ch < W; ++ch) x[t * W + ch] = E[window[t] * std::size_t(W) + ch];
  if (c.positions) {
    const auto& P = get(p, "position", std::size_t(T) * W);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += P[i];
  }

  for (int b = 0; b < c.layers; ++b) {
    const std::string pre = block_name(b);
    const auto a = layer_norm(x, T, W, get(p, pre + "ln1_gain", W), get(p, pre + "ln1_bias", W));
    const auto q = affine(a, T, W, W, get(p, pre + "wq", WW), get(p, pre + "bq", W));
    const auto k = affine(a, T, W, W, get(p, pre + "wk", WW), get(p, pre + "bk", W));
    const auto v = affine(a, T, W, W, get(p, pre + "wv", WW), get(p, pre + "bv", W));

    ref::Weights basis;
    const bool learned = c.method == Method::fma && c.learned;
    if (learned) {
      std::size_t ws = 0, bs = 0;
      downsampling_sizes(T, c.block_size, c.rank, d, ws, bs);
      // With no coarse level (T ≤ 2·block_size) there are no basis functions; absent is accepted.
      const std::string ds = pre + "downsampling/";
      const bool none = ws == 0 && p.find(ds + "k/weight") == p.end() && p.find(ds + "k/bias") == p.end() &&
                        p.find(ds + "v/weight") == p.end() && p.find(ds + "v/bias") == p.end();
      if (!none) {
        basis.kw = get(p, ds + "k/weight", ws);
        basis.kb = get(p, ds + "k/bias", bs);
        basis.vw = get(p, ds + "v/weight", ws);
        basis.vb = get(p, ds + "v/bias", bs);
      }
    }

    std::vector<double> y(std::size_t(T) * W);
    std::vector<double> qh(std::size_t(T) * d), kh(qh.size()), vh(qh.size());
    for (int h = 0; h < H; ++h) {
      for (int t = 0; t < T; ++t)
        for (int e = 0; e < d; ++e) {
          qh[t * d + e] = q[t * W + h * d + e];
          kh[t * d + e] = k[t * W + h * d + e];
          vh[t * d + e] = v[t * W + h * d + e];
        }
      std::vector<double> oh;
      if (c.method == Method::exact) {
        oh = exact_attention(qh, kh, vh, T, d, scale);
      } else {
        ref::Params A;
        A.n = T;
        A.m = c.block_size;
        A.p = c.rank;
        A.d = d;
        A.causal = true;
        A.exact = false;
        A.local = c.method == Method::local;
        A.learned = learned;
        A.count_weighting = c.count_weighting;
        A.scale = scale;
        oh = ref::attention<double>(A, qh, kh, vh, learned ? &basis : nullptr);
      }
      for (int t = 0; t < T; ++t)
        for (int e = 0; e < d; ++e) y[t * W + h * d + e] = oh[t * d + e];
    }

    const auto o = affine(y, T, W, W, get(p, pre + "wo", WW), get(p, pre + "bo", W));
    std::vector<double> hres(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) hres[i] = x[i] + o[i];
    const auto a2 = layer_norm(hres, T, W, get(p, pre + "ln2_gain", W), get(p, pre + "ln2_bias", W));
    auto u = affine(a2, T, W, F, get(p, pre + "w1", std::size_t(W) * F), get(p, pre + "b1", F));
    for (auto& e : u) e = gelu(e);
    const auto m = affine(u, T, F, W, get(p, pre + "w2", std::size_t(F) * W), get(p, pre + "b2", W));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = hres[i] + m[i];
  }

  const auto f = layer_norm(x, T, W, get(p, "final_norm/gain", W), get(p, "final_norm/bias", W));
  std::vector<double> out(std::size_t(T) * 256);
  for (int t = 0; t < T; ++t)
    for (int vb = 0; vb < 256; ++vb) {
      double s = 0;
      for (int ch = 0; ch < W; ++ch) s += f[t * W + ch] * E[vb * std::size_t(W) + ch];
      out[t * 256 + vb] = s;
    }
  return out;
}

// Mean over t = 0..T-1 of −ln softmax(logits[t])[window[t+1]]; window holds T+1 bytes.
inline double loss(const Config& c, const Params& p, const std::vector<unsigned char>& window) {
  const int T = c.context;
  if (T < 1 || window.size() != std::size_t(T) + 1)
    throw std::invalid_argument("reference LM: the window must hold context + 1 bytes");
  const auto z = logits(c, p, window);
  double total = 0;
  for (int t = 0; t < T; ++t) {
    const double* r = &z[std::size_t(t) * 256];
    const double M = *std::max_element(r, r + 256);
    double s = 0;
    for (int vb = 0; vb < 256; ++vb) s += std::exp(r[vb] - M);
    total += M + std::log(s) - r[window[t + 1]];
  }
  return total / T;
}

}  // namespace ref_lm
