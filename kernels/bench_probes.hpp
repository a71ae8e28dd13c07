// The benchmarks' own device work (bench/fmattn_bench.cpp): inputs whose values do not matter,
// and a sum that measures how fast the execution space reads memory.
#pragma once

#include "kernels/simd.hpp"
#include "kernels/synthetic.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

// Uniform values of unit variance in every element of x, from the element index and `stream`.
template <class ExecSpace, class View>
void fill_unit_variance(const ExecSpace& space, const View& x, std::uint64_t stream) {
  using Scalar = typename View::non_const_value_type;
  Scalar* data = x.data();
  Kokkos::parallel_for(
      "fmattn::bench::fill", Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(space, 0, x.span()),
      KOKKOS_LAMBDA(const std::int64_t i) {
        data[i] = Scalar(1.7320508 * (2.0 * unit_uniform(mix64(std::uint64_t(i) * 3 + stream)) - 1.0));
      });
}

// The sum of x, read in blocks of `block` values summed in vector lanes, so that the sum is
// limited by memory and not by the latency of one accumulator.
template <class ExecSpace>
float streaming_sum(const ExecSpace& space, Kokkos::View<const float*, typename ExecSpace::memory_space> x,
                    std::int64_t block) {
  float total = 0;
  const float* base = x.data();
  Kokkos::parallel_reduce(
      "fmattn::bench::read",
      Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(space, 0, std::int64_t(x.size()) / block),
      KOKKOS_LAMBDA(const std::int64_t b, float& acc) {
        const float* p = base + b * block;
        float sum = 0;
        FMATTN_SIMD_SUM
        for (std::int64_t i = 0; i < block; ++i) sum += p[i];
        acc += sum;
      },
      total);
  return total;
}

}  // namespace fmattn::detail
