// Synthetic Q, K, V generated on the device from a counter-based hash: every value depends only
// on (seed, tensor, batch·head, global position, channel), so results are identical for any
// thread count, backend or (later) MPI decomposition.
#pragma once

#include "kokkos_compat.hpp"
#include "simd.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn {

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

KOKKOS_INLINE_FUNCTION double gaussian(std::uint64_t h) {
  const double u1 = unit_uniform(h), u2 = unit_uniform(mix64(h));
  return compat::sqrt(-2.0 * compat::log(u1)) * compat::cos(6.283185307179586 * u2);
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

  KOKKOS_INLINE_FUNCTION double operator()(std::int64_t bh, std::int64_t i, std::int64_t c) const {
    if (pattern == SyntheticPattern::gaussian) return amplitude * gaussian(hash_key(seed, tensor, bh, i, c));
    if (pattern == SyntheticPattern::piecewise_constant)
      return amplitude * gaussian(hash_key(seed, tensor, bh, i / span, c));
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
    using Policy = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>, Kokkos::IndexType<std::int64_t>>;
    Kokkos::parallel_for(
        "fmattn::synthetic::fill", Policy(space, {0, 0, 0}, {H, n, d}),
        KOKKOS_LAMBDA(const std::int64_t h, const std::int64_t i, const std::int64_t c) {
          x(h, i, c) = Scalar(src(head0 + h, row0 + i, c));
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

}  // namespace fmattn
