// The part of one sequence that one MPI rank holds when the sequence is sharded: its own fine
// blocks (queries, output), the fine K/V rows it stores (its blocks plus the halo blocks its
// near field needs), and for every level a window of coarse cells — the cells its tokens touch
// and the cells its queries' far fields list (spec §3). A whole sequence is the shard of a
// single rank, stored with Geometry's global layout.
#pragma once

#include <fmattn/core/geometry.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace fmattn {

struct Shard {
  std::int64_t block_begin = 0, block_end = 0;    // own fine blocks [begin, end)
  std::int64_t key_begin = 0, key_end = 0;        // stored fine K/V rows (global positions)
  std::int64_t cell_begin[max_levels + 2] = {};   // first stored cell of level l
  std::int64_t cell_end[max_levels + 2] = {};     // one past the last
  std::int64_t coarse_base[max_levels + 2] = {};  // index of cell_begin[l] token 0 in coarse arrays
  int p = 1;

  // Own fine tokens [token_begin, token_end) of a sequence of length g.n.
  KOKKOS_INLINE_FUNCTION std::int64_t token_begin(const Geometry& g) const { return block_begin * g.m; }
  KOKKOS_INLINE_FUNCTION std::int64_t token_end(const Geometry& g) const {
    return block_end * g.m < g.n ? block_end * g.m : g.n;
  }
  // Index of coarse token r of cell `cell` (stored) of level l in the coarse arrays.
  KOKKOS_INLINE_FUNCTION std::int64_t coarse_index(int l, std::int64_t cell, int r) const {
    return coarse_base[l] + (cell - cell_begin[l]) * p + r;
  }
  KOKKOS_INLINE_FUNCTION bool stores(int l, std::int64_t cell) const {
    return cell >= cell_begin[l] && cell < cell_end[l];
  }
  // Coarse tokens stored per head (all levels).
  std::int64_t coarse_tokens(const Geometry& g) const { return coarse_base[g.L + 1]; }
};

// Fine blocks holding at least one present token.
inline std::int64_t present_blocks(const Geometry& g) { return (g.n + g.m - 1) / g.m; }

// The whole sequence: every block and every cell, in Geometry's layout (level_offset).
inline Shard whole_sequence(const Geometry& g) {
  Shard s;
  s.p = g.p;
  s.block_end = present_blocks(g);
  s.key_end = g.n;
  for (int l = 1; l <= g.L + 1; ++l) {
    s.coarse_base[l] = g.level_offset(l);
    if (l <= g.L) s.cell_end[l] = g.num_cells(l);
  }
  return s;
}

// The shard of blocks [block_begin, block_end): a halo block left of it (and right of it for
// the bidirectional variant) and, per level, the cells from three left of its first cell to
// three right of its last (clipped to the sequence).
inline Shard make_shard(const Geometry& g, std::int64_t block_begin, std::int64_t block_end) {
  Shard s;
  s.p = g.p;
  s.block_begin = block_begin;
  s.block_end = block_end;
  const std::int64_t halo_right = g.variant == Variant::bidirectional ? 1 : 0;
  s.key_begin = (block_begin > 0 ? block_begin - 1 : 0) * g.m;
  const std::int64_t key_end = (block_end + halo_right) * g.m;
  s.key_end = key_end < g.n ? key_end : g.n;
  const std::int64_t first = s.token_begin(g), last = s.token_end(g) - 1;
  std::int64_t base = 0;
  for (int l = 1; l <= g.L; ++l) {
    const std::int64_t w = g.cell_size(l), lo = first / w - max_far_cells, hi = last / w + max_far_cells + 1;
    s.cell_begin[l] = lo > 0 ? lo : 0;
    s.cell_end[l] = hi < g.num_cells(l) ? hi : g.num_cells(l);
    s.coarse_base[l] = base;
    base += (s.cell_end[l] - s.cell_begin[l]) * g.p;
  }
  s.coarse_base[g.L + 1] = base;
  return s;
}

}  // namespace fmattn
