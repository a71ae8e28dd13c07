// How many entries of a tensor are NaN or Inf: the last guard before results are written, since
// inputs inside the accepted range can still meet learned weights large enough to overflow.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace fmattn::detail {

// Finite iff the exponent bits are not all ones. A bit test, not a floating-point compare: it
// raises no FE_INVALID on NaN, and stays exact under any floating-point compiler flags.
template <class Scalar>
KOKKOS_INLINE_FUNCTION bool is_finite_bits(Scalar x) {
  static_assert(sizeof(Scalar) == 4 || sizeof(Scalar) == 8, "float or double");
  using Bits = std::conditional_t<sizeof(Scalar) == 4, std::uint32_t, std::uint64_t>;
  constexpr Bits exponent = sizeof(Scalar) == 4 ? Bits(0x7f800000u) : Bits(0x7ff0000000000000ull);
  Bits b;
  memcpy(&b, &x, sizeof b);
  return (b & exponent) != exponent;
}

template <class View>
std::int64_t count_nonfinite(const View& x) {
  using Exec = typename View::execution_space;
  const auto flat = Kokkos::View<const typename View::value_type*, typename View::memory_space,
                                 Kokkos::MemoryTraits<Kokkos::Unmanaged>>(x.data(), x.span());
  std::int64_t bad = 0;
  Kokkos::parallel_reduce(
      "fmattn::finite::count", Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(0, std::int64_t(x.span())),
      KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& sum) { sum += is_finite_bits(flat(i)) ? 0 : 1; }, bad);
  return bad;
}

}  // namespace fmattn::detail
