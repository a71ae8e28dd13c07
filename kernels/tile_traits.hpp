// Compile-time tile shapes per backend: a host thread wants tiles that fill its caches and give
// long vector loops; a GPU team wants tiles whose scratch fits in shared memory.
#pragma once

#include <Kokkos_Core.hpp>

namespace fmattn {

template <class ExecSpace>
struct TileTraits {
  static constexpr int query_rows = 64;  // queries per team
  static constexpr int key_chunk = 64;   // keys streamed through scratch at a time
  // Register blocks: 4 keys (or rows) × 16 lanes is 8 AVX2 (or 4 AVX-512) accumulators.
  static constexpr int block_keys = 4;
  static constexpr int block_rows = 4;
  static constexpr int block_cols = 16;
};

#if defined(KOKKOS_ENABLE_CUDA)
template <>
struct TileTraits<Kokkos::Cuda> {
  static constexpr int query_rows = 32;
  static constexpr int key_chunk = 32;
  static constexpr int block_keys = 1;
  static constexpr int block_rows = 1;
  static constexpr int block_cols = 8;
};
#endif
#if defined(KOKKOS_ENABLE_HIP)
template <>
struct TileTraits<Kokkos::Experimental::HIP> {
  static constexpr int query_rows = 32;
  static constexpr int key_chunk = 32;
  static constexpr int block_keys = 1;
  static constexpr int block_rows = 1;
  static constexpr int block_cols = 8;
};
#endif

}  // namespace fmattn
