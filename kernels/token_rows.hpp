// A [heads][rows][d] array (LayoutRight) as kernels read it: its data, rows per head and d.
// A View also carries the reference count of its allocation, 40 bytes in all where this takes
// 24. The forward's tile functor holds eight of these; at this size it stays under the 512
// bytes that CUDA passes as a kernel argument without Kokkos' constant-memory copy. Whoever
// builds a functor holds the Views for its launches (inside kernels Kokkos counts no
// references anyway, so a View there would not keep its allocation alive either).
#pragma once

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <type_traits>

namespace fmattn::detail {

template <class T>
struct TokenRows {
  T* data = nullptr;
  std::int64_t rows = 0;  // per head
  std::int64_t d = 0;

  TokenRows() = default;
  // Implicit, so that a functor's field is assigned from the caller's View directly.
  template <class View>
  TokenRows(const View& v)  // NOLINT(google-explicit-constructor,hicpp-explicit-conversions)
      : data(v.data()), rows(std::int64_t(v.extent(1))), d(std::int64_t(v.extent(2))) {
    static_assert(View::rank == 3 && std::is_same_v<typename View::array_layout, Kokkos::LayoutRight>,
                  "token rows are [heads][rows][d], row-major");
  }

  // Row i of head h.
  KOKKOS_INLINE_FUNCTION T* operator()(std::int64_t h, std::int64_t i) const { return data + (h * rows + i) * d; }
};

}  // namespace fmattn::detail
