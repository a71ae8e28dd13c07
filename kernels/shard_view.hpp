// A Shard as kernels capture it: its scalars by value and its per-level tables in a small View
// of L + 2 rows. The host Shard keeps fixed arrays for every possible level (1.5 KiB); captured
// whole, it made every functor larger than the 512 bytes that CUDA passes as kernel arguments,
// beyond which Kokkos copies the functor through constant memory before each launch.
#pragma once

#include <fmattn/core/geometry.hpp>
#include <fmattn/core/shard.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn::detail {

// Per level l = 0..L + 1: first stored cell, one past the last, index of its token 0 in the
// coarse arrays (row L + 1: the coarse tokens stored per head).
template <class MemSpace>
using ShardLevels = Kokkos::View<const std::int64_t* [3], Kokkos::LayoutRight, MemSpace>;

template <class MemSpace>
struct ShardView {
  std::int64_t block_begin = 0, block_end = 0;  // own fine blocks
  std::int64_t key_begin = 0;                   // first stored fine K/V row (global position)
  int p = 1;
  ShardLevels<MemSpace> levels;

  KOKKOS_INLINE_FUNCTION std::int64_t token_begin(const Geometry& g) const { return block_begin * g.m; }
  KOKKOS_INLINE_FUNCTION std::int64_t token_end(const Geometry& g) const {
    return block_end * g.m < g.n ? block_end * g.m : g.n;
  }
  KOKKOS_INLINE_FUNCTION std::int64_t cell_begin(int l) const { return levels(l, 0); }
  KOKKOS_INLINE_FUNCTION std::int64_t coarse_base(int l) const { return levels(l, 2); }
  KOKKOS_INLINE_FUNCTION std::int64_t coarse_index(int l, std::int64_t cell, int r) const {
    return levels(l, 2) + (cell - levels(l, 0)) * p + r;
  }
};

// The level tables of s, copied to MemSpace once (a synchronous copy of a few hundred bytes);
// the owner of the shard keeps them for its launches.
template <class MemSpace>
ShardLevels<MemSpace> shard_levels(const Geometry& g, const Shard& s) {
  Kokkos::View<std::int64_t* [3], Kokkos::LayoutRight, MemSpace> levels(
      Kokkos::view_alloc(Kokkos::WithoutInitializing, "fmattn::shard_levels"), g.L + 2);
  const auto host = Kokkos::create_mirror_view(levels);
  for (int l = 0; l <= g.L + 1; ++l) {
    host(l, 0) = s.cell_begin[l];
    host(l, 1) = s.cell_end[l];
    host(l, 2) = s.coarse_base[l];
  }
  Kokkos::deep_copy(levels, host);
  return levels;
}

template <class MemSpace>
ShardView<MemSpace> shard_view(const Shard& s, const ShardLevels<MemSpace>& levels) {
  ShardView<MemSpace> v;
  v.block_begin = s.block_begin;
  v.block_end = s.block_end;
  v.key_begin = s.key_begin;
  v.p = s.p;
  v.levels = levels;
  return v;
}

}  // namespace fmattn::detail
