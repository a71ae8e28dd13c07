// Kernels over a few sampled query rows per head ([bh][S] positions), for the validation of a
// run and the loss of a fit: only those rows ever leave the device, as double.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

template <class ExecSpace>
using SampledPolicy3 = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>, Kokkos::IndexType<std::int64_t>>;

// got(h, s, :) = x(h, rows(h, s), :).
template <class ExecSpace, class Scalar, class Mem>
void gather_sampled_rows(const ExecSpace& space, Kokkos::View<const Scalar***, Kokkos::LayoutRight, Mem> x,
                         Kokkos::View<const std::int64_t**, Kokkos::LayoutRight, Mem> rows,
                         Kokkos::View<double***, Kokkos::LayoutRight, Mem> got) {
  const std::int64_t heads = got.extent(0), S = got.extent(1), d = got.extent(2);
  Kokkos::parallel_for(
      "fmattn::sampling::gather", SampledPolicy3<ExecSpace>(space, {0, 0, 0}, {heads, S, d}),
      KOKKOS_LAMBDA(const std::int64_t h, const std::int64_t s, const std::int64_t c) {
        got(h, s, c) = double(x(h, rows(h, s), c));
      });
}

// The sampled rows that one shard owns (positions [own0, own1), its row i - own0) of q and out
// into qs and got; the other rows are left as they are (zero), so that a sum over the ranks
// assembles every row exactly.
template <class ExecSpace, class Scalar, class Mem>
void gather_owned_sampled_rows(const ExecSpace& space, Kokkos::View<const Scalar***, Kokkos::LayoutRight, Mem> q,
                               Kokkos::View<const Scalar***, Kokkos::LayoutRight, Mem> out,
                               Kokkos::View<const std::int64_t**, Kokkos::LayoutRight, Mem> rows, std::int64_t own0,
                               std::int64_t own1, Kokkos::View<double***, Kokkos::LayoutRight, Mem> qs,
                               Kokkos::View<double***, Kokkos::LayoutRight, Mem> got) {
  const std::int64_t heads = qs.extent(0), S = qs.extent(1), d = qs.extent(2);
  Kokkos::parallel_for(
      "fmattn::validation::own_rows", SampledPolicy3<ExecSpace>(space, {0, 0, 0}, {heads, S, d}),
      KOKKOS_LAMBDA(const std::int64_t h, const std::int64_t s, const std::int64_t x) {
        const std::int64_t i = rows(h, s);
        if (i < own0 || i >= own1) return;
        qs(h, s, x) = double(q(h, i - own0, x));
        got(h, s, x) = double(out(h, i - own0, x));
      });
}

// The fit's loss on the sampled rows, mean((got - exact)^2) over `terms` entries: its
// gradient into dO at the sampled rows (dO is zero elsewhere), and each entry's squared error
// into got, to be summed in a fixed order on the host.
template <class ExecSpace, class Scalar, class Mem>
void sampled_squared_error(const ExecSpace& space, Kokkos::View<double***, Kokkos::LayoutRight, Mem> got,
                           Kokkos::View<const double***, Kokkos::LayoutRight, Mem> exact,
                           Kokkos::View<const std::int64_t**, Kokkos::LayoutRight, Mem> rows, double terms,
                           Kokkos::View<Scalar***, Kokkos::LayoutRight, Mem> dO) {
  const std::int64_t heads = got.extent(0), S = got.extent(1), d = got.extent(2);
  Kokkos::parallel_for(
      "fmattn::fit::loss_gradient", SampledPolicy3<ExecSpace>(space, {0, 0, 0}, {heads, S, d}),
      KOKKOS_LAMBDA(const std::int64_t h, const std::int64_t s, const std::int64_t c) {
        const double diff = got(h, s, c) - exact(h, s, c);
        dO(h, rows(h, s), c) = Scalar(2.0 * diff / terms);
        got(h, s, c) = diff * diff;
      });
}

}  // namespace fmattn::detail
