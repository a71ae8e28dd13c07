// The linear variant (spec §8, attention.queries: coarse) against the brute-force reference on
// random inputs, and its identity: with Q constant on aligned spans of w_L/p and average
// downsampling it equals the O(n log n) variant.
#include "attention_fixture.hpp"

namespace {

using namespace testing_fma;

const std::vector<Shape> shapes = {{1, 4, 1, 3},    {37, 4, 2, 5},    {256, 8, 4, 8},
                                   {333, 16, 1, 4}, {300, 128, 4, 2}, {513, 16, 16, 3}};

void check(bool causal, bool learned, bool count_weighting) {
  ref::Params P;
  P.causal = causal;
  P.learned = learned;
  P.count_weighting = count_weighting;
  P.coarse_queries = true;
  P.scale = 0.6;
  expect_kernel_matches_reference(P, shapes);
}

TEST(Linear, CausalAverage) { check(true, false, true); }
TEST(Linear, CausalLearned) { check(true, true, true); }
TEST(Linear, CausalNoCountWeighting) { check(true, false, false); }
TEST(Linear, BidirectionalAverage) { check(false, false, true); }
TEST(Linear, BidirectionalLearned) { check(false, true, true); }
TEST(Linear, BidirectionalLearnedNoCountWeighting) { check(false, true, false); }

TEST(Linear, ZeroSinkBoundary) {
  ref::Params P;
  P.zero_sink = true;
  P.coarse_queries = true;
  P.scale = 0.5;
  expect_kernel_matches_reference(P, {{8, 8, 2, 4}, {128, 8, 2, 4}, {512, 8, 2, 4}});
}

// Spec §8 identity, ragged n included.
TEST(Linear, ConstantQueriesEqualLogLinearVariant) {
  std::mt19937_64 rng(test_seed());
  for (bool causal : {true, false})
    for (std::int64_t n : {1024, 1000, 613}) {
      ref::Params P = problem({n, 16, 4, 8}, causal, 0.3);
      const auto g = fmattn::make_geometry(n, P.m, P.p, fmattn::Variant::causal);
      const std::int64_t span = g.cell_size(g.L) / P.p;
      Heads q = random_heads(rng, 2, n, P.d);
      for (auto& x : q)
        for (std::int64_t i = 0; i < n; ++i)
          for (int c = 0; c < P.d; ++c) x[i * P.d + c] = x[(i / span) * span * P.d + c];
      const auto k = random_heads(rng, 2, n, P.d), v = random_heads(rng, 2, n, P.d);
      const auto nlogn = run_kernel<double>(P, q, k, v);
      P.coarse_queries = true;
      EXPECT_LT(rel_error(run_kernel<double>(P, q, k, v), nlogn), 1e-12) << "seed " << test_seed() << " n " << n;
      // Fresh (non-constant) queries make the two variants differ: the identity is not vacuous.
      const auto q2 = random_heads(rng, 2, n, P.d);
      P.coarse_queries = false;
      const auto a = run_kernel<double>(P, q2, k, v);
      P.coarse_queries = true;
      EXPECT_GT(rel_error(run_kernel<double>(P, q2, k, v), a), 1e-6);
    }
}

TEST(Linear, Float32WithinPlainFloat32Error) {
  std::mt19937_64 rng(test_seed());
  for (bool causal : {true, false}) {
    ref::Params P = problem({900, 16, 4, 32}, causal, 1.0 / std::sqrt(32.0));
    P.coarse_queries = true;
    const auto q = random_heads(rng, 1, P.n, P.d), k = random_heads(rng, 1, P.n, P.d),
               v = random_heads(rng, 1, P.n, P.d);
    const auto want = run_reference<double>(P, q, k, v);
    const double plain = rel_error(run_reference<float>(P, q, k, v), want);
    EXPECT_LE(rel_error(run_kernel<float>(P, q, k, v), want), 4 * plain + 8 * std::numeric_limits<float>::epsilon())
        << "seed " << test_seed();
  }
}

}  // namespace
