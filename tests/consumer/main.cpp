// The smallest user of the installed library: a causal FMA forward pass on two heads through
// fmattn::Attention, checked to be finite and, since every output row is a convex combination of
// (averaged) value rows, within the range of the values. Exit 0 when it is.
#include <fmattn/core/attention.hpp>
#include <fmattn/core/geometry.hpp>

#include <mpi.h>
#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>

namespace {

int forward_pass() {
  using Attention = fmattn::Attention<double>;
  const std::int64_t heads = 2, n = 300;
  const int d = 8;
  const fmattn::Geometry g = fmattn::make_geometry(n, 16, 4, fmattn::Variant::causal);
  fmattn::AttentionOptions options;
  options.scale = 1.0 / std::sqrt(double(d));
  Attention attention(g, options, d, heads);

  Attention::Tensor q("q", heads, n, d), k("k", heads, n, d), v("v", heads, n, d), out("out", heads, n, d);
  auto qh = Kokkos::create_mirror_view(q), kh = Kokkos::create_mirror_view(k), vh = Kokkos::create_mirror_view(v);
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t i = 0; i < n; ++i)
      for (int c = 0; c < d; ++c) {
        qh(h, i, c) = std::sin(0.1 * double(i) + c + h);
        kh(h, i, c) = std::cos(0.07 * double(i) - c);
        vh(h, i, c) = std::sin(0.013 * double(i * (c + 1)) + h);
      }
  Kokkos::deep_copy(q, qh);
  Kokkos::deep_copy(k, kh);
  Kokkos::deep_copy(v, vh);

  attention.forward(q, k, v, out);
  auto oh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out);

  std::int64_t bad = 0;
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t i = 0; i < n; ++i)
      for (int c = 0; c < d; ++c)
        if (!std::isfinite(oh(h, i, c)) || std::abs(oh(h, i, c)) > 1.0 + 1e-12) ++bad;
  std::printf("fmattn consumer: %lld heads x %lld tokens x %d, %d coarse levels, %s: %lld bad values\n",
              (long long)heads, (long long)n, d, g.L, Kokkos::DefaultExecutionSpace::name(), (long long)bad);
  return bad == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  int code = 1;
  try {
    code = forward_pass();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fmattn consumer: error: %s\n", e.what());
  }
  Kokkos::finalize();
  MPI_Finalize();
  return code;
}
