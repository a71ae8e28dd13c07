#include "sampling.hpp"

#include "attention.hpp"
#include "synthetic.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace fmattn {

std::vector<std::int64_t> sample_positions(std::uint64_t seed, std::int64_t head, std::int64_t n, std::int64_t count) {
  count = std::min(count, n);
  // Floyd's algorithm: `count` distinct values with one draw each.
  std::unordered_set<std::int64_t> chosen;
  std::vector<std::int64_t> out;
  std::uint64_t draw = 0;
  for (std::int64_t j = n - count; j < n; ++j) {
    const std::int64_t t =
        std::int64_t(hash_key(seed, 0x5a3b1e, std::uint64_t(head), draw++, 0) % std::uint64_t(j + 1));
    const std::int64_t pick = chosen.count(t) ? j : t;
    chosen.insert(pick);
    out.push_back(pick);
  }
  std::sort(out.begin(), out.end());
  return out;
}

template <class ExecSpace>
Kokkos::View<std::int64_t**, Kokkos::LayoutRight, typename ExecSpace::memory_space> sampled_rows(
    std::uint64_t seed, std::int64_t global_head0, std::int64_t heads, std::int64_t n, std::int64_t S) {
  Kokkos::View<std::int64_t**, Kokkos::LayoutRight, typename ExecSpace::memory_space> rows("fmattn::sample_rows", heads,
                                                                                           S);
  auto host = Kokkos::create_mirror_view(rows);
  for (std::int64_t h = 0; h < heads; ++h) {
    const auto pos = sample_positions(seed, global_head0 + h, n, S);
    for (std::int64_t s = 0; s < S; ++s) host(h, s) = pos[s];
  }
  Kokkos::deep_copy(rows, host);
  return rows;
}

template <class Scalar, class ExecSpace>
Kokkos::View<double***, Kokkos::LayoutRight, typename ExecSpace::memory_space> gather_rows(
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> x,
    Kokkos::View<const std::int64_t**, Kokkos::LayoutRight, typename ExecSpace::memory_space> rows) {
  const std::int64_t heads = rows.extent(0), S = rows.extent(1), d = x.extent(2);
  Kokkos::View<double***, Kokkos::LayoutRight, typename ExecSpace::memory_space> got("fmattn::sampled_rows", heads, S,
                                                                                     d);
  Kokkos::parallel_for(
      "fmattn::sampling::gather",
      Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>, Kokkos::IndexType<std::int64_t>>({0, 0, 0}, {heads, S, d}),
      KOKKOS_LAMBDA(const std::int64_t h, const std::int64_t s, const std::int64_t c) {
        got(h, s, c) = double(x(h, rows(h, s), c));
      });
  return got;
}

template <class Scalar, class ExecSpace>
SampledError validate_sampled_rows(
    std::uint64_t seed, std::int64_t global_head0, std::int64_t samples, Variant variant, double scale,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> q,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> k,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> v,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> out) {
  using Mem = typename ExecSpace::memory_space;
  const std::int64_t heads = std::int64_t(q.extent(0)), n = std::int64_t(q.extent(1)), d = std::int64_t(q.extent(2));
  SampledError e;
  e.per_head = std::min(samples, n);
  e.rel_error.assign(heads, 0.0);
  if (e.per_head == 0 || heads == 0) return e;
  const std::int64_t S = e.per_head;

  const auto rows = sampled_rows<ExecSpace>(seed, global_head0, heads, n, S);
  const auto rows_h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), rows);
  e.index.assign(rows_h.data(), rows_h.data() + heads * S);

  Kokkos::View<double***, Kokkos::LayoutRight, Mem> ref("fmattn::sample_reference", heads, S, d);
  reference_rows<Scalar, ExecSpace>(variant, scale, q, k, v, rows, ref);

  // Only the sampled rows of the output travel to the host.
  const auto got = gather_rows<Scalar, ExecSpace>(out, rows);
  auto ref_h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), ref);
  auto got_h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), got);
  for (std::int64_t h = 0; h < heads; ++h) {
    double num = 0, den = 0;
    for (std::int64_t s = 0; s < S; ++s)
      for (std::int64_t x = 0; x < d; ++x) {
        const double diff = got_h(h, s, x) - ref_h(h, s, x);
        num += diff * diff;
        den += ref_h(h, s, x) * ref_h(h, s, x);
      }
    e.rel_error[h] = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  }
  return e;
}

template Kokkos::View<std::int64_t**, Kokkos::LayoutRight, Kokkos::DefaultExecutionSpace::memory_space>
    sampled_rows<Kokkos::DefaultExecutionSpace>(std::uint64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t);

#define FMATTN_INSTANTIATE(S)                                                                                    \
  template Kokkos::View<double***, Kokkos::LayoutRight, Kokkos::DefaultExecutionSpace::memory_space>             \
      gather_rows<S, Kokkos::DefaultExecutionSpace>(                                                             \
          Kokkos::View<const S***, Kokkos::LayoutRight, Kokkos::DefaultExecutionSpace::memory_space>,            \
          Kokkos::View<const std::int64_t**, Kokkos::LayoutRight, Kokkos::DefaultExecutionSpace::memory_space>); \
  template SampledError validate_sampled_rows<S, Kokkos::DefaultExecutionSpace>(                                 \
      std::uint64_t, std::int64_t, std::int64_t, Variant, double,                                                \
      Kokkos::View<const S***, Kokkos::LayoutRight, Kokkos::DefaultExecutionSpace::memory_space>,                \
      Kokkos::View<const S***, Kokkos::LayoutRight, Kokkos::DefaultExecutionSpace::memory_space>,                \
      Kokkos::View<const S***, Kokkos::LayoutRight, Kokkos::DefaultExecutionSpace::memory_space>,                \
      Kokkos::View<const S***, Kokkos::LayoutRight, Kokkos::DefaultExecutionSpace::memory_space>);
FMATTN_INSTANTIATE(float)
FMATTN_INSTANTIATE(double)
#undef FMATTN_INSTANTIATE

}  // namespace fmattn
