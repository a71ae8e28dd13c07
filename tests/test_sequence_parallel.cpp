// A sequence sharded over the ranks of MPI_COMM_WORLD (run at 1, 2, 3 and 4 ranks) gives the
// single-rank result: bit for bit with average downsampling (every coarse sum is formed from
// the same halves), to 1e-12 relative with learned weights (partial sums added in another
// order). Causal and bidirectional, ragged n, uneven shards, one block per rank, count
// weighting off, the zero_sink boundary, float32 and float64.
#include <fmattn/parallel/sequence_parallel.hpp>
#include "attention_fixture.hpp"

#include <mpi.h>

namespace {

using namespace testing_fma;

// The same random heads on every rank: the seed is rank 0's.
std::uint64_t shared_seed() {
  unsigned long long s = test_seed();
  MPI_Bcast(&s, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
  return s;
}

// Rows [first, last) of every head as a View.
template <class S>
typename fmattn::Attention<S>::Tensor rows_view(const Heads& x, std::int64_t first, std::int64_t last, int d) {
  typename fmattn::Attention<S>::Tensor t("rows", x.size(), last - first, d);
  auto h = Kokkos::create_mirror_view(t);
  for (std::size_t a = 0; a < x.size(); ++a)
    for (std::int64_t i = first; i < last; ++i)
      for (int c = 0; c < d; ++c) h(a, i - first, c) = S(x[a][i * d + c]);
  Kokkos::deep_copy(t, h);
  return t;
}

template <class S>
void check(const ref::Params& P, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int H = 3;
  const auto variant = P.causal ? fmattn::Variant::causal : fmattn::Variant::bidirectional;
  const auto g = fmattn::make_geometry(P.n, P.m, P.p, variant);
  const auto q = random_heads(rng, H, P.n, P.d), k = random_heads(rng, H, P.n, P.d), v = random_heads(rng, H, P.n, P.d);
  fmattn::DownsamplingWeights w;
  ref::Weights rw;
  if (P.learned) random_weights(rng, g, P.d, w, rw);
  const Heads whole = run_kernel<S>(P, q, k, v, P.learned ? &w : nullptr);

  fmattn::ShardedAttention<S> sharded(g, options_of(P), P.d, H, MPI_COMM_WORLD);
  if (P.learned) sharded.local().set_weights(w);
  const fmattn::Shard& s = sharded.shard();
  const std::int64_t own0 = s.token_begin(g), own1 = s.token_end(g);
  auto kv = [&](const Heads& x) {
    // Own rows filled, halo rows poisoned: they must come from the neighbours.
    auto t = rows_view<S>(x, s.key_begin, s.key_end, P.d);
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), t);
    for (int a = 0; a < H; ++a)
      for (std::int64_t i = s.key_begin; i < s.key_end; ++i)
        if (i < own0 || i >= own1)
          for (int c = 0; c < P.d; ++c) h(a, i - s.key_begin, c) = S(1e6);
    Kokkos::deep_copy(t, h);
    return t;
  };
  auto kt = kv(k), vt = kv(v);
  typename fmattn::Attention<S>::Tensor out("out", H, own1 - own0, P.d);
  sharded.forward(rows_view<S>(q, own0, own1, P.d), kt, vt, out);
  auto got = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out);

  double num = 0, den = 0;
  bool identical = true;
  for (int a = 0; a < H; ++a)
    for (std::int64_t i = own0; i < own1; ++i)
      for (int c = 0; c < P.d; ++c) {
        const double x = double(got(a, i - own0, c)), y = whole[a][i * P.d + c];
        identical = identical && x == y;
        num += (x - y) * (x - y);
        den += y * y;
      }
  double sums[2] = {num, den};
  MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  int all_identical = identical ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &all_identical, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (P.learned)
    EXPECT_LT(std::sqrt(sums[0] / sums[1]), 1e-12);
  else
    EXPECT_TRUE(all_identical) << "relative difference " << std::sqrt(sums[0] / sums[1]);
}

// Ragged n with uneven shards (d = 32 takes the register-blocked paths); n = N; one or two
// blocks per rank at 3 and 4 ranks.
const std::vector<Shape> shapes = {{1500, 16, 4, 32}, {1000, 8, 2, 5}, {1024, 16, 4, 3},
                                   {300, 8, 8, 4},    {29, 8, 2, 3},   {61, 4, 2, 2}};

void run_all(bool causal, bool learned, bool count_weighting) {
  const std::uint64_t seed = shared_seed();
  ref::Params P;
  P.scale = 0.5;
  for (const Shape& s : shapes) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " n " + std::to_string(s.n) + " m " + std::to_string(s.m));
    check<double>(with_shape(with_options(P, causal, learned, count_weighting), s), seed);
  }
}

TEST(SequenceParallel, CausalAverage) { run_all(true, false, true); }
TEST(SequenceParallel, CausalAverageNoCountWeighting) { run_all(true, false, false); }
TEST(SequenceParallel, CausalLearned) { run_all(true, true, true); }
TEST(SequenceParallel, BidirectionalAverage) { run_all(false, false, true); }
TEST(SequenceParallel, BidirectionalLearned) { run_all(false, true, true); }

// The last rank owns a partial last block only, so the halo its neighbour receives from it (and,
// bidirectional, sends to it) is short: one block per rank, and two per rank but one on the
// last, with a last block of 1 and of m - 1 tokens, at every rank count this test runs at.
TEST(SequenceParallel, LastRankOwnsOnlyAPartialBlock) {
  int ranks = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const std::uint64_t seed = shared_seed();
  const int m = 8;
  for (int blocks : {ranks, 2 * ranks - 1})
    for (int tail : {1, m - 1})
      for (bool causal : {true, false}) {
        ref::Params P;
        P.scale = 0.5;
        P = with_shape(with_options(P, causal, false, true), {std::int64_t(blocks - 1) * m + tail, m, 2, 3});
        SCOPED_TRACE("seed " + std::to_string(seed) + " n " + std::to_string(P.n) + " causal " +
                     std::to_string(causal));
        check<double>(P, seed);
      }
}

// The sharded backward against the whole sequence's, which test_backward checks against finite
// differences of the float64 reference: dq and every rank's own rows of dk, dv (the halo
// terms returned by the neighbours, the coarse gradients summed over the delivery and handed
// down the reduction trees), and the learned basis functions' gradients summed over the
// ranks. Terms are added in another order than on one rank: 1e-12 relative. The forward's
// output (with the lse the backward reads) too, for FMA and for local attention.
void check_backward(const ref::Params& P, std::uint64_t seed) {
  using A = fmattn::Attention<double>;
  std::mt19937_64 rng(seed);
  const int H = 2;
  const auto variant = P.causal ? fmattn::Variant::causal : fmattn::Variant::bidirectional;
  const auto g = fmattn::make_geometry(P.n, P.m, P.p, variant);
  const auto q = random_heads(rng, H, P.n, P.d), k = random_heads(rng, H, P.n, P.d), v = random_heads(rng, H, P.n, P.d),
             dout = random_heads(rng, H, P.n, P.d);
  fmattn::DownsamplingWeights w;
  ref::Weights rw;
  if (P.learned) random_weights(rng, g, P.d, w, rw);

  A whole(g, options_of(P), P.d, H);
  if (P.learned) whole.set_weights(w);
  A::Tensor out("out", H, P.n, P.d), dq("dq", H, P.n, P.d), dk("dk", H, P.n, P.d), dv("dv", H, P.n, P.d);
  A::RowValues lse("lse", H, P.n);
  const auto qv = rows_view<double>(q, 0, P.n, P.d), kv = rows_view<double>(k, 0, P.n, P.d),
             vv = rows_view<double>(v, 0, P.n, P.d);
  whole.forward(qv, kv, vv, out, lse);
  fmattn::DownsamplingWeights dw_whole, dw;
  whole.backward(qv, kv, vv, out, lse, rows_view<double>(dout, 0, P.n, P.d), dq, dk, dv,
                 P.learned ? &dw_whole : nullptr);

  fmattn::ShardedAttention<double> sharded(g, options_of(P), P.d, H, MPI_COMM_WORLD);
  if (P.learned) sharded.local().set_weights(w);
  const fmattn::Shard& s = sharded.shard();
  const std::int64_t own0 = s.token_begin(g), own1 = s.token_end(g), own = own1 - own0, keys = s.key_end - s.key_begin;
  auto kt = rows_view<double>(k, s.key_begin, s.key_end, P.d), vt = rows_view<double>(v, s.key_begin, s.key_end, P.d);
  const auto qs = rows_view<double>(q, own0, own1, P.d);
  A::Tensor out_s("out", H, own, P.d), dq_s("dq", H, own, P.d), dk_s("dk", H, keys, P.d), dv_s("dv", H, keys, P.d);
  A::RowValues lse_s("lse", H, own);
  sharded.forward(qs, kt, vt, out_s, {}, lse_s);
  sharded.backward(qs, kt, vt, out_s, lse_s, rows_view<double>(dout, own0, own1, P.d), dq_s, dk_s, dv_s,
                   P.learned ? &dw : nullptr);

  // Squared differences and norms of out, dq, dk, dv over every rank's own rows.
  double sums[8] = {};
  auto add = [&](int which, const A::Tensor& got, std::int64_t first_row, const A::Tensor& want) {
    const auto a = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), got);
    const auto b = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), want);
    for (int h = 0; h < H; ++h)
      for (std::int64_t i = own0; i < own1; ++i)
        for (int c = 0; c < P.d; ++c) {
          const double x = a(h, i - first_row, c), y = b(h, i, c);
          sums[2 * which] += (x - y) * (x - y);
          sums[2 * which + 1] += y * y;
        }
  };
  add(0, dq_s, own0, dq);
  add(1, dk_s, s.key_begin, dk);
  add(2, dv_s, s.key_begin, dv);
  add(3, out_s, own0, out);
  MPI_Allreduce(MPI_IN_PLACE, sums, 8, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  const char* names[] = {"dq", "dk", "dv", "out"};
  for (int i = 0; i < 4; ++i) EXPECT_LT(std::sqrt(sums[2 * i] / sums[2 * i + 1]), 1e-12) << names[i];
  if (!P.learned) return;
  for (auto [part, want] : {std::pair{&dw.k_weight, &dw_whole.k_weight},
                            {&dw.k_bias, &dw_whole.k_bias},
                            {&dw.v_weight, &dw_whole.v_weight},
                            {&dw.v_bias, &dw_whole.v_bias}}) {
    ASSERT_EQ(part->size(), want->size());
    if (want->empty()) continue;  // no coarse level
    MPI_Allreduce(MPI_IN_PLACE, part->data(), int(part->size()), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    double num = 0, den = 0;
    for (std::size_t i = 0; i < part->size(); ++i) {
      num += ((*part)[i] - (*want)[i]) * ((*part)[i] - (*want)[i]);
      den += (*want)[i] * (*want)[i];
    }
    EXPECT_LT(std::sqrt(num / den), 1e-12);
  }
}

TEST(SequenceParallelBackward, EqualsTheWholeSequences) {
  int ranks = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const std::uint64_t seed = shared_seed();
  // Ragged, uneven shards, several levels, tiles smaller than a block (m = 32 > the backward's
  // query tile on some backends), one block per rank, and a last rank with a partial block.
  std::vector<Shape> cases = {{1500, 16, 4, 8}, {1000, 8, 2, 5}, {700, 32, 2, 4}, {61, 4, 2, 3}};
  cases.push_back({std::int64_t(ranks - 1) * 8 + 3, 8, 2, 3});
  for (const Shape& shape : cases)
    for (const bool causal : {true, false})
      for (const bool learned : {false, true})
        for (const bool counts : {true, false}) {
          if (!counts && learned) continue;
          ref::Params P;
          P.scale = 0.5;
          P = with_shape(with_options(P, causal, learned, counts), shape);
          SCOPED_TRACE("seed " + std::to_string(seed) + " n " + std::to_string(P.n) + " m " + std::to_string(P.m) +
                       (causal ? " causal" : " bidirectional") + (learned ? " learned" : " average") +
                       (counts ? "" : " no count weighting"));
          check_backward(P, seed);
        }
  // Local attention: the halo alone travels.
  for (const Shape& shape : cases)
    for (const bool causal : {true, false}) {
      ref::Params P;
      P.scale = 0.5;
      P = with_shape(with_options(P, causal, false, true), shape);
      P.local = true;
      SCOPED_TRACE("seed " + std::to_string(seed) + " n " + std::to_string(P.n) + " local" +
                   (causal ? " causal" : " bidirectional"));
      check_backward(P, seed);
    }
}

TEST(SequenceParallel, ZeroSinkAndFloat) {
  ref::Params P = problem({512, 8, 2, 4});
  P.zero_sink = true;
  check<double>(P, shared_seed());
  P.zero_sink = false;
  P.causal = false;
  check<float>(P, shared_seed());
}

}  // namespace
