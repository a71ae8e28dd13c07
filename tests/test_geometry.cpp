// Interaction lists (spec §3) partition the allowed keys of every query exactly once, for many
// (n, m, p) including ragged n and n < m, in both variants; level offsets and counts agree with
// the definitions.
#include <fmattn/core/geometry.hpp>

#include <gtest/gtest.h>

#include <vector>

namespace {

using fmattn::Geometry;
using fmattn::Variant;

// How often each key position is seen by query i through the near field and the far field.
std::vector<int> coverage(const Geometry& g, std::int64_t i) {
  std::vector<int> seen(g.N, 0);
  const std::int64_t B = i / g.m;
  std::int64_t lo, hi;
  g.near_range(B, lo, hi);
  for (std::int64_t j = lo; j < hi; ++j)
    if (g.variant == Variant::bidirectional || j <= i) ++seen[j];
  for (int l = 1; l <= g.L; ++l) {
    std::int64_t cells[fmattn::max_far_cells];
    const int nc = g.far_cells(l, i / g.cell_size(l), cells);
    for (int c = 0; c < nc; ++c)
      for (std::int64_t j = cells[c] * g.cell_size(l); j < (cells[c] + 1) * g.cell_size(l); ++j) ++seen[j];
  }
  return seen;
}

TEST(Geometry, PaddedLengthAndLevels) {
  const auto g = fmattn::make_geometry(1000, 64, 4, Variant::causal);
  EXPECT_EQ(g.N, 1024);
  EXPECT_EQ(g.L, 3);  // N/m = 16 = 2^4
  EXPECT_EQ(g.cell_size(g.L), g.N / 4);
  const auto small = fmattn::make_geometry(10, 64, 4, Variant::causal);
  EXPECT_EQ(small.N, 64);
  EXPECT_EQ(small.L, 0);
  const auto two = fmattn::make_geometry(65, 64, 4, Variant::causal);
  EXPECT_EQ(two.N, 128);
  EXPECT_EQ(two.L, 0);
  const auto four = fmattn::make_geometry(129, 64, 4, Variant::causal);
  EXPECT_EQ(four.N, 256);
  EXPECT_EQ(four.L, 1);
}

TEST(Geometry, ListsPartitionAllowedKeys) {
  for (Variant v : {Variant::causal, Variant::bidirectional})
    for (int m : {1, 2, 4, 8})
      for (std::int64_t n : {1, 2, 3, 7, 8, 9, 31, 64, 100, 129, 257}) {
        const auto g = fmattn::make_geometry(n, m, 1, v);
        for (std::int64_t i = 0; i < n; ++i) {
          const auto seen = coverage(g, i);
          for (std::int64_t j = 0; j < g.N; ++j) {
            const int want = (v == Variant::bidirectional || j <= i) ? 1 : 0;
            // Absent positions (j >= n) may lie inside a far cell; they carry no weight.
            if (j < n) {
              ASSERT_EQ(seen[j], want) << "variant " << int(v) << " m " << m << " n " << n << " i " << i << " j " << j;
            } else {
              ASSERT_LE(seen[j], 1);
            }
          }
        }
      }
}

TEST(Geometry, LevelOffsetsAreContiguous) {
  const auto g = fmattn::make_geometry(5000, 16, 4, Variant::bidirectional);
  std::int64_t expect = 0;
  for (int l = 1; l <= g.L; ++l) {
    EXPECT_EQ(g.level_offset(l), expect);
    expect += g.num_cells(l) * g.p;
  }
  EXPECT_EQ(g.total_coarse_tokens(), expect);
}

TEST(Geometry, CountsOfRaggedCells) {
  const auto g = fmattn::make_geometry(100, 8, 4, Variant::causal);  // N = 128, L = 3
  // Level 2: cells of 16 tokens, sub-segments of 4. Cell 6 covers 96..111: 4 present.
  EXPECT_EQ(g.count(fmattn::Downsampling::average, 2, 6, 0), 4.0);
  EXPECT_EQ(g.count(fmattn::Downsampling::average, 2, 6, 1), 0.0);
  EXPECT_EQ(g.count(fmattn::Downsampling::learned, 2, 6, 3), 1.0);  // 4 present / p
  EXPECT_EQ(g.count(fmattn::Downsampling::average, 1, 0, 0), 2.0);  // full cell: w/p
}

// The far-field walk lists a cell's tokens r < present_tokens and no others: that must be
// exactly the tokens with a nonzero count, on every level of ragged lengths and both kinds of
// downsampling.
TEST(Geometry, PresentTokensAreThoseWithACount) {
  for (const std::int64_t n : {1, 5, 37, 100, 129, 1000}) {
    for (const int p : {1, 2, 4, 8}) {
      const auto g = fmattn::make_geometry(n, 8, p, Variant::bidirectional);
      for (const auto ds : {fmattn::Downsampling::average, fmattn::Downsampling::learned})
        for (int l = 1; l <= g.L; ++l)
          for (std::int64_t cell = 0; cell < g.num_cells(l); ++cell) {
            const int present = g.present_tokens(ds, l, cell);
            ASSERT_GE(present, 0);
            ASSERT_LE(present, p);
            for (int r = 0; r < p; ++r)
              ASSERT_EQ(g.count(ds, l, cell, r) > 0, r < present)
                  << "n " << n << " p " << p << " level " << l << " cell " << cell << " token " << r;
          }
    }
  }
}

TEST(Geometry, FarCellsReportNegativeCells) {
  const auto g = fmattn::make_geometry(1024, 8, 2, Variant::causal);
  std::int64_t cells[fmattn::max_far_cells];
  int negative = 0;
  EXPECT_EQ(g.far_cells(1, 1, cells, &negative), 0);
  EXPECT_EQ(negative, 2);
  EXPECT_EQ(g.far_cells(1, 3, cells, &negative), 2);
  EXPECT_EQ(negative, 0);
  EXPECT_EQ(cells[0], 0);
  EXPECT_EQ(cells[1], 1);
}

}  // namespace
