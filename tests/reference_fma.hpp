// An independent brute-force implementation of docs/fma.md §1–5 for the tests: plain loops over
// every query and every slot, templated on the arithmetic type so that a float32 run of the
// same function can calibrate the tolerance of the fast kernels. Shares no code with kernels/.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace ref {

struct Params {
  std::int64_t n = 1;
  int m = 1, p = 1, d = 1;
  bool causal = true;
  bool exact = false;
  bool local = false;  // FMA's near field alone (spec §3 near-field blocks, no coarse levels)
  bool learned = false;
  bool count_weighting = true;
  bool zero_sink = false;
  bool coarse_queries = false;  // linear variant (spec §8)
  double scale = 1;
};

// Learned weights flattened level after level: weight [p][w_l][d], bias [L][p][d].
struct Weights {
  std::vector<double> kw, kb, vw, vb, qw, qb;
};

inline std::int64_t padded(std::int64_t n, int m) {
  if (n <= m) return m;
  std::int64_t N = m;
  while (N < n) N *= 2;
  return N;
}

inline int levels(std::int64_t n, int m) {
  int k = 0;
  while ((std::int64_t(m) << k) < padded(n, m)) ++k;
  return std::max(0, k - 1);
}

template <class T>
struct Slot {
  T sigma, alpha;
  std::vector<T> u;
};

// out[i][c] for one head; x is [n][d] row-major.
template <class T>
std::vector<T> attention(const Params& P, const std::vector<T>& q, const std::vector<T>& k, const std::vector<T>& v,
                         const Weights* w = nullptr) {
  const std::int64_t n = P.n, N = padded(n, P.m);
  const int d = P.d, L = (P.exact || P.local) ? 0 : levels(n, P.m);
  auto dot = [&](std::int64_t i, const T* kr) {
    T s = 0;
    for (int c = 0; c < d; ++c) s += q[i * d + c] * kr[c];
    return T(P.scale) * s;
  };
  // Coarse key/value r of cell g at level l, with its count (0 = absent).
  std::int64_t woff = 0;
  std::vector<std::int64_t> level_woff(L + 2, 0);
  for (int l = 1; l <= L; ++l) {
    level_woff[l] = woff;
    woff += std::int64_t(P.p) * (std::int64_t(P.m) << (l - 1)) * d;
  }
  // Coarse token r of cell g at level l of tensor x (weights W, b when learned), with its count
  // (0 = absent).
  auto coarse = [&](const std::vector<T>& x, const std::vector<double>* W, const std::vector<double>* bias, int l,
                    std::int64_t g, int r, std::vector<T>& xc) -> double {
    const std::int64_t wl = std::int64_t(P.m) << (l - 1);
    xc.assign(d, T(0));
    if (!P.learned) {
      const std::int64_t b = g * wl + r * (wl / P.p), e = std::min(b + wl / P.p, n);
      if (e <= b) return 0;
      for (std::int64_t j = b; j < e; ++j)
        for (int c = 0; c < d; ++c) xc[c] += x[j * d + c];
      for (int c = 0; c < d; ++c) xc[c] /= T(e - b);
      return double(e - b);
    }
    const std::int64_t b = g * wl, e = std::min(b + wl, n);
    if (e <= b) return 0;
    for (int c = 0; c < d; ++c) xc[c] = T((*bias)[(std::int64_t(l - 1) * P.p + r) * d + c]);
    for (std::int64_t t = 0; t < e - b; ++t)
      for (int c = 0; c < d; ++c) xc[c] += T((*W)[level_woff[l] + (r * wl + t) * d + c]) * x[(b + t) * d + c];
    return double(e - b) / P.p;
  };

  std::vector<T> out(n * d, T(0));
  std::vector<Slot<T>> slots;
  std::vector<T> kc, vc, qc;
  const std::vector<double>*kw = w ? &w->kw : nullptr, *kb = w ? &w->kb : nullptr, *vw = w ? &w->vw : nullptr,
        *vb = w ? &w->vb : nullptr, *qw = w ? &w->qw : nullptr, *qb = w ? &w->qb : nullptr;
  for (std::int64_t i = 0; i < n; ++i) {
    slots.clear();
    const std::int64_t B = i / P.m;
    auto fine = [&](std::int64_t j) {
      if (j < 0) {
        if (P.zero_sink) slots.push_back({T(0), T(1), std::vector<T>(d, T(0))});
        return;
      }
      if (j >= n || (P.causal && j > i)) return;
      slots.push_back({dot(i, &k[j * d]), T(1), std::vector<T>(v.begin() + j * d, v.begin() + (j + 1) * d)});
    };
    if (P.exact) {
      for (std::int64_t j = 0; j < n; ++j) fine(j);
    } else {
      const std::int64_t last_block = P.causal ? B : B + 1;
      for (std::int64_t bb = B - 1; bb <= last_block; ++bb)
        for (std::int64_t j = bb * P.m; j < (bb + 1) * P.m; ++j) fine(j);
    }
    for (int l = 1; l <= L; ++l) {
      const std::int64_t wl = std::int64_t(P.m) << (l - 1), b = i / wl, cells = N / wl;
      // The query of this level: q_i, or (linear variant) the coarse query of i's sub-segment.
      std::vector<T> qi(q.begin() + i * d, q.begin() + (i + 1) * d);
      if (P.coarse_queries) {
        coarse(q, qw, qb, l, b, int((i % wl) / (wl / P.p)), qc);
        qi = qc;
      }
      std::vector<std::int64_t> list;
      if (P.causal)
        list = (b % 2 == 0) ? std::vector<std::int64_t>{b - 2} : std::vector<std::int64_t>{b - 3, b - 2};
      else
        list = (b % 2 == 0) ? std::vector<std::int64_t>{b - 2, b + 2, b + 3}
                            : std::vector<std::int64_t>{b - 3, b - 2, b + 2};
      for (std::int64_t g : list) {
        if (g < 0) {
          if (P.zero_sink)
            for (int r = 0; r < P.p; ++r)
              slots.push_back({T(0), T(P.count_weighting ? double(wl) / P.p : 1.0), std::vector<T>(d, T(0))});
          continue;
        }
        if (g >= cells) continue;
        for (int r = 0; r < P.p; ++r) {
          const double cnt = coarse(k, kw, kb, l, g, r, kc);
          coarse(v, vw, vb, l, g, r, vc);
          if (cnt == 0) continue;
          T s = 0;
          for (int c = 0; c < d; ++c) s += qi[c] * kc[c];
          slots.push_back({T(P.scale) * s, T(P.count_weighting ? cnt : 1.0), vc});
        }
      }
    }
    T M = slots[0].sigma;
    for (const auto& s : slots) M = std::max(M, s.sigma);
    T den = 0;
    std::vector<T> num(d, T(0));
    for (const auto& s : slots) {
      const T e = s.alpha * std::exp(s.sigma - M);
      den += e;
      for (int c = 0; c < d; ++c) num[c] += e * s.u[c];
    }
    for (int c = 0; c < d; ++c) out[i * d + c] = num[c] / den;
  }
  return out;
}

}  // namespace ref
