// The FMA and exact kernels against the brute-force float64 reference of the spec, on fresh
// random inputs, ragged lengths and every option; float32 within a tolerance calibrated by a
// plain float32 run of the same reference; and the exactness identities of spec §6.
#include "attention_fixture.hpp"
#include "kernels/attention_backward.hpp"
#include "kernels/attention_forward.hpp"

#include <algorithm>
#include <limits>

namespace {

using namespace testing_fma;

// Ragged n, n < m, n = m·2^k, several p from 1 to m, sub-tiled blocks (m > 64) and key chunks
// longer than the kernel's chunk.
const std::vector<Shape> shapes = {{1, 4, 1, 3},   {5, 8, 2, 4},    {37, 4, 2, 5},    {100, 8, 8, 3},
                                   {256, 8, 4, 8}, {333, 16, 1, 4}, {300, 128, 4, 2}, {513, 64, 16, 3}};

void check_double(bool causal, bool learned, bool count_weighting) {
  ref::Params P;
  P.scale = 0.7;
  expect_kernel_matches_reference(with_options(P, causal, learned, count_weighting), shapes);
}

TEST(AttentionDouble, CausalAverage) { check_double(true, false, true); }
TEST(AttentionDouble, CausalAverageNoCountWeighting) { check_double(true, false, false); }
TEST(AttentionDouble, CausalLearned) { check_double(true, true, true); }
TEST(AttentionDouble, CausalLearnedNoCountWeighting) { check_double(true, true, false); }
TEST(AttentionDouble, BidirectionalAverage) { check_double(false, false, true); }
TEST(AttentionDouble, BidirectionalAverageNoCountWeighting) { check_double(false, false, false); }
TEST(AttentionDouble, BidirectionalLearned) { check_double(false, true, true); }
TEST(AttentionDouble, BidirectionalLearnedNoCountWeighting) { check_double(false, true, false); }

TEST(AttentionDouble, ZeroSinkBoundary) {
  std::mt19937_64 rng(test_seed());
  SCOPED_TRACE("seed " + std::to_string(test_seed()));
  for (std::int64_t n : {8, 64, 256})
    for (bool cw : {true, false})
      for (bool learned : {false, true}) {
        ref::Params P = problem({n, 8, 2, 4}, true, 0.5);
        P.zero_sink = true;
        P.count_weighting = cw;
        P.learned = learned;
        const auto q = random_heads(rng, 2, n, 4), k = random_heads(rng, 2, n, 4), v = random_heads(rng, 2, n, 4);
        fmattn::DownsamplingWeights w;
        ref::Weights rw;
        if (learned) random_weights(rng, fmattn::make_geometry(n, 8, 2, fmattn::Variant::causal), 4, w, rw);
        const auto got = run_kernel<double>(P, q, k, v, learned ? &w : nullptr);
        EXPECT_LT(rel_error(got, run_reference<double>(P, q, k, v, learned ? &rw : nullptr)), 1e-12);
        // The sink must matter: early queries see a zero-valued slot in their denominator.
        P.zero_sink = false;
        EXPECT_GT(rel_error(got, run_reference<double>(P, q, k, v, learned ? &rw : nullptr)), 1e-3);
      }
}

TEST(AttentionDouble, ExactMatchesDenseSoftmax) {
  for (bool causal : {true, false}) {
    ref::Params P;
    P.causal = causal;
    P.exact = true;
    P.scale = 0.4;
    expect_kernel_matches_reference(P, {{1, 16, 4, 5}, {3, 16, 4, 5}, {64, 16, 4, 5}, {65, 16, 4, 5}, {200, 16, 4, 5}});
  }
}

// Local attention: FMA's near field alone, on ragged lengths and both variants.
TEST(AttentionDouble, LocalMatchesReference) {
  for (bool causal : {true, false}) {
    ref::Params P;
    P.causal = causal;
    P.local = true;
    P.scale = 0.5;
    expect_kernel_matches_reference(P, {{1, 4, 2, 3}, {9, 4, 2, 3}, {64, 8, 2, 5}, {203, 16, 4, 5}});
  }
}

// FlashAttention's rule: the float32 kernel's error against float64 is at most a small multiple
// of the error of a plain float32 implementation of the same function.
TEST(AttentionFloat, WithinPlainFloat32Error) {
  std::mt19937_64 rng(test_seed());
  for (bool causal : {true, false})
    for (bool exact : {false, true})
      for (const Shape& s : {Shape{700, 16, 4, 32}, Shape{1000, 64, 4, 64}}) {
        ref::Params P = problem(s, causal, 1.0 / std::sqrt(double(s.d)));
        P.exact = exact;
        const auto q = random_heads(rng, 1, P.n, P.d), k = random_heads(rng, 1, P.n, P.d),
                   v = random_heads(rng, 1, P.n, P.d);
        const auto want = run_reference<double>(P, q, k, v);
        const double plain = rel_error(run_reference<float>(P, q, k, v), want);
        const double fast = rel_error(run_kernel<float>(P, q, k, v), want);
        EXPECT_LE(fast, 4 * plain + 8 * std::numeric_limits<float>::epsilon())
            << "seed " << test_seed() << " causal " << causal << " exact " << exact << " plain " << plain;
      }
}

// Spec §6.1: no coarse level (N <= 2m) means FMA is exact attention.
TEST(Identities, NoLevelsEqualsExact) {
  std::mt19937_64 rng(test_seed());
  for (bool causal : {true, false})
    for (std::int64_t n : {1, 10, 64, 100, 128}) {
      ref::Params P = problem({n, 64, 4, 8}, causal, 0.3);
      const auto q = random_heads(rng, 2, n, 8), k = random_heads(rng, 2, n, 8), v = random_heads(rng, 2, n, 8);
      const auto fma = run_kernel<double>(P, q, k, v);
      P.exact = true;
      EXPECT_LT(rel_error(fma, run_kernel<double>(P, q, k, v)), 1e-13) << "n " << n;
    }
}

// K, V constant on aligned spans of w_L/p: every coarse token equals the fine tokens it averages.
Heads piecewise(std::mt19937_64& rng, int heads, std::int64_t n, int d, std::int64_t span) {
  Heads h = random_heads(rng, heads, n, d);
  for (auto& x : h)
    for (std::int64_t i = 0; i < n; ++i)
      for (int c = 0; c < d; ++c) x[i * d + c] = x[(i / span) * span * d + c];
  return h;
}

TEST(Identities, PiecewiseConstantEqualsExact) {
  std::mt19937_64 rng(test_seed());
  for (bool causal : {true, false})
    for (std::int64_t n : {1024, 1000, 777}) {
      ref::Params P = problem({n, 16, 4, 16}, causal, 0.25);
      const auto g = fmattn::make_geometry(n, P.m, P.p, fmattn::Variant::causal);
      const std::int64_t span = g.cell_size(g.L) / P.p;
      const auto q = random_heads(rng, 2, n, P.d);
      const auto k = piecewise(rng, 2, n, P.d, span), v = piecewise(rng, 2, n, P.d, span);
      const auto fma64 = run_kernel<double>(P, q, k, v);
      const auto fma32 = run_kernel<float>(P, q, k, v);
      P.exact = true;
      const auto exact = run_reference<double>(P, q, k, v);
      EXPECT_LT(rel_error(fma64, exact), 1e-12) << "n " << n;
      const double plain = rel_error(run_reference<float>(P, q, k, v), exact);
      EXPECT_LE(rel_error(fma32, exact), 4 * plain + 8 * std::numeric_limits<float>::epsilon()) << "n " << n;
    }
}

TEST(Identities, LearnedAtInitialisationEqualsAverage) {
  std::mt19937_64 rng(test_seed());
  for (bool causal : {true, false}) {
    ref::Params P = problem({512, 8, 4, 6}, causal);
    const auto q = random_heads(rng, 2, P.n, P.d), k = random_heads(rng, 2, P.n, P.d),
               v = random_heads(rng, 2, P.n, P.d);
    const auto avg = run_kernel<double>(P, q, k, v);
    P.learned = true;  // no weights given: the average operator
    EXPECT_LT(rel_error(run_kernel<double>(P, q, k, v), avg), 1e-13);
  }
}

// Adding a constant vector c to every key shifts each query's scores by q·c (average coarse
// keys shift by the same c): the output must not change.
TEST(Identities, ScoreShiftInvariance) {
  std::mt19937_64 rng(test_seed());
  for (bool causal : {true, false}) {
    ref::Params P = problem({600, 16, 2, 8}, causal, 0.3);
    const auto q = random_heads(rng, 1, P.n, P.d), v = random_heads(rng, 1, P.n, P.d);
    auto k = random_heads(rng, 1, P.n, P.d);
    const auto before = run_kernel<double>(P, q, k, v);
    for (std::int64_t i = 0; i < P.n; ++i)
      for (int c = 0; c < P.d; ++c) k[0][i * P.d + c] += 3.0 + c;
    EXPECT_LT(rel_error(run_kernel<double>(P, q, k, v), before), 1e-12);
  }
}

TEST(Identities, HeadPermutationPermutesOutputs) {
  std::mt19937_64 rng(test_seed());
  ref::Params P = problem({300, 8, 2, 4}, false);
  const auto q = random_heads(rng, 4, P.n, P.d), k = random_heads(rng, 4, P.n, P.d), v = random_heads(rng, 4, P.n, P.d);
  const auto out = run_kernel<double>(P, q, k, v);
  const std::vector<int> perm{2, 0, 3, 1};
  Heads qp, kp, vp;
  for (int a : perm) {
    qp.push_back(q[a]);
    kp.push_back(k[a]);
    vp.push_back(v[a]);
  }
  const auto outp = run_kernel<double>(P, qp, kp, vp);
  for (std::size_t a = 0; a < perm.size(); ++a) EXPECT_EQ(outp[a], out[perm[a]]);
}

// Scores in the thousands: the online max keeps every exponent <= 0, so nothing overflows and
// no NaN appears (floating-point exceptions are enabled in the test main).
TEST(Identities, LargeScoresStayFinite) {
  std::mt19937_64 rng(test_seed());
  for (bool causal : {true, false}) {
    ref::Params P = problem({400, 16, 4, 8}, causal, 1.0);
    const auto q = random_heads(rng, 1, P.n, P.d, 30.0), k = random_heads(rng, 1, P.n, P.d, 30.0),
               v = random_heads(rng, 1, P.n, P.d);
    const auto got32 = run_kernel<float>(P, q, k, v);
    const auto got64 = run_kernel<double>(P, q, k, v);
    for (double x : got32[0]) ASSERT_TRUE(std::isfinite(x));
    EXPECT_LT(rel_error(got64, run_reference<double>(P, q, k, v)), 1e-12);
  }
}

// The tile shape this build launches: the host's register blocks, or (FMATTN_DEVICE_TILES_ON_HOST,
// and on GPUs) the split-Q device shape, whose teams must really hold several threads for the
// tests above to exercise its barriers: up to 4, as many as the backend runs. The backward's
// passes (a work tag each) launch in the same shape.
TEST(TileShape, LaunchShapeOfTheBuild) {
  using K = fmattn::detail::AttentionTiles<TestSpace, float>;
  using B = fmattn::detail::AttentionBackward<TestSpace, float>;
  using PairPolicy = Kokkos::TeamPolicy<TestSpace, Kokkos::Schedule<Kokkos::Dynamic>, B::PairTag>;
  const K f{};
  const B b{};
  const auto policy = K::policy(TestSpace(), 8, f, K::scratch_bytes(64), 0);
  const auto pairs = B::policy<PairPolicy>(TestSpace(), 8, b, K::scratch_bytes(64, true), 0);
#if defined(FMATTN_DEVICE_TILES_ON_HOST)
  EXPECT_TRUE(K::split_q);
  EXPECT_EQ(K::CB, 1);
  EXPECT_EQ(policy.team_size(), std::min(4, int(TestSpace().concurrency())));
  EXPECT_EQ(pairs.team_size(), std::min(4, int(TestSpace().concurrency())));
#else
  EXPECT_FALSE(K::split_q);
  EXPECT_GE(policy.team_size(), 1);
  EXPECT_GE(pairs.team_size(), 1);
#endif
  EXPECT_EQ(policy.league_size(), 8);
  EXPECT_EQ(pairs.league_size(), 8);
}

// The forward functor travels as a kernel argument (CUDA's limit is 4 KiB, with the policy):
// it captures the shard's level tables as a View, not the 1.5 KiB host Shard.
TEST(TileShape, FunctorIsPassedAsKernelArgument) {
  // Under 512 bytes CUDA passes a functor as a kernel argument whatever the launch hints say.
  EXPECT_LT(sizeof(fmattn::detail::AttentionTiles<TestSpace, double>), 512u);
  EXPECT_LT(sizeof(fmattn::detail::ShardView<TestSpace::memory_space>), 128u);
  EXPECT_EQ(sizeof(fmattn::detail::TokenRows<const double>), 24u);
  // The backward's functor is larger; its launches carry the light-weight hint, under which
  // the kernel-argument limit is 4 KiB, policy included.
  EXPECT_LT(sizeof(fmattn::detail::AttentionBackward<TestSpace, double>), 1536u);
}

// Kernels address the rows of their [heads][rows][d] inputs through TokenRows: the same rows as
// the View's, on a shape where heads, rows and d all differ.
TEST(TileShape, TokenRowsAddressTheViewsRows) {
  Kokkos::View<double***, Kokkos::LayoutRight, Kokkos::HostSpace> view("rows", 3, 5, 7);
  const fmattn::detail::TokenRows<const double> rows(view);
  for (int h = 0; h < 3; ++h)
    for (int i = 0; i < 5; ++i) EXPECT_EQ(rows(h, i), &view(h, i, 0));
}

TEST(AttentionApi, RejectsMismatchedShapes) {
  const auto g = fmattn::make_geometry(100, 8, 2, fmattn::Variant::causal);
  TestAttention<double> att(g, {}, 4, 2);
  TestAttention<double>::Tensor good("good", 2, 100, 4), bad("bad", 2, 99, 4);
  EXPECT_THROW(att.forward(good, good, bad, good), fmattn::InputError);
}

}  // namespace
