// Compile-time tile shapes per backend: a host thread wants tiles that fill its caches and give
// long vector loops; a GPU team wants tiles whose scratch fits in shared memory.
#pragma once

#include <Kokkos_Core.hpp>

namespace fmattn {

template <class ExecSpace>
struct TileTraits {
  static constexpr int query_rows = 64;  // queries per team
  static constexpr int key_chunk = 64;   // keys streamed through scratch at a time
};

#if defined(KOKKOS_ENABLE_CUDA)
template <>
struct TileTraits<Kokkos::Cuda> {
  static constexpr int query_rows = 32;
  static constexpr int key_chunk = 32;
};
#endif
#if defined(KOKKOS_ENABLE_HIP)
template <>
struct TileTraits<Kokkos::Experimental::HIP> {
  static constexpr int query_rows = 32;
  static constexpr int key_chunk = 32;
};
#endif

}  // namespace fmattn
