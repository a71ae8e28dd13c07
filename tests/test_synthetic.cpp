// Synthetic inputs: the device fill equals the pointwise definition (the `smooth` fill rotates
// sines along runs of positions), patterns have the promised structure, and a head's values do
// not depend on which rank or offset generates them.
#include "kernels/synthetic.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace {

using View = Kokkos::View<double***, Kokkos::LayoutRight, Kokkos::DefaultExecutionSpace::memory_space>;

View fill(const fmattn::detail::SyntheticSource& src, std::int64_t heads, std::int64_t n, std::int64_t d,
          std::int64_t head0) {
  View x("x", heads, n, d);
  fmattn::detail::fill_synthetic<Kokkos::DefaultExecutionSpace, double>(Kokkos::DefaultExecutionSpace(), x, src, head0,
                                                                        0);
  Kokkos::fence();
  return x;
}

TEST(Synthetic, FillEqualsPointwiseDefinition) {
  for (auto pattern : {fmattn::detail::SyntheticPattern::gaussian, fmattn::detail::SyntheticPattern::smooth,
                       fmattn::detail::SyntheticPattern::piecewise_constant}) {
    const fmattn::detail::SyntheticSource src{pattern, 99, 1, 3000, 16, 2.0};
    const auto x = fill(src, 2, 3000, 5, 3);
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
    double worst = 0;
    for (int a = 0; a < 2; ++a)
      for (int i = 0; i < 3000; ++i)
        for (int c = 0; c < 5; ++c) worst = std::max(worst, std::abs(h(a, i, c) - src(3 + a, i, c)));
    EXPECT_LT(worst, 1e-11) << int(pattern);
  }
}

// A rank of a sharded sequence fills its own positions from an offset: the values must be
// bitwise those of a fill from position 0 (the smooth fill's runs are aligned globally).
TEST(Synthetic, FillFromAnOffsetIsBitwiseTheSame) {
  for (auto pattern : {fmattn::detail::SyntheticPattern::gaussian, fmattn::detail::SyntheticPattern::smooth,
                       fmattn::detail::SyntheticPattern::piecewise_constant}) {
    const fmattn::detail::SyntheticSource src{pattern, 5, 2, 3000, 16, 1.0};
    const auto whole = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), fill(src, 2, 3000, 3, 0));
    for (std::int64_t row0 : {1, 255, 256, 257, 1000, 2999}) {
      View part("part", 2, 3000 - row0, 3);
      fmattn::detail::fill_synthetic<Kokkos::DefaultExecutionSpace, double>(Kokkos::DefaultExecutionSpace(), part, src,
                                                                            0, row0);
      const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), part);
      bool same = true;
      for (int a = 0; a < 2; ++a)
        for (std::int64_t i = row0; i < 3000; ++i)
          for (int c = 0; c < 3; ++c) same = same && h(a, i - row0, c) == whole(a, i, c);
      EXPECT_TRUE(same) << int(pattern) << " from " << row0;
    }
  }
}

TEST(Synthetic, PiecewiseConstantOnAlignedSpans) {
  const fmattn::detail::SyntheticSource src{fmattn::detail::SyntheticPattern::piecewise_constant, 7, 2, 100, 8, 1.0};
  const auto x = fill(src, 1, 100, 3, 0);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
  for (int i = 0; i < 100; ++i)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(h(0, i, c), h(0, i / 8 * 8, c));
  EXPECT_NE(h(0, 0, 0), h(0, 8, 0));
}

TEST(Synthetic, GaussianMomentsAndSeedDependence) {
  const fmattn::detail::SyntheticSource a{fmattn::detail::SyntheticPattern::gaussian, 1, 0, 20000, 1, 1.0};
  auto b = a;
  b.seed = 2;
  const auto xa = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), fill(a, 1, 20000, 4, 0));
  const auto xb = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), fill(b, 1, 20000, 4, 0));
  double mean = 0, var = 0, same = 0;
  for (int i = 0; i < 20000; ++i)
    for (int c = 0; c < 4; ++c) {
      mean += xa(0, i, c);
      var += xa(0, i, c) * xa(0, i, c);
      same += xa(0, i, c) == xb(0, i, c);
    }
  mean /= 80000;
  var = var / 80000 - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.02);  // 5 standard errors
  EXPECT_NEAR(var, 1.0, 0.03);
  EXPECT_EQ(same, 0);
}

}  // namespace
