// Compile-time tile shapes per backend: a host thread wants tiles that fill its caches and give
// long vector loops; a GPU team wants tiles whose scratch fits in shared memory, query rows
// split among its threads and vector lanes over keys and channels.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>

// Bytes of query lanes (or channels) in a register block: two vector registers, so that a block
// of 6 keys holds 12 accumulators on AVX2 (16 registers) and on AVX-512 (32) alike.
#if defined(__AVX512F__)
#define FMATTN_TILE_LANE_BYTES 128
#else
#define FMATTN_TILE_LANE_BYTES 64
#endif

namespace fmattn::detail {

// The host shape: one thread per team walks the tile in register blocks.
template <class Scalar>
struct HostTileShape {
  static constexpr int query_rows = 64;  // queries per team
  static constexpr int key_chunk = 64;   // keys streamed through scratch at a time
  // Register blocks: 6 keys (or rows) × two vectors of lanes is 12 accumulators, plus two
  // vectors of the other operand and a broadcast: 15 of AVX2's 16 registers. Per step that is 12
  // FMAs against 8 loads, so the FMA units rather than the load ports set the pace (4 × 16
  // floats was load-bound at about half the speed, and 16 doubles per row spill on AVX2:
  // bench/tile_gemm.cpp). AVX-512 builds used one vector (6 accumulators) until measured: two
  // are 7–9 % faster in the FMA forward on Zen 4 (README, "Performance"). Ragged ends use
  // blocks of 3 and 1.
  static constexpr int block_keys = 6;
  static constexpr int block_rows = 6;
  static constexpr int block_cols = int(FMATTN_TILE_LANE_BYTES / sizeof(Scalar));
  // Scratch rows padded by one cache line (see AttentionTiles::pad).
  static constexpr int scratch_pad = int(64 / sizeof(Scalar));
  // Query rows split among threads with vector lanes over keys (the device shape's loops).
  static constexpr bool split_q = false;
  static constexpr int team_size = 0;  // Kokkos::AUTO
  static constexpr int vector_length = 1;
  // The sums over a cell's rows (learned coarse tokens, the backward's coarse reduction, the
  // weight and bias gradients): one thread per row of results with the channels in vector
  // registers, or threads (teams, for learned coarse tokens) with one channel per thread or lane,
  // so that consecutive threads read consecutive channels. Each value is summed in the same
  // order either way, so both shapes give the same bits.
  static constexpr bool channels_in_parallel = false;
};

// The device shape, FlashAttention-2's split-Q: a team of `Threads` threads, each owning whole
// query rows (no softmax reduction across threads); its `Lanes` vector lanes run over a chunk's
// keys for the scores and the row max and sum, and over the channels for P·V. Scratch rows are
// padded by one element, so that lanes reading a column of key rows (or of the transposed
// scores) hit distinct shared-memory banks. Rows and chunk sizes keep a tile's scratch within
// the per-team shared memory at d = 128 where the GPU allows (CUDA: 106 KiB in float, 139 KiB
// in double; HIP's 64 KiB: 51 KiB in float, double at d = 128 falls back to level-1 scratch).
template <class Scalar, int QueryRows, int KeyChunk, int Threads, int Lanes>
struct DeviceTileShape {
  static constexpr int query_rows = QueryRows;
  static constexpr int key_chunk = KeyChunk;
  static constexpr int block_keys = 1;
  static constexpr int block_rows = 1;
  static constexpr int block_cols = 1;
  static constexpr int scratch_pad = 1;
  static constexpr bool split_q = true;
  static constexpr int team_size = Threads;
  static constexpr int vector_length = Lanes;
  static constexpr bool channels_in_parallel = true;
};

// FMATTN_DEVICE_TILES_ON_HOST builds the host backends with the device shape (teams of up to 4
// threads, one vector lane), so that its barriers and row ownership run, with real concurrency,
// under the tests of a machine without a GPU.
template <class ExecSpace, class Scalar>
struct TileTraits
#if defined(FMATTN_DEVICE_TILES_ON_HOST)
    : DeviceTileShape<Scalar, 64, 32, 4, 1> {
};
#else
    : HostTileShape<Scalar> {
};
#endif

#if defined(KOKKOS_ENABLE_CUDA)
// 8 warps of 32 lanes; 32 rows in double, whose scratch is twice as large.
template <class Scalar>
struct TileTraits<Kokkos::Cuda, Scalar> : DeviceTileShape<Scalar, sizeof(Scalar) == 4 ? 64 : 32, 32, 8, 32> {};
#endif
#if defined(KOKKOS_ENABLE_HIP)
// 4 wavefronts of 64 lanes; AMD GPUs have 64 KiB of shared memory per team.
#if KOKKOS_VERSION >= 40000
template <class Scalar>
struct TileTraits<Kokkos::HIP, Scalar> : DeviceTileShape<Scalar, 32, 16, 4, 64> {};
#else
template <class Scalar>
struct TileTraits<Kokkos::Experimental::HIP, Scalar> : DeviceTileShape<Scalar, 32, 16, 4, 64> {};
#endif
#endif

// A launch policy whose functor reaches a GPU as a kernel argument (Kokkos' light-weight hint):
// without it, Kokkos copies a functor of 512 bytes or more to constant memory before each
// launch and serialises launches on that copy. No effect on host backends.
template <class Policy>
auto as_kernel_argument(const Policy& policy) {
  return Kokkos::Experimental::require(policy, Kokkos::Experimental::WorkItemProperty::HintLightWeight);
}

// A team launch in the device shape of TileTraits<ExecSpace, Scalar>: its vector length and
// team size, the team capped at what the backend allows for f with `scratch` bytes per team at
// `level` (a Serial or single-threaded OpenMP build runs teams of one thread).
template <class Scalar, class Policy, class Functor>
auto device_team_policy(const typename Policy::execution_space& space, std::int64_t league, const Functor& f,
                        std::size_t scratch, int level) {
  using T = TileTraits<typename Policy::execution_space, Scalar>;
  const int lanes = T::vector_length < Policy::vector_length_max() ? T::vector_length : Policy::vector_length_max();
  // The limit of the kernel that runs: the same policy type (launch mechanism) as below.
  auto probe = as_kernel_argument(Policy(space, 1, 1, lanes));
  probe.set_scratch_size(level, Kokkos::PerTeam(scratch));
  const int most = probe.team_size_max(f, Kokkos::ParallelForTag());
  Policy p(space, int(league), T::team_size < most ? T::team_size : most, lanes);
  return as_kernel_argument(p.set_scratch_size(level, Kokkos::PerTeam(scratch)));
}

}  // namespace fmattn::detail
