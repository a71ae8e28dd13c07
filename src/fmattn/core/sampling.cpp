#include <fmattn/core/sampling.hpp>

#include <fmattn/core/attention.hpp>
#include "kernels/reference_rows.hpp"
#include "kernels/sampled_rows.hpp"
#include "kernels/synthetic.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
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
        std::int64_t(detail::hash_key(seed, 0x5a3b1e, std::uint64_t(head), draw++, 0) % std::uint64_t(j + 1));
    const std::int64_t pick = chosen.count(t) ? j : t;
    chosen.insert(pick);
    out.push_back(pick);
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

// Per head: ||got - want||_F / ||want||_F over `per_head` values ([heads][per_head] arrays).
std::vector<double> relative_errors(const double* got, const double* want, std::int64_t heads, std::int64_t per_head) {
  std::vector<double> err(heads);
  for (std::int64_t h = 0; h < heads; ++h) {
    double num = 0, den = 0;
    for (std::int64_t i = h * per_head; i < (h + 1) * per_head; ++i) {
      num += (got[i] - want[i]) * (got[i] - want[i]);
      den += want[i] * want[i];
    }
    err[h] = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  }
  return err;
}

}  // namespace

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
  detail::gather_sampled_rows(ExecSpace(), x, rows, got);
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
  e.rel_error = relative_errors(got_h.data(), ref_h.data(), heads, S * d);
  return e;
}

template <class Scalar, class ExecSpace>
SampledError validate_sharded_rows(
    std::uint64_t seed, std::int64_t samples, Variant variant, double scale, const Geometry& g, const Shard& shard,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> q,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> k,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> v,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> out, MPI_Comm comm) {
  using Mem = typename ExecSpace::memory_space;
  const std::int64_t heads = std::int64_t(q.extent(0)), n = g.n, d = std::int64_t(q.extent(2));
  SampledError e;
  e.per_head = std::min(samples, n);
  e.rel_error.assign(heads, 0.0);
  if (e.per_head == 0 || heads == 0) return e;
  const std::int64_t S = e.per_head, own0 = shard.token_begin(g), own1 = shard.token_end(g);
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const auto rows = sampled_rows<ExecSpace>(seed, 0, heads, n, S);
  const auto rows_h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), rows);
  e.index.assign(rows_h.data(), rows_h.data() + heads * S);

  // Every rank gets every sampled query row, and rank 0 the output rows: each row has exactly
  // one owner and the others add zeros, so the sums are exact.
  using Rows3 = Kokkos::View<double***, Kokkos::LayoutRight, Mem>;
  Rows3 qs("fmattn::sampled_queries", heads, S, d), got("fmattn::sampled_output", heads, S, d);
  detail::gather_owned_sampled_rows<ExecSpace, Scalar, Mem>(ExecSpace(), q, out, rows, own0, own1, qs, got);
  auto sum_into = [&](const Rows3& x, bool everywhere) {
    auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
    if (everywhere)
      MPI_Allreduce(MPI_IN_PLACE, host.data(), int(host.span()), MPI_DOUBLE, MPI_SUM, comm);
    else
      MPI_Reduce(rank == 0 ? MPI_IN_PLACE : host.data(), host.data(), int(host.span()), MPI_DOUBLE, MPI_SUM, 0, comm);
    Kokkos::deep_copy(x, host);
    return host;
  };
  sum_into(qs, true);
  const auto got_h = sum_into(got, false);

  // Partial sums over the own keys, rescaled to the global max, summed on rank 0.
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> mx("fmattn::sampled_max", heads, S),
      den("fmattn::sampled_den", heads, S);
  Rows3 num("fmattn::sampled_num", heads, S, d);
  detail::for_each_sampled_row(ExecSpace(), "fmattn::validation::partials", heads, S,
                               detail::ReferencePartials<ExecSpace, Scalar>{
                                   qs, k, v, rows, mx, den, num, shard.key_begin, own0, own1, variant, scale});
  auto mx_h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mx);
  auto den_h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), den);
  auto num_h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), num);
  std::vector<double> top(mx_h.data(), mx_h.data() + heads * S);
  for (std::int64_t r = 0; r < heads * S; ++r)
    if (den_h.data()[r] == 0) top[r] = -std::numeric_limits<double>::max();
  MPI_Allreduce(MPI_IN_PLACE, top.data(), int(top.size()), MPI_DOUBLE, MPI_MAX, comm);
  for (std::int64_t r = 0; r < heads * S; ++r) {
    const double f = den_h.data()[r] > 0 ? std::exp(mx_h.data()[r] - top[r]) : 0.0;
    den_h.data()[r] *= f;
    for (std::int64_t x = 0; x < d; ++x) num_h.data()[r * d + x] *= f;
  }
  MPI_Reduce(rank == 0 ? MPI_IN_PLACE : den_h.data(), den_h.data(), int(heads * S), MPI_DOUBLE, MPI_SUM, 0, comm);
  MPI_Reduce(rank == 0 ? MPI_IN_PLACE : num_h.data(), num_h.data(), int(heads * S * d), MPI_DOUBLE, MPI_SUM, 0, comm);
  if (rank == 0) {
    for (std::int64_t r = 0; r < heads * S; ++r)
      for (std::int64_t x = 0; x < d; ++x) num_h.data()[r * d + x] /= den_h.data()[r];
    e.rel_error = relative_errors(got_h.data(), num_h.data(), heads, S * d);
  }
  MPI_Bcast(e.rel_error.data(), int(heads), MPI_DOUBLE, 0, comm);
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
      Kokkos::View<const S***, Kokkos::LayoutRight, Kokkos::DefaultExecutionSpace::memory_space>);               \
  template SampledError validate_sharded_rows<S, Kokkos::DefaultExecutionSpace>(                                 \
      std::uint64_t, std::int64_t, Variant, double, const Geometry&, const Shard&,                               \
      Kokkos::View<const S***, Kokkos::LayoutRight, Kokkos::DefaultExecutionSpace::memory_space>,                \
      Kokkos::View<const S***, Kokkos::LayoutRight, Kokkos::DefaultExecutionSpace::memory_space>,                \
      Kokkos::View<const S***, Kokkos::LayoutRight, Kokkos::DefaultExecutionSpace::memory_space>,                \
      Kokkos::View<const S***, Kokkos::LayoutRight, Kokkos::DefaultExecutionSpace::memory_space>, MPI_Comm);
FMATTN_INSTANTIATE(float)
FMATTN_INSTANTIATE(double)
#undef FMATTN_INSTANTIATE

}  // namespace fmattn
