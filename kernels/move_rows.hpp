// Packing and unpacking the rows that sharded ranks exchange (halo blocks, coarse cells).
#pragma once

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

// Rows [first(s), first(s) + rows) of a and b, all heads, for every segment s, to (pack) or
// from buf, laid out [segment][a, b][head][row][d].
template <class ExecSpace, class Tensor, class Starts, class Buffer>
void move_row_blocks(const ExecSpace& space, const Tensor& a, const Tensor& b, const Starts& first, std::int64_t rows,
                     const Buffer& buf, bool pack) {
  const std::int64_t S = first.extent(0), H = a.extent(0), d = a.extent(2);
  const std::int64_t per = 2 * H * rows * d;
  Kokkos::parallel_for(
      "fmattn::sequence_parallel::move_rows",
      Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(space, 0, S * per),
      KOKKOS_LAMBDA(const std::int64_t e) {
        const std::int64_t seg = e / per, rest = e % per, which = rest / (H * rows * d), x = rest % (H * rows * d);
        const std::int64_t h = x / (rows * d), row = first(seg) + (x / d) % rows, c = x % d;
        auto* at = which == 0 ? &a(h, row, c) : &b(h, row, c);
        if (pack)
          buf(e) = *at;
        else
          *at = buf(e);
      });
}

// Rows [first, last) of a and b, all heads, set to zero.
template <class ExecSpace, class Tensor>
void clear_rows(const ExecSpace& space, const Tensor& a, const Tensor& b, std::int64_t first, std::int64_t last) {
  using Policy = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>, Kokkos::IndexType<std::int64_t>>;
  if (last <= first) return;
  Kokkos::parallel_for(
      "fmattn::sequence_parallel::clear_rows",
      Policy(space, {0, first, 0}, {std::int64_t(a.extent(0)), last, std::int64_t(a.extent(2))}),
      KOKKOS_LAMBDA(const std::int64_t h, const std::int64_t j, const std::int64_t c) {
        a(h, j, c) = 0;
        b(h, j, c) = 0;
      });
}

}  // namespace fmattn::detail
