// exp(x) for x <= 0 (softmax weights after subtracting the running max) in plain arithmetic
// that compilers vectorize: Cody–Waite range reduction, a Taylor polynomial and the power of two
// assembled from bits. Relative error about 2e-9 in float and 1e-17 in double, below the
// rounding of the results; library exp calls do not vectorize without -ffast-math.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <cstring>

namespace fmattn::detail {

// Bit reinterpretation without taking addresses (a memcpy through a local defeats vectorization
// of simd loops).
template <class To, class From>
KOKKOS_INLINE_FUNCTION To bit_cast(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  To to;
  memcpy(&to, &from, sizeof(To));
  return to;
#else
  return __builtin_bit_cast(To, from);
#endif
}

KOKKOS_INLINE_FUNCTION float exp_nonpositive(float x) {
  // Clamped to [-87, 0]: exp(-87) is near the smallest normal float, and callers may pass
  // positive values for slots they discard afterwards.
  x = x < -87.0f ? -87.0f : x > 0.0f ? 0.0f : x;
  // Adding 1.5·2^23 rounds x·log2(e) to the nearest integer n, which lands in the low mantissa
  // bits: no float-to-int conversion (that would not vectorize inside simd loops).
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const std::int32_t n_bits = bit_cast<std::int32_t>(shifted) - 0x4B400000;
  const float n = shifted - 12582912.0f;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // Shifted as unsigned: a NaN input (a diverged model) gives a NaN, not undefined behaviour.
  return p * bit_cast<float>(std::uint32_t(n_bits + 127) << 23);
}

KOKKOS_INLINE_FUNCTION double exp_nonpositive(double x) {
  x = x < -708.0 ? -708.0 : x > 0.0 ? 0.0 : x;
  const double shifted = x * 1.4426950408889634074 + 6755399441055744.0;  // 1.5·2^52
  const std::int64_t n_bits = bit_cast<std::int64_t>(shifted) - 0x4338000000000000LL;
  const double n = shifted - 6755399441055744.0;
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
  return p * bit_cast<double>(std::uint64_t(n_bits + 1023) << 52);
}

}  // namespace fmattn::detail
