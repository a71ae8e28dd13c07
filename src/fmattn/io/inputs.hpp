// Q, K, V for a run: synthetic (generated on the device) or read from HDF5 datasets q, k, v
// [batch][heads][n][d] with shape, type and NaN/Inf checks.
#pragma once

#include <fmattn/core/shard.hpp>
#include <fmattn/io/deck.hpp>

#include <mpi.h>
#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdint>
#include <limits>

namespace fmattn {

template <class Scalar, class ExecSpace = Kokkos::DefaultExecutionSpace>
struct QKV {
  using Tensor = Kokkos::View<Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space>;
  Tensor q, k, v;  // [local batch·heads][n][d]
};

// The largest input magnitude accepted: sums of d products q·k and of up to n·d values stay
// finite for any length (2^56 in float32, 2^504 in float64), so no finite input can overflow
// the attention into a NaN output.
template <class Scalar>
double max_input_magnitude() {
  return std::ldexp(1.0, std::numeric_limits<Scalar>::max_exponent / 2 - 8);
}

// Span of `piecewise_constant` inputs: the deck's, or w_L/p (the span on which average
// downsampling is exact, spec §6.2).
std::int64_t resolved_span(const Deck& deck);

// Inputs for the flattened batch·head rows [first, last).
template <class Scalar, class ExecSpace = Kokkos::DefaultExecutionSpace>
QKV<Scalar, ExecSpace> make_inputs(const Deck& deck, std::int64_t first, std::int64_t last,
                                   MPI_Comm comm = MPI_COMM_SELF);

// Inputs of one shard of a sharded sequence, all batch·heads: q [heads][own rows][d], k and v
// [heads][stored rows][d] with the own rows filled and the halo rows zero (ShardedAttention
// receives them). Collective over `comm` for hdf5 input.
template <class Scalar, class ExecSpace = Kokkos::DefaultExecutionSpace>
QKV<Scalar, ExecSpace> make_shard_inputs(const Deck& deck, const Geometry& g, const Shard& shard, MPI_Comm comm);

}  // namespace fmattn
