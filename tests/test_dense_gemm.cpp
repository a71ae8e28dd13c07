// The language model's dense products (kernels/dense_gemm.hpp): every transposition, beta 0, 1
// and another, ragged shapes around the register blocks and tiles, float and double, against a
// float64 reference with a bound from the precision and the depth; and, bit for bit, against
// the documented order (each element summed over k in increasing order from beta·C), which is
// what makes the result independent of threads, tiles and vector width. The executable also
// runs at 1 and 4 threads and on the Serial backend.
#include "kernels/dense_gemm.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#ifndef FMATTN_TEST_EXEC_SPACE
#define FMATTN_TEST_EXEC_SPACE Kokkos::DefaultExecutionSpace
#endif

namespace {

using TestSpace = FMATTN_TEST_EXEC_SPACE;
template <class S>
using Matrix = Kokkos::View<S**, Kokkos::LayoutRight, typename TestSpace::memory_space>;

struct Shape {
  std::int64_t M, N, K;
};

template <class S>
Matrix<S> random_matrix(std::int64_t rows, std::int64_t cols, std::mt19937_64& rng) {
  Matrix<S> m("m", rows, cols);
  auto h = Kokkos::create_mirror_view(m);
  std::normal_distribution<double> normal;
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) h(i, j) = S(normal(rng));
  Kokkos::deep_copy(m, h);
  return m;
}

// A host copy that does not alias m (a mirror view of host memory would be m itself).
template <class S>
auto copy_of(const Matrix<S>& m) {
  auto h = Kokkos::create_mirror(Kokkos::HostSpace(), m);
  Kokkos::deep_copy(h, m);
  return h;
}

// The documented order in plain scalar code: acc = beta·C, then acc = acc + A(i, k)·B(k, j)
// for k in increasing order, one fused multiply-add each where the target has them (the
// kernel's vector loops are contracted to them; -march=native on any x86-64 of the last decade).
template <class S>
S ordered_element(const S* a, std::int64_t as_k, const S* b, std::int64_t bs_k, std::int64_t K, S start) {
  S acc = start;
  for (std::int64_t k = 0; k < K; ++k) {
#if defined(__FMA__) || defined(__aarch64__)
    acc = std::fma(a[k * as_k], b[k * bs_k], acc);
#else
    const S product = a[k * as_k] * b[k * bs_k];
    acc = acc + product;
#endif
  }
  return acc;
}

template <class S>
void check(char ta, char tb, const Shape& s, double beta, std::uint64_t seed) {
  SCOPED_TRACE(std::string("op ") + ta + tb + " M " + std::to_string(s.M) + " N " + std::to_string(s.N) + " K " +
               std::to_string(s.K) + " beta " + std::to_string(beta));
  std::mt19937_64 rng(seed);
  const Matrix<S> a = ta == 'T' ? random_matrix<S>(s.K, s.M, rng) : random_matrix<S>(s.M, s.K, rng);
  const Matrix<S> b = tb == 'T' ? random_matrix<S>(s.N, s.K, rng) : random_matrix<S>(s.K, s.N, rng);
  const Matrix<S> c = random_matrix<S>(s.M, s.N, rng);
  const auto ha = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), a);
  const auto hb = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), b);
  const auto c0 = copy_of(c);  // c is overwritten
  fmattn::detail::dense_gemm(TestSpace(), ta, tb, a, b, S(beta), c);
  const auto hc = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), c);

  const double eps = std::numeric_limits<S>::epsilon();
  // A dot product of K terms is within (K + 1)·eps·Σ|terms| of the exact one (plus beta·C).
  const double gamma = double(s.K + 2) * eps;
  const std::int64_t as_i = ta == 'T' ? 1 : s.K, as_k = ta == 'T' ? s.M : 1;
  const std::int64_t bs_k = tb == 'T' ? 1 : s.N, bs_j = tb == 'T' ? s.K : 1;
  std::int64_t bad = 0, order_differs = 0;
  for (std::int64_t i = 0; i < s.M; ++i)
    for (std::int64_t j = 0; j < s.N; ++j) {
      double exact = beta * double(c0(i, j)), magnitude = std::abs(beta * double(c0(i, j)));
      for (std::int64_t k = 0; k < s.K; ++k) {
        const double x = ta == 'T' ? double(ha(k, i)) : double(ha(i, k));
        const double y = tb == 'T' ? double(hb(j, k)) : double(hb(k, j));
        exact += x * y;
        magnitude += std::abs(x * y);
      }
      if (!(std::abs(double(hc(i, j)) - exact) <= gamma * magnitude + std::numeric_limits<double>::min())) ++bad;
      const S start = beta == 0 ? S(0) : beta == 1 ? c0(i, j) : S(beta) * c0(i, j);
      const S ordered = ordered_element<S>(ha.data() + i * as_i, as_k, hb.data() + j * bs_j, bs_k, s.K, start);
      if (std::memcmp(&ordered, &hc(i, j), sizeof(S)) != 0) ++order_differs;
    }
  EXPECT_EQ(bad, 0) << "elements outside (K + 2)·eps·Σ|a·b| of the float64 product";
  EXPECT_EQ(order_differs, 0) << "elements not summed in the documented order";
}

template <class S>
void all_cases() {
  // Around the register blocks (6 rows, 16–32 columns), the tiles (192 rows, or one tile row up
  // to 384; up to 16 column blocks, as few as 4 where threads outnumber tiles, and then teams
  // sharing a tile) and the depth of a packed slab (256), plus a training step's shapes in
  // small. Up to 16 rows B is read in place (decoding), in blocks of 6 and one of the rest
  // (1 … 5 rows); 17 rows take the packed path.
  const Shape shapes[] = {{1, 1, 1},     {5, 7, 3},      {6, 16, 256},    {7, 33, 257}, {97, 130, 300}, {200, 65, 513},
                          {13, 600, 40}, {300, 48, 17},  {1, 1024, 300},  {3, 33, 300}, {8, 70, 100},   {16, 70, 513},
                          {17, 70, 513}, {400, 40, 300}, {100, 700, 300}, {390, 9, 40}};
  std::uint64_t seed = 1;
  for (const Shape& s : shapes)
    for (const char ta : {'N', 'T'})
      for (const char tb : {'N', 'T'})
        for (const double beta : {0.0, 1.0, -0.5}) check<S>(ta, tb, s, beta, seed++);
}

TEST(DenseGemm, FloatMatchesTheReferenceInTheDocumentedOrder) { all_cases<float>(); }
TEST(DenseGemm, DoubleMatchesTheReferenceInTheDocumentedOrder) { all_cases<double>(); }

// K = 0 leaves beta·C; empty outputs are allowed.
TEST(DenseGemm, EmptyDepthScalesC) {
  std::mt19937_64 rng(3);
  const Matrix<double> a("a", 9, 0), b("b", 0, 11), c = random_matrix<double>(9, 11, rng);
  const auto before = copy_of(c);
  fmattn::detail::dense_gemm(TestSpace(), 'N', 'N', a, b, 2.0, c);
  const auto after = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), c);
  for (int i = 0; i < 9; ++i)
    for (int j = 0; j < 11; ++j) EXPECT_EQ(after(i, j), 2.0 * before(i, j));
  const Matrix<double> none("none", 0, 11);
  fmattn::detail::dense_gemm(TestSpace(), 'N', 'N', Matrix<double>("a", 0, 4), Matrix<double>("b", 4, 11), 0.0, none);
}

TEST(DenseGemm, MismatchedShapesAreRefused) {
  const Matrix<float> a("a", 4, 5), b("b", 6, 7), c("c", 4, 7);
  EXPECT_THROW(fmattn::detail::dense_gemm(TestSpace(), 'N', 'N', a, b, 0.0f, c), std::invalid_argument);
}

}  // namespace
