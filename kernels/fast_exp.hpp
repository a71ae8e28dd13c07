// exp(x) for x <= 0 (softmax weights after subtracting the running max) in plain arithmetic
// that compilers vectorize: Cody–Waite range reduction, a Taylor polynomial and the power of two
// assembled from bits. Relative error about 2e-9 in float and 1e-17 in double, below the
// rounding of the results; library exp calls do not vectorize without -ffast-math.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <cstring>

namespace fmattn {

KOKKOS_INLINE_FUNCTION float exp_nonpositive(float x) {
  // Clamped to [-87, 0]: exp(-87) is near the smallest normal float, and callers may pass
  // positive values for slots they discard afterwards.
  x = x < -87.0f ? -87.0f : x > 0.0f ? 0.0f : x;
  const float k = x * 1.44269504088896341f;
  const float n = float(int(k - 0.5f));  // round to nearest for k <= 0
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const std::int32_t bits = (int(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

KOKKOS_INLINE_FUNCTION double exp_nonpositive(double x) {
  x = x < -708.0 ? -708.0 : x > 0.0 ? 0.0 : x;
  const double k = x * 1.4426950408889634074;
  const double n = double(std::int64_t(k - 0.5));
  const double r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const std::int64_t bits = (std::int64_t(n) + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace fmattn
