// The backward pass against central finite differences of the independent float64 reference
// (spec §1–5, every option, ragged n, zero rows of dO), against exact attention's gradient
// where FMA equals it (L = 0), float32 against float64, and bit-identical repeats.
#include "attention_fixture.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>

namespace {

using namespace testing_fma;

// Everything the kernel's backward produces for one problem, as host vectors.
struct Grads {
  Heads dq, dk, dv;
  std::vector<double> dkw, dkb, dvw, dvb;
};

fmattn::Geometry geometry_of(const ref::Params& P) {
  return fmattn::make_geometry(P.n, P.m, P.p, P.causal ? fmattn::Variant::causal : fmattn::Variant::bidirectional);
}

template <class S>
Grads run_backward(const ref::Params& P, const Heads& q, const Heads& k, const Heads& v, const Heads& dout,
                   const fmattn::DownsamplingWeights* w) {
  TestAttention<S> att(geometry_of(P), options_of(P), P.d, std::int64_t(q.size()));
  if (w) att.set_weights(*w);
  using T = typename TestAttention<S>::Tensor;
  T dq("dq", q.size(), P.n, P.d), dk("dk", q.size(), P.n, P.d), dv("dv", q.size(), P.n, P.d);
  fmattn::DownsamplingWeights dw;
  att.backward(to_view<S>(q, P.n, P.d), to_view<S>(k, P.n, P.d), to_view<S>(v, P.n, P.d), to_view<S>(dout, P.n, P.d),
               dq, dk, dv, w ? &dw : nullptr);
  return {from_view<S>(dq), from_view<S>(dk), from_view<S>(dv), dw.k_weight, dw.k_bias, dw.v_weight, dw.v_bias};
}

// The loss whose gradient the backward computes: sum over heads of dO · out, on the reference.
double loss(const ref::Params& P, const Heads& q, const Heads& k, const Heads& v, const Heads& dout,
            const ref::Weights* w) {
  const Heads out = run_reference<double>(P, q, k, v, w);
  double s = 0;
  for (std::size_t a = 0; a < out.size(); ++a)
    for (std::size_t i = 0; i < out[a].size(); ++i) s += dout[a][i] * out[a][i];
  return s;
}

// Central differences of `loss` with respect to every entry of `x`, which `eval` reads.
template <class Eval>
std::vector<double> central_differences(std::vector<double>& x, const Eval& eval) {
  const double h = 1e-5;  // truncation ~h^2 and rounding ~1e-16/h both far below 1e-6
  std::vector<double> g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = eval();
    x[i] = keep - h;
    const double down = eval();
    x[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

double rel(const std::vector<double>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// An output gradient with a third of its rows zero (skipped by the kernel).
Heads random_dout(std::mt19937_64& rng, int heads, std::int64_t n, int d) {
  Heads g = random_heads(rng, heads, n, d);
  for (auto& head : g)
    for (std::int64_t i = 0; i < n; i += 3)
      for (int c = 0; c < d; ++c) head[i * d + c] = 0;
  return g;
}

void expect_gradients_match_differences(ref::Params P) {
  std::mt19937_64 rng(test_seed());
  SCOPED_TRACE("seed " + std::to_string(test_seed()) + " n " + std::to_string(P.n) + " m " + std::to_string(P.m) +
               " p " + std::to_string(P.p) + " d " + std::to_string(P.d));
  const int H = 2;
  Heads q = random_heads(rng, H, P.n, P.d), k = random_heads(rng, H, P.n, P.d), v = random_heads(rng, H, P.n, P.d);
  const Heads dout = random_dout(rng, H, P.n, P.d);
  fmattn::DownsamplingWeights w;
  ref::Weights rw;
  if (P.learned) random_weights(rng, geometry_of(P), P.d, w, rw);
  const Grads got = run_backward<double>(P, q, k, v, dout, P.learned ? &w : nullptr);
  const ref::Weights* rwp = P.learned ? &rw : nullptr;
  auto eval = [&] { return loss(P, q, k, v, dout, rwp); };
  for (auto [name, x, g] :
       {std::tuple{"dq", &q, &got.dq}, std::tuple{"dk", &k, &got.dk}, std::tuple{"dv", &v, &got.dv}})
    for (int a = 0; a < H; ++a) {
      const auto fd = central_differences((*x)[a], eval);
      EXPECT_LT(rel((*g)[a], fd), 1e-6) << name << " head " << a;
    }
  if (!P.learned) return;
  for (auto [name, x, g] : {std::tuple{"k weight", &rw.kw, &got.dkw}, std::tuple{"k bias", &rw.kb, &got.dkb},
                            std::tuple{"v weight", &rw.vw, &got.dvw}, std::tuple{"v bias", &rw.vb, &got.dvb}}) {
    const auto fd = central_differences(*x, eval);
    ASSERT_EQ(g->size(), fd.size()) << name;
    EXPECT_LT(rel(*g, fd), 1e-6) << name;
  }
}

// Small problems with three coarse levels: ragged n (partially present cells), n = N, and a
// length whose last cells are empty.
const std::vector<Shape> shapes = {{27, 2, 2, 3}, {32, 2, 1, 2}, {35, 4, 4, 2}};

void check(bool causal, bool learned, bool count_weighting) {
  ref::Params P;
  P.scale = 0.6;
  for (const Shape& s : shapes)
    expect_gradients_match_differences(with_shape(with_options(P, causal, learned, count_weighting), s));
}

TEST(BackwardDifferences, CausalAverage) { check(true, false, true); }
TEST(BackwardDifferences, CausalAverageNoCountWeighting) { check(true, false, false); }
TEST(BackwardDifferences, CausalLearned) { check(true, true, true); }
TEST(BackwardDifferences, CausalLearnedNoCountWeighting) { check(true, true, false); }
TEST(BackwardDifferences, BidirectionalAverage) { check(false, false, true); }
TEST(BackwardDifferences, BidirectionalAverageNoCountWeighting) { check(false, false, false); }
TEST(BackwardDifferences, BidirectionalLearned) { check(false, true, true); }
TEST(BackwardDifferences, BidirectionalLearnedNoCountWeighting) { check(false, true, false); }

// The weight gradients are gathered in blocks of 16 positions of a cell
// (AttentionBackward::weight_block); the shapes above have cells of at most 16 tokens, one
// block. Here the top level's cells hold 32 tokens, two blocks of positions.
TEST(BackwardDifferences, LearnedWeightsOnCellsOfSeveralPositionBlocks) {
  for (bool causal : {true, false}) {
    ref::Params P;
    P.scale = 0.6;
    P = with_shape(with_options(P, causal, true, true), {100, 8, 2, 2});
    const fmattn::Geometry g = geometry_of(P);
    ASSERT_GE(g.cell_size(g.L), 2 * 16) << "the top level must span several blocks of positions";
    expect_gradients_match_differences(P);
  }
}

TEST(BackwardDifferences, ZeroSinkBoundary) {
  for (bool learned : {false, true})
    for (bool cw : {true, false}) {
      ref::Params P;
      P.zero_sink = true;
      P.scale = 0.8;
      expect_gradients_match_differences(with_shape(with_options(P, true, learned, cw), {32, 4, 2, 3}));
    }
}

TEST(BackwardDifferences, LocalAttention) {
  for (bool causal : {true, false}) {
    ref::Params P;
    P.local = true;
    expect_gradients_match_differences(with_shape(with_options(P, causal, false, true), {37, 4, 2, 3}));
  }
}

TEST(BackwardDifferences, ExactAttention) {
  for (bool causal : {true, false}) {
    ref::Params P;
    P.exact = true;
    expect_gradients_match_differences(with_shape(with_options(P, causal, false, true), {19, 4, 2, 3}));
  }
}

// With N <= 2m there are no coarse levels and FMA is exact attention (spec §6.1): so are its
// gradients.
TEST(Backward, EqualsExactGradientWithoutLevels) {
  std::mt19937_64 rng(test_seed());
  SCOPED_TRACE("seed " + std::to_string(test_seed()));
  for (bool causal : {true, false})
    for (std::int64_t n : {5, 16, 29}) {
      ref::Params P = problem({n, 16, 4, 6}, causal, 0.4);
      ASSERT_EQ(geometry_of(P).L, 0);
      const auto q = random_heads(rng, 2, n, 6), k = random_heads(rng, 2, n, 6), v = random_heads(rng, 2, n, 6);
      const auto dout = random_dout(rng, 2, n, 6);
      const Grads fma = run_backward<double>(P, q, k, v, dout, nullptr);
      P.exact = true;
      const Grads exact = run_backward<double>(P, q, k, v, dout, nullptr);
      EXPECT_LT(rel_error(fma.dq, exact.dq), 1e-12);
      EXPECT_LT(rel_error(fma.dk, exact.dk), 1e-12);
      EXPECT_LT(rel_error(fma.dv, exact.dv), 1e-12);
    }
}

// float32 against float64 on a problem with five levels. A gradient entry sums at most
// 3m + 3pL slot terms (spec §7), each a few products; random rounding grows like
// sqrt(terms)·eps, which the bound exceeds 32-fold (measured: about 3·eps).
TEST(Backward, FloatAgreesWithDouble) {
  std::mt19937_64 rng(test_seed());
  SCOPED_TRACE("seed " + std::to_string(test_seed()));
  for (bool causal : {true, false}) {
    ref::Params P = problem({1000, 16, 4, 8}, causal, 1.0 / std::sqrt(8.0));
    P.learned = true;
    const auto q = random_heads(rng, 2, P.n, P.d), k = random_heads(rng, 2, P.n, P.d),
               v = random_heads(rng, 2, P.n, P.d);
    const auto dout = random_dout(rng, 2, P.n, P.d);
    fmattn::DownsamplingWeights w;
    ref::Weights rw;
    random_weights(rng, geometry_of(P), P.d, w, rw);
    const Grads f = run_backward<float>(P, q, k, v, dout, &w);
    const Grads d = run_backward<double>(P, q, k, v, dout, &w);
    const int L = geometry_of(P).L;
    const double tol = 32 * std::numeric_limits<float>::epsilon() * std::sqrt(3.0 * P.m + 3.0 * P.p * L);
    EXPECT_LT(rel_error(f.dq, d.dq), tol);
    EXPECT_LT(rel_error(f.dk, d.dk), tol);
    EXPECT_LT(rel_error(f.dv, d.dv), tol);
    EXPECT_LT(rel(f.dkw, d.dkw), tol);
    EXPECT_LT(rel(f.dvw, d.dvw), tol);
    EXPECT_LT(rel(f.dkb, d.dkb), tol);
    EXPECT_LT(rel(f.dvb, d.dvb), tol);
  }
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

TEST(Backward, BitIdenticalRepeats) {
  std::mt19937_64 rng(test_seed());
  ref::Params P = problem({3001, 32, 4, 16}, true, 0.25);
  P.learned = true;
  const auto q = random_heads(rng, 3, P.n, P.d), k = random_heads(rng, 3, P.n, P.d), v = random_heads(rng, 3, P.n, P.d);
  const auto dout = random_dout(rng, 3, P.n, P.d);
  fmattn::DownsamplingWeights w;
  ref::Weights rw;
  random_weights(rng, geometry_of(P), P.d, w, rw);
  const Grads a = run_backward<float>(P, q, k, v, dout, &w);
  for (int repeat = 0; repeat < 3; ++repeat) {
    const Grads b = run_backward<float>(P, q, k, v, dout, &w);
    for (int h = 0; h < 3; ++h) {
      EXPECT_TRUE(same_bits(a.dq[h], b.dq[h]));
      EXPECT_TRUE(same_bits(a.dk[h], b.dk[h]));
      EXPECT_TRUE(same_bits(a.dv[h], b.dv[h]));
    }
    EXPECT_TRUE(same_bits(a.dkw, b.dkw));
    EXPECT_TRUE(same_bits(a.dkb, b.dkb));
    EXPECT_TRUE(same_bits(a.dvw, b.dvw));
    EXPECT_TRUE(same_bits(a.dvb, b.dvb));
  }
}

// Training's path: forward keeping each row's log-sum-exp, then the backward from out and lse.
// The forward's output is that of the plain forward, lse is the log of the softmax denominator
// (checked in double for exact attention), and the gradients are those of the backward that
// runs its own forward, bit for bit.
TEST(Backward, FromTheForwardsOutputAndLse) {
  std::mt19937_64 rng(test_seed());
  for (const bool exact : {false, true})
    for (const bool causal : {true, false}) {
      ref::Params P = problem({203, 8, 2, 5}, true, 0.7);
      P.exact = exact;
      P = with_options(P, causal, !exact, true);
      SCOPED_TRACE(std::string(exact ? "exact " : "fma ") + (causal ? "causal" : "bidirectional"));
      const int H = 2;
      const auto q = random_heads(rng, H, P.n, P.d), k = random_heads(rng, H, P.n, P.d),
                 v = random_heads(rng, H, P.n, P.d);
      const auto dout = random_dout(rng, H, P.n, P.d);
      fmattn::DownsamplingWeights w;
      ref::Weights rw;
      if (P.learned) random_weights(rng, geometry_of(P), P.d, w, rw);
      const Grads own = run_backward<double>(P, q, k, v, dout, P.learned ? &w : nullptr);

      using A = TestAttention<double>;
      A att(geometry_of(P), options_of(P), P.d, H);
      if (P.learned) att.set_weights(w);
      const auto qv = to_view<double>(q, P.n, P.d), kv = to_view<double>(k, P.n, P.d),
                 vv = to_view<double>(v, P.n, P.d), gv = to_view<double>(dout, P.n, P.d);
      A::Tensor out("out", H, P.n, P.d), plain("plain", H, P.n, P.d), dq("dq", H, P.n, P.d), dk("dk", H, P.n, P.d),
          dv("dv", H, P.n, P.d);
      A::RowValues lse("lse", H, P.n);
      att.forward(qv, kv, vv, plain);
      att.forward(qv, kv, vv, out, lse);
      fmattn::DownsamplingWeights dw;
      att.backward(qv, kv, vv, out, lse, gv, dq, dk, dv, P.learned ? &dw : nullptr);
      for (int h = 0; h < H; ++h) {
        EXPECT_TRUE(same_bits(from_view<double>(out)[h], from_view<double>(plain)[h]));
        EXPECT_TRUE(same_bits(from_view<double>(dq)[h], own.dq[h]));
        EXPECT_TRUE(same_bits(from_view<double>(dk)[h], own.dk[h]));
        EXPECT_TRUE(same_bits(from_view<double>(dv)[h], own.dv[h]));
      }
      if (P.learned) {
        EXPECT_TRUE(same_bits(dw.k_weight, own.dkw));
        EXPECT_TRUE(same_bits(dw.v_bias, own.dvb));
      }
      if (!exact) continue;
      const auto lh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), lse);
      double worst = 0;
      for (int h = 0; h < H; ++h)
        for (std::int64_t i = 0; i < P.n; ++i) {
          std::vector<double> scores;
          for (std::int64_t j = 0; j < (causal ? i + 1 : P.n); ++j) {
            double dot = 0;
            for (int c = 0; c < P.d; ++c) dot += q[h][i * P.d + c] * k[h][j * P.d + c];
            scores.push_back(P.scale * dot);
          }
          const double top = *std::max_element(scores.begin(), scores.end());
          double sum = 0;
          for (const double x : scores) sum += std::exp(x - top);
          worst = std::max(worst, std::abs(lh(h, i) - (top + std::log(sum))));
        }
      EXPECT_LT(worst, 64 * std::numeric_limits<double>::epsilon() * std::sqrt(double(P.n)));
    }
}

// FNV-1a over the bits of every gradient of a fixed problem (float32; both variants, FMA with
// learned weights and exact attention). Repeats must agree; with FMATTN_BACKWARD_DIGEST set the
// digest is also written there, and the ctest backward_any_thread_count runs this test at 1 and
// at 2 threads and compares the two files.
TEST(Backward, DigestIsTheSameForAnyThreadCount) {
  auto digest = [] {
    std::uint64_t h = 1469598103934665603ull;
    auto mix = [&](const std::vector<double>& x) {
      const auto* bytes = reinterpret_cast<const unsigned char*>(x.data());
      for (std::size_t i = 0; i < x.size() * sizeof(double); ++i) h = (h ^ bytes[i]) * 1099511628211ull;
    };
    std::mt19937_64 rng(20261202);
    for (const bool exact : {false, true})
      for (const bool causal : {true, false}) {
        ref::Params P = problem({1000, 16, 4, 12}, true, 0.3);
        P = with_options(P, causal, !exact, true);
        P.exact = exact;
        const auto q = random_heads(rng, 2, P.n, P.d), k = random_heads(rng, 2, P.n, P.d),
                   v = random_heads(rng, 2, P.n, P.d);
        const auto dout = random_dout(rng, 2, P.n, P.d);
        fmattn::DownsamplingWeights w;
        ref::Weights rw;
        if (P.learned) random_weights(rng, geometry_of(P), P.d, w, rw);
        const Grads g = run_backward<float>(P, q, k, v, dout, P.learned ? &w : nullptr);
        for (const Heads* x : {&g.dq, &g.dk, &g.dv})
          for (const auto& head : *x) mix(head);
        for (const auto* x : {&g.dkw, &g.dkb, &g.dvw, &g.dvb}) mix(*x);
      }
    return h;
  };
  const std::uint64_t first = digest();
  EXPECT_EQ(first, digest());
  if (const char* path = std::getenv("FMATTN_BACKWARD_DIGEST")) {
    std::FILE* f = std::fopen(path, "w");
    ASSERT_NE(f, nullptr) << path;
    std::fprintf(f, "%016llx\n", static_cast<unsigned long long>(first));
    std::fclose(f);
  }
}

TEST(Backward, RejectsWhatItCannotDifferentiate) {
  ref::Params P = problem({64, 8, 2, 4});
  const auto g = geometry_of(P);
  using T = TestAttention<double>::Tensor;
  T x("x", 1, P.n, P.d), wrong("wrong", 1, P.n + 1, P.d), none;
  fmattn::DownsamplingWeights dw;
  TestAttention<double> average(g, options_of(P), P.d, 1);
  EXPECT_THROW(average.backward(x, x, x, x, x, x, x, &dw), fmattn::InputError);  // no weights to learn
  EXPECT_THROW(average.backward(x, x, x, wrong, x, x, x), fmattn::InputError);
  EXPECT_THROW(average.backward(x, x, x, x, none, x, none), fmattn::InputError);  // dk without dv
  using Rows = TestAttention<double>::RowValues;
  const Rows lse("lse", 1, P.n), short_lse("short", 1, P.n - 1);
  EXPECT_THROW(average.forward(x, x, x, x, short_lse), fmattn::InputError);
  EXPECT_THROW(average.backward(x, x, x, x, short_lse, x, x, x, x), fmattn::InputError);
  EXPECT_THROW(average.backward(x, x, x, wrong, lse, x, x, x, x), fmattn::InputError);  // out of another shape
  P.coarse_queries = true;
  TestAttention<double> linear(g, options_of(P), P.d, 1);
  EXPECT_THROW(linear.backward(x, x, x, x, x, x, x), fmattn::InputError);
  EXPECT_THROW(linear.forward(x, x, x, x, lse), fmattn::InputError);  // no backward, so no lse
}

}  // namespace
