// Sampled-row validation (diagnostics/sample_rel_error): exact attention in double for a few
// seeded query rows per head, compared with the computed output.
#pragma once

#include <fmattn/core/options.hpp>
#include <fmattn/core/shard.hpp>

#include <mpi.h>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <vector>

namespace fmattn {

// `count` distinct query positions in [0, n), sorted, chosen by a seeded hash of (seed, head).
std::vector<std::int64_t> sample_positions(std::uint64_t seed, std::int64_t head, std::int64_t n, std::int64_t count);

// The device View [heads][S] of sample_positions(seed, global_head0 + h, n, S) for each local
// head h.
template <class ExecSpace = Kokkos::DefaultExecutionSpace>
Kokkos::View<std::int64_t**, Kokkos::LayoutRight, typename ExecSpace::memory_space> sampled_rows(
    std::uint64_t seed, std::int64_t global_head0, std::int64_t heads, std::int64_t n, std::int64_t S);

// x(h, rows(h, s), :) as double [heads][S][d]: only the sampled rows of a tensor.
template <class Scalar, class ExecSpace = Kokkos::DefaultExecutionSpace>
Kokkos::View<double***, Kokkos::LayoutRight, typename ExecSpace::memory_space> gather_rows(
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> x,
    Kokkos::View<const std::int64_t**, Kokkos::LayoutRight, typename ExecSpace::memory_space> rows);

struct SampledError {
  std::int64_t per_head = 0;        // S
  std::vector<std::int64_t> index;  // [heads][S] sampled positions
  std::vector<double> rel_error;    // [heads] ||out - exact||_F / ||exact||_F over the rows
};

// Rows of heads [0, heads) where `global_head0` is the global index of local head 0 (so that
// the samples are the same for any MPI decomposition).
template <class Scalar, class ExecSpace = Kokkos::DefaultExecutionSpace>
SampledError validate_sampled_rows(
    std::uint64_t seed, std::int64_t global_head0, std::int64_t samples, Variant variant, double scale,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> q,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> k,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> v,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> out);

// The same for a sequence sharded over `comm`, without gathering it: the sampled query rows
// are summed into every rank (each row has one owner), each rank forms exact-attention
// partial sums over its own keys, and those are combined by log-sum-exp (a max, then sums)
// on rank 0 with the owners' output rows. All heads; every rank returns the errors.
template <class Scalar, class ExecSpace = Kokkos::DefaultExecutionSpace>
SampledError validate_sharded_rows(
    std::uint64_t seed, std::int64_t samples, Variant variant, double scale, const Geometry& g, const Shard& shard,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> q,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> k,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> v,
    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> out, MPI_Comm comm);

}  // namespace fmattn
