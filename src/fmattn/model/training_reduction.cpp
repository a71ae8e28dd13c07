#include <fmattn/model/training_reduction.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

namespace fmattn {

namespace {

template <class S>
MPI_Datatype mpi_type() {
  return sizeof(S) == sizeof(float) ? MPI_FLOAT : MPI_DOUBLE;
}

// Messages of at most 2^30 elements (MPI counts are int).
constexpr std::int64_t piece = std::int64_t(1) << 30;

// The n values at `host` summed over the ranks in rank order, on every rank.
template <class T>
void sum_in_rank_order(T* host, std::int64_t n, MPI_Comm comm) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  if (rank == 0) {
    std::vector<T> other(std::size_t(std::min(n, piece)));
    for (int r = 1; r < ranks; ++r)
      for (std::int64_t at = 0; at < n; at += piece) {
        const int count = int(std::min(piece, n - at));
        MPI_Recv(other.data(), count, mpi_type<T>(), r, 0, comm, MPI_STATUS_IGNORE);
        for (int i = 0; i < count; ++i) host[at + i] += other[std::size_t(i)];
      }
  } else {
    for (std::int64_t at = 0; at < n; at += piece)
      MPI_Send(host + at, int(std::min(piece, n - at)), mpi_type<T>(), 0, 0, comm);
  }
  for (std::int64_t at = 0; at < n; at += piece)
    MPI_Bcast(host + at, int(std::min(piece, n - at)), mpi_type<T>(), 0, comm);
}

// The flat range of a sharded model's rows of P: [0, 0) when it has none or is not sharded.
template <class S>
std::pair<std::int64_t, std::int64_t> own_rows(const LanguageModel<S>& model) {
  if (!model.sharded() || !model.config().learned_positions()) return {0, 0};
  const ParameterSlot& p = find_slot(model.slots(), "position");
  return {p.offset, p.offset + p.size};
}

}  // namespace

template <class S>
void sum_gradients(const LanguageModel<S>& model, MPI_Comm comm) {
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);
  if (ranks == 1) return;
  const auto grads = model.gradients();
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), grads);
  const auto [p0, p1] = own_rows(model);
  const std::int64_t n = std::int64_t(host.extent(0));
  sum_in_rank_order(host.data(), p0, comm);
  sum_in_rank_order(host.data() + p1, n - p1, comm);
  Kokkos::deep_copy(grads, host);
}

template <class S>
double gradient_norm(const LanguageModel<S>& model, const AdamW<S>& adamw, MPI_Comm comm) {
  const auto [p0, p1] = own_rows(model);
  if (p1 == p0) return adamw.norm(model.gradients());
  const auto g = model.gradients();
  const std::int64_t n = std::int64_t(g.extent(0));
  double replicated = adamw.sum_of_squares(g, 0, p0) + adamw.sum_of_squares(g, p1, n);
  double mine = adamw.sum_of_squares(g, p0, p1);
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);
  std::vector<double> all(static_cast<std::size_t>(ranks));
  MPI_Allgather(&mine, 1, MPI_DOUBLE, all.data(), 1, MPI_DOUBLE, comm);
  for (const double x : all) replicated += x;
  return std::sqrt(replicated);
}

template void sum_gradients(const LanguageModel<float>&, MPI_Comm);
template void sum_gradients(const LanguageModel<double>&, MPI_Comm);
template double gradient_norm(const LanguageModel<float>&, const AdamW<float>&, MPI_Comm);
template double gradient_norm(const LanguageModel<double>&, const AdamW<double>&, MPI_Comm);

}  // namespace fmattn
