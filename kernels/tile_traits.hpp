// Compile-time tile shapes per backend: a host thread wants tiles that fill its caches and give
// long vector loops; a GPU team wants tiles whose scratch fits in shared memory.
#pragma once

#include <Kokkos_Core.hpp>

namespace fmattn::detail {

template <class ExecSpace, class Scalar>
struct TileTraits {
  static constexpr int query_rows = 64;  // queries per team
  static constexpr int key_chunk = 64;   // keys streamed through scratch at a time
  // Register blocks: 6 keys (or rows) × 64 bytes of lanes is 12 AVX2 accumulators, plus two
  // vectors of the other operand and a broadcast: 15 of 16 registers. Per step that is 12 FMAs
  // against 8 loads, so the FMA units rather than the load ports set the pace (4 × 16 floats was
  // load-bound at about half the speed, and 16 doubles per row spill: bench/tile_gemm.cpp).
  // Ragged ends use blocks of 3 and 1.
  static constexpr int block_keys = 6;
  static constexpr int block_rows = 6;
  static constexpr int block_cols = int(64 / sizeof(Scalar));
  // Scratch rows padded by one cache line (see AttentionTiles::pad).
  static constexpr int scratch_pad = int(64 / sizeof(Scalar));
};

#if defined(KOKKOS_ENABLE_CUDA)
template <class Scalar>
struct TileTraits<Kokkos::Cuda, Scalar> {
  static constexpr int query_rows = 32;
  static constexpr int key_chunk = 32;
  static constexpr int block_keys = 1;
  static constexpr int block_rows = 1;
  static constexpr int block_cols = 8;
  static constexpr int scratch_pad = 0;
};
#endif
#if defined(KOKKOS_ENABLE_HIP)
template <class Scalar>
struct TileTraits<Kokkos::Experimental::HIP, Scalar> {
  static constexpr int query_rows = 32;
  static constexpr int key_chunk = 32;
  static constexpr int block_keys = 1;
  static constexpr int block_rows = 1;
  static constexpr int block_cols = 8;
  static constexpr int scratch_pad = 0;
};
#endif

}  // namespace fmattn::detail
