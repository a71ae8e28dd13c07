// Synthetic Q, K, V generated on the device from counter-based hashes: every value depends only
// on (seed, tensor, batch·head, global position, channel), so results are identical for any
// thread count, MPI decomposition or offset.
#pragma once

#include "kernels/kokkos_compat.hpp"
#include "kernels/simd.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <cstring>

namespace fmattn::detail {

enum class SyntheticPattern : int { gaussian = 0, smooth = 1, piecewise_constant = 2 };

// splitmix64 finaliser: a bijective 64-bit mixer with good avalanche.
KOKKOS_INLINE_FUNCTION std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

KOKKOS_INLINE_FUNCTION std::uint64_t hash_key(std::uint64_t seed, std::uint64_t a, std::uint64_t b, std::uint64_t c,
                                              std::uint64_t e) {
  return mix64(mix64(mix64(mix64(seed ^ mix64(a)) ^ b) ^ c) ^ e);
}

// Uniform in (0, 1], never 0, so that log() below stays finite.
KOKKOS_INLINE_FUNCTION double unit_uniform(std::uint64_t h) { return double((h >> 11) + 1) * 0x1.0p-53; }

// A standard normal value (Box-Muller in double, libm): for the few random parameters of the
// `smooth` pattern, not for bulk data.
KOKKOS_INLINE_FUNCTION double gaussian(std::uint64_t h) {
  const double u1 = unit_uniform(h), u2 = unit_uniform(mix64(h));
  return compat::sqrt(-2.0 * compat::log(u1)) * compat::cos(6.283185307179586 * u2);
}

// Bulk normal values: one 64-bit key per row (position) and, per pair of channels, two 32-bit
// hashes turned into two normal values by Box-Muller in float with polynomial log and sine.
// Everything is 32-bit integer or float arithmetic without branches or libm calls, so the loop
// over a row vectorizes (AVX2 has no 64-bit multiply); about 2e-7 relative accuracy, far below
// what synthetic data needs, and the same operations wherever a value is computed.

// lowbias32 (C. Wellons): a 32-bit avalanche hash.
KOKKOS_INLINE_FUNCTION std::uint32_t hash32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  return x ^ (x >> 16);
}

// ln(u) for u in [2^-24, 1]: exponent from the bits, mantissa reduced to [sqrt(1/2), sqrt(2)),
// then 2 atanh(t) with t = (m - 1) / (m + 1), |t| <= 0.172, to t^9.
KOKKOS_INLINE_FUNCTION float log_unit(float u) {
  std::uint32_t bits;
  memcpy(&bits, &u, sizeof bits);
  float e = float(int(bits >> 23) - 127);
  bits = (bits & 0x007fffffu) | 0x3f800000u;
  float m;
  memcpy(&m, &bits, sizeof m);
  const bool high = m > 1.41421356f;
  m = high ? 0.5f * m : m;
  e = high ? e + 1.0f : e;
  const float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
  const float series = 1.0f + t2 * (1.0f / 3 + t2 * (1.0f / 5 + t2 * (1.0f / 7 + t2 * (1.0f / 9))));
  return e * 0.693147181f + 2.0f * t * series;
}

// z0, z1: two independent standard normal values, pair j of the row with key `row`.
KOKKOS_INLINE_FUNCTION void normal_pair(std::uint64_t row, std::uint32_t j, float& z0, float& z1) {
  const std::uint32_t h1 = hash32(std::uint32_t(row) + 0x9e3779b9u * (2 * j + 1));
  const std::uint32_t h2 = hash32(std::uint32_t(row >> 32) ^ hash32(0x85ebca6bu * (2 * j + 2)));
  const float u1 = float((h1 >> 8) + 1) * 0x1.0p-24f;                  // (0, 1]
  const float a = 3.14159265f * (float(h2 >> 8) * 0x1.0p-24f - 0.5f);  // [-pi/2, pi/2)
  // sin and cos of a by Taylor series (errors below 6e-8 on this range), then of 2a.
  const float a2 = a * a;
  const float s =
      a * (1.0f + a2 * (-1.0f / 6 + a2 * (1.0f / 120 + a2 * (-1.0f / 5040 + a2 * (1.0f / 362880 - a2 / 39916800)))));
  const float c =
      1.0f + a2 * (-0.5f + a2 * (1.0f / 24 +
                                 a2 * (-1.0f / 720 + a2 * (1.0f / 40320 + a2 * (-1.0f / 3628800 + a2 / 479001600)))));
  const float r = compat::sqrt(-2.0f * log_unit(u1));
  z0 = r * (1.0f - 2.0f * s * s);  // r cos 2a, 2a uniform on [-pi, pi)
  z1 = r * (2.0f * s * c);         // r sin 2a
}

// Normal value of channel c of the row with key `row` (channels 2j and 2j + 1 share pair j).
KOKKOS_INLINE_FUNCTION float normal_at(std::uint64_t row, std::int64_t c) {
  float z0, z1;
  normal_pair(row, std::uint32_t(c >> 1), z0, z1);
  return (c & 1) ? z1 : z0;
}

// Parameters of harmonic f of the `smooth` pattern for one (tensor, head, channel): random
// amplitude, frequency (0.5..4 periods over the sequence) and phase; unit total variance.
struct Harmonic {
  double amplitude, omega, phase;
};

KOKKOS_INLINE_FUNCTION Harmonic harmonic(std::uint64_t seed, std::uint64_t tensor, std::int64_t bh, std::int64_t c,
                                         std::uint64_t f, std::int64_t length) {
  const std::uint64_t h = hash_key(seed, tensor, bh, std::uint64_t(c) | (f << 32), 0x5eedull);
  const double periods = 0.5 + 3.5 * unit_uniform(mix64(h ^ 1));
  return {gaussian(h) * 0.7071067811865476, 6.283185307179586 * periods / double(length),
          6.283185307179586 * unit_uniform(mix64(h ^ 2))};
}

inline constexpr int smooth_harmonics = 4;

// One synthetic tensor: its value at (global batch·head, global position, channel).
struct SyntheticSource {
  SyntheticPattern pattern = SyntheticPattern::gaussian;
  std::uint64_t seed = 0, tensor = 0;
  std::int64_t length = 1;  // global sequence length (sets the frequencies of `smooth`)
  std::int64_t span = 1;    // piecewise_constant span
  double amplitude = 1;

  // Key of the normal values of position i (gaussian) or of its span (piecewise_constant).
  KOKKOS_INLINE_FUNCTION std::uint64_t row_key(std::int64_t bh, std::int64_t i) const {
    return hash_key(seed, tensor, std::uint64_t(bh),
                    std::uint64_t(pattern == SyntheticPattern::gaussian ? i : i / span), 0x9a55ull);
  }

  KOKKOS_INLINE_FUNCTION double operator()(std::int64_t bh, std::int64_t i, std::int64_t c) const {
    if (pattern != SyntheticPattern::smooth) return double(float(amplitude) * normal_at(row_key(bh, i), c));
    double value = 0;
    for (int f = 0; f < smooth_harmonics; ++f) {
      const Harmonic w = harmonic(seed, tensor, bh, c, f, length);
      value += w.amplitude * compat::sin(w.omega * double(i) + w.phase);
    }
    return amplitude * value;
  }
};

// x(h, i, c) = src(head0 + h, row0 + i, c). `smooth` is evaluated along runs of positions by
// rotating (sin, cos) pairs, a few multiplies per value instead of four sines; each run starts
// from exact values, so the result does not depend on how the work is split.
template <class ExecSpace, class Scalar>
void fill_synthetic(const ExecSpace& space,
                    Kokkos::View<Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> x,
                    const SyntheticSource& src, std::int64_t head0, std::int64_t row0) {
  const std::int64_t H = x.extent(0), n = x.extent(1), d = x.extent(2);
  if (src.pattern != SyntheticPattern::smooth) {
    // A work item is one row: one 64-bit key, then pairs of channels in a vector loop.
    const std::int64_t pairs = d / 2;
    const float amplitude = float(src.amplitude);
    using Policy = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>, Kokkos::IndexType<std::int64_t>>;
    Kokkos::parallel_for(
        "fmattn::synthetic::normal", Policy(space, {0, 0}, {H, n}),
        KOKKOS_LAMBDA(const std::int64_t h, const std::int64_t i) {
          const std::uint64_t key = src.row_key(head0 + h, row0 + i);
          Scalar* row = &x(h, i, 0);
          FMATTN_SIMD
          for (std::int64_t j = 0; j < pairs; ++j) {
            float z0, z1;
            normal_pair(key, std::uint32_t(j), z0, z1);
            row[2 * j] = Scalar(amplitude * z0);
            row[2 * j + 1] = Scalar(amplitude * z1);
          }
          if (d & 1) row[d - 1] = Scalar(amplitude * normal_at(key, d - 1));
        });
    return;
  }
  // Runs of `run` positions aligned to global multiples of `run` start from sin/cos of their
  // first position and rotate from there: a value depends on its global position alone, not
  // on where this fill (a rank's shard) begins. A work item is one run of CB channels, rotated
  // together so that the inner loop vectorizes across channels and stores whole row segments.
  constexpr std::int64_t run = 256;
  constexpr int CB = 16;
  const std::int64_t first_run = row0 / run, runs = (row0 + n + run - 1) / run - first_run;
  const std::int64_t blocks = (d + CB - 1) / CB;
  using Policy = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>, Kokkos::IndexType<std::int64_t>>;
  Kokkos::parallel_for(
      "fmattn::synthetic::smooth", Policy(space, {0, 0, 0}, {H, runs, blocks}),
      KOKKOS_LAMBDA(const std::int64_t h, const std::int64_t r, const std::int64_t b) {
        double s[smooth_harmonics][CB], co[smooth_harmonics][CB], ds[smooth_harmonics][CB], dc[smooth_harmonics][CB],
            a[smooth_harmonics][CB];
        const std::int64_t g0 = (first_run + r) * run;  // global start of the run
        const std::int64_t i0 = g0 > row0 ? g0 - row0 : 0, i1 = g0 + run - row0 < n ? g0 + run - row0 : n;
        const std::int64_t skip = row0 + i0 - g0;  // positions of the run before this fill
        const std::int64_t c0 = b * CB;
        const int nc = int(d - c0 < CB ? d - c0 : CB);
        for (int f = 0; f < smooth_harmonics; ++f)
          for (int cc = 0; cc < CB; ++cc) {
            // Channels past d rotate harmless zeros (fixed trip counts vectorize).
            const Harmonic w =
                cc < nc ? harmonic(src.seed, src.tensor, head0 + h, c0 + cc, f, src.length) : Harmonic{0.0, 0.0, 0.0};
            const double theta = w.omega * double(g0) + w.phase;
            s[f][cc] = compat::sin(theta);
            co[f][cc] = compat::cos(theta);
            ds[f][cc] = compat::sin(w.omega);
            dc[f][cc] = compat::cos(w.omega);
            a[f][cc] = w.amplitude * src.amplitude;
          }
        for (std::int64_t i = i0 - skip; i < i1; ++i) {
          double value[CB];
          FMATTN_SIMD
          for (int cc = 0; cc < CB; ++cc) {
            value[cc] = 0;
            for (int f = 0; f < smooth_harmonics; ++f) {
              value[cc] += a[f][cc] * s[f][cc];
              const double sn = s[f][cc] * dc[f][cc] + co[f][cc] * ds[f][cc];
              co[f][cc] = co[f][cc] * dc[f][cc] - s[f][cc] * ds[f][cc];
              s[f][cc] = sn;
            }
          }
          if (i >= i0)
            for (int cc = 0; cc < nc; ++cc) x(h, i, c0 + cc) = Scalar(value[cc]);
        }
      });
}

}  // namespace fmattn::detail
