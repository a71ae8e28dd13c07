// fmattn_tile_gemm: the small matrix product at the heart of a query tile — S^T = K·(sQ)^T for a
// Tk × Tq tile over d channels — computed by the tile kernel's hand register-blocked code and by
// Kokkos Kernels' KokkosBatched::SerialGemm (blocked and unblocked algorithms), on one thread,
// on data resident in cache, plus the kernel's second product P·V. It decides which one the tile
// kernel uses and how large its register blocks are.
//   fmattn_tile_gemm [--d 64] [--reps 20000]
#include <fmattn/util/log.hpp>
#include "kernels/attention_tiles.hpp"
#include "kernels/tile_products.hpp"

#include <KokkosBatched_Gemm_Decl.hpp>
#include <KokkosBatched_Gemm_Serial_Impl.hpp>
#include <Kokkos_Core.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace {

using Exec = Kokkos::DefaultHostExecutionSpace;
using Tiles = fmattn::detail::AttentionTiles<Exec, float>;
using Host2 = Kokkos::View<float**, Kokkos::LayoutRight, Kokkos::HostSpace, Kokkos::MemoryUnmanaged>;

template <class F>
double gflops(int reps, double flops, F&& f) {
  f();
  fmattn::Stopwatch w;
  for (int r = 0; r < reps; ++r) f();
  return flops * reps / w.seconds() * 1e-9;
}

}  // namespace

// Every row of the tile contracts over all Tk slots (a functor: the product is a host and device
// function, and a host lambda may not be called from one).
struct WholeChunk {
  int len;
  KOKKOS_INLINE_FUNCTION Kokkos::pair<int, int> operator()(int, int) const { return {0, len}; }
};

int main(int argc, char** argv) {
  Kokkos::initialize(argc, argv);
  {
    int d = 64, reps = 20000;
    for (int i = 1; i + 1 < argc; ++i) {
      if (std::string(argv[i]) == "--d") d = std::stoi(argv[i + 1]);
      if (std::string(argv[i]) == "--reps") reps = std::stoi(argv[i + 1]);
    }
    constexpr int Tq = Tiles::Tq, Tk = Tiles::Tk;
    std::vector<float> k(Tk * d), qt(d * Tiles::LQ), st(Tk * Tiles::LQ), logw(Tk, 0.0f);
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = float(i % 17) * 0.01f;
    for (std::size_t i = 0; i < qt.size(); ++i) qt[i] = float(i % 13) * 0.02f;
    const double flops = 2.0 * Tk * Tq * d;

    // The tile kernel's own score blocks, exactly as process_chunk calls them.
    typename Tiles::Tile t;
    t.qt = typename Tiles::Mat(qt.data(), d, Tiles::LQ);
    t.st = typename Tiles::Mat(st.data(), Tk, Tiles::LQ);
    t.logw = typename Tiles::Vec(logw.data(), Tk);
    // Key (and value) rows as the kernel stages them: padded to ld.
    const int ld = Tiles::row_length(d);
    std::vector<float> kp(std::size_t(Tk) * ld, 0.0f);
    for (int c = 0; c < Tk; ++c)
      for (int x = 0; x < d; ++x) kp[std::size_t(c) * ld + x] = k[std::size_t(c) * d + x];
    const typename Tiles::Chunk ch{kp.data(), kp.data(), ld, ld, Tk, false, 0};
    const double hand = gflops(reps, flops, [&] {
      for (int r0 = 0; r0 < Tq; r0 += Tiles::CB)
        fmattn::detail::lane_blocks<Tiles::KB, Tiles::CB>(&t.st(0, r0), Tiles::LQ, &t.logw(0), ch.kbase, ch.kstride,
                                                          &t.qt(0, r0), Tiles::LQ, d, 0, Tk);
    });
    // The other product of a chunk, acc[Tq][d] = acc·rescale + P·V, as process_chunk calls it.
    std::vector<float> acc(Tq * ld, 0.0f), rescale(Tq, 1.0f);
    t.acc = typename Tiles::Mat(acc.data(), Tq, ld);
    t.rescale = typename Tiles::Vec(rescale.data(), Tq);
    t.rows = Tq;
    const double value = gflops(reps, flops, [&] {
      for (int r0 = 0; r0 < Tq; r0 += Tiles::RB)
        fmattn::detail::row_blocks<Tiles::RB, Tiles::CB>(&t.acc(0, 0), ld, &t.rescale(0), &t.st(0, 0), 1, Tiles::LQ,
                                                         ch.vbase, ch.vstride, d, true, r0,
                                                         r0 + Tiles::RB < Tq ? r0 + Tiles::RB : Tq, WholeChunk{Tk});
    });

    const Host2 A(k.data(), Tk, d), B(qt.data(), d, Tq), C(st.data(), Tk, Tq);
    using namespace KokkosBatched;
    const double blocked = gflops(reps, flops, [&] {
      SerialGemm<Trans::NoTranspose, Trans::NoTranspose, Algo::Gemm::Blocked>::invoke(1.0f, A, B, 0.0f, C);
    });
    const double unblocked = gflops(reps, flops, [&] {
      SerialGemm<Trans::NoTranspose, Trans::NoTranspose, Algo::Gemm::Unblocked>::invoke(1.0f, A, B, 0.0f, C);
    });
    std::printf("# tile product S^T[%d][%d] = K[%d][%d] * Q^T[%d][%d], float, one thread, in cache\n", Tk, Tq, Tk, d, d,
                Tq);
    std::printf("%-34s %10s\n", "implementation", "GFLOP/s");
    std::printf("%-34s %10.2f\n", "hand register-blocked (tile kernel)", hand);
    std::printf("%-34s %10.2f\n", "  its P*V product (acc += P*V)", value);
    std::printf("%-34s %10.2f\n", "KokkosBatched::SerialGemm Blocked", blocked);
    std::printf("%-34s %10.2f\n", "KokkosBatched::SerialGemm Unblocked", unblocked);
  }
  Kokkos::finalize();
  return 0;
}
