// fmattn_dense_gemm: the language model's deterministic dense products (kernels/dense_gemm.hpp)
// against KokkosBlas::gemm (the BLAS it was built with, e.g. OpenBLAS) at the shapes of a training
// step of the study model and at a large square product: GFLOP/s of each, and whether the BLAS
// result differs in bits between repeated calls (it may not, but nothing promises it).
//   fmattn_dense_gemm [--rows 8192] [--width 256] [--reps 5] [--dtype float|double]
// rows = windows per step × context, width = the model width (the MLP is 4·width wide).
#include "kernels/dense_gemm.hpp"
#include <fmattn/util/log.hpp>

#include <KokkosBlas3_gemm.hpp>
#include <Kokkos_Core.hpp>
#include <Kokkos_Random.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

template <class S>
using Matrix = Kokkos::View<S**, Kokkos::LayoutRight>;

template <class F>
double best_seconds(int reps, F&& f) {
  f();
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    Kokkos::fence();
    fmattn::Stopwatch w;
    f();
    Kokkos::fence();
    best = std::min(best, w.seconds());
  }
  return best;
}

template <class S>
void one_case(const char* name, char ta, char tb, std::int64_t M, std::int64_t N, std::int64_t K, int reps) {
  Matrix<S> a("A", ta == 'T' ? K : M, ta == 'T' ? M : K), b("B", tb == 'T' ? N : K, tb == 'T' ? K : N), c("C", M, N);
  Kokkos::Random_XorShift64_Pool<> pool(7);
  Kokkos::fill_random(a, pool, S(-1), S(1));
  Kokkos::fill_random(b, pool, S(-1), S(1));
  const Kokkos::DefaultExecutionSpace space;
  const double flops = 2.0 * double(M) * double(N) * double(K);
  const double mine = best_seconds(reps, [&] { fmattn::detail::dense_gemm(space, ta, tb, a, b, S(0), c); });
  const char na[2] = {ta, 0}, nb[2] = {tb, 0};
  const double blas = best_seconds(reps, [&] { KokkosBlas::gemm(na, nb, S(1), a, b, S(0), c); });
  std::printf("%-24s %6lld %6lld %6lld %10.1f %10.1f %8.0f%%\n", name, static_cast<long long>(M),
              static_cast<long long>(N), static_cast<long long>(K), flops / mine * 1e-9, flops / blas * 1e-9,
              100.0 * blas / mine);
}

template <class S>
void all_cases(std::int64_t rows, std::int64_t W, int reps) {
  std::printf("# %s, %s x%d\n", sizeof(S) == 4 ? "float" : "double", Kokkos::DefaultExecutionSpace::name(),
              Kokkos::DefaultExecutionSpace().concurrency());
  std::printf("%-24s %6s %6s %6s %10s %10s %9s\n", "product", "M", "N", "K", "fmattn", "BLAS", "of BLAS");
  one_case<S>("x*Wq (NN)", 'N', 'N', rows, W, W, reps);
  one_case<S>("a*W1 (NN)", 'N', 'N', rows, 4 * W, W, reps);
  one_case<S>("g*W2 (NN)", 'N', 'N', rows, W, 4 * W, reps);
  one_case<S>("logits f*E^T (NT)", 'N', 'T', rows, 256, W, reps);
  one_case<S>("dx*W2^T (NT)", 'N', 'T', rows, 4 * W, W, reps);
  one_case<S>("dW1 = a^T*dg (TN)", 'T', 'N', W, 4 * W, rows, reps);
  one_case<S>("dWq = a^T*dq (TN)", 'T', 'N', W, W, rows, reps);
  one_case<S>("square (NN)", 'N', 'N', 2048, 2048, 2048, reps);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--help") == 0) {
      std::printf("usage: fmattn_dense_gemm [--rows 8192] [--width 256] [--reps 5] [--dtype float|double]\n");
      return 0;
    }
  Kokkos::initialize(argc, argv);
  {
    std::int64_t rows = 8192, width = 256;
    int reps = 5;
    std::string dtype = "float";
    for (int i = 1; i + 1 < argc; ++i) {
      const std::string k = argv[i];
      if (k == "--rows") rows = std::stoll(argv[i + 1]);
      if (k == "--width") width = std::stoll(argv[i + 1]);
      if (k == "--reps") reps = std::stoi(argv[i + 1]);
      if (k == "--dtype") dtype = argv[i + 1];
    }
    if (dtype == "double")
      all_cases<double>(rows, width, reps);
    else
      all_cases<float>(rows, width, reps);
  }
  Kokkos::finalize();
  return 0;
}
