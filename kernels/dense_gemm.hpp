// The language model's dense products, C = op(A)·op(B) + beta·C, on fmattn's own register-blocked
// GEMM for host execution spaces. Why not BLAS: an optimised BLAS picks its micro-kernels for the
// CPU at run time and splits the work by its thread count, and both change how each element's
// sum is rounded (OpenBLAS' Haswell and Zen kernels give other bits at 1 and 2 threads), so a
// model would train to bits that depend on the machine; a threaded BLAS also starts a thread
// pool of its own next to Kokkos'. Here every element is summed over k in increasing order,
//   acc = beta·C;  acc = acc + A(i, k)·B(k, j)  for k = 0, 1, …, K − 1,
// one multiply-add at a time in its own vector lane, whatever the thread count, the blocking,
// the tile an element falls in or the vector width: the same bits on every CPU that runs the
// same binary (and on AVX2 and AVX-512 builds alike, both contracting to fused multiply-adds).
// The blocking is Goto's: a team packs a KC-deep slab of an MC × NC tile of op(A) and op(B)
// into scratch (zero-padded to whole register blocks), and NR × CB register blocks of C are
// summed over it with accumulate_block, the attention tiles' micro-kernel. Across slabs the
// accumulators go through C exactly (a stored float is the float), so slabs do not change the
// order. Device spaces take KokkosBlas::gemm (cuBLAS, rocBLAS), deterministic on one GPU model.
#pragma once

#include "kernels/tile_products.hpp"

#include <KokkosBlas3_gemm.hpp>
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace fmattn::detail {

// Up to this many rows of C, B is read in place (few_rows_gemm) rather than packed.
inline constexpr std::int64_t few_rows = 16;

template <class Scalar>
struct GemmShape {
  // 6 rows × two vector registers of columns: 12 accumulators, two loads of B and a broadcast
  // of A per step, 15 of AVX2's 16 registers (AVX-512: 15 of 32, with twice the columns).
  static constexpr int rows = 6;
#if defined(__AVX512F__)
  static constexpr int cols = int(128 / sizeof(Scalar));
#else
  static constexpr int cols = int(64 / sizeof(Scalar));
#endif
  static constexpr int depth = 256;            // KC: a packed B block (KC × cols) stays in L1
  static constexpr int tile_rows = 32 * rows;  // MC: a packed A slab stays in L2
  // Up to twice MC rows make one tile row (the weight gradients' M = width): then the long
  // operand, K × N, is streamed from memory once rather than once per tile row.
  static constexpr int single_tile_rows = 2 * tile_rows;
  static constexpr int col_blocks = 16;     // NC = 16 · cols: with MC, some 200 FLOPs per packed value
  static constexpr int min_col_blocks = 4;  // the narrowest tile made to give threads tiles of their own
};

template <class Exec, bool TransA, bool TransB, class AView, class BView, class CView>
struct DenseGemm {
  using S = typename CView::non_const_value_type;
  using Shape = GemmShape<S>;
  static constexpr int NR = Shape::rows, CB = Shape::cols, KC = Shape::depth, MC = Shape::tile_rows;
  using Policy = Kokkos::TeamPolicy<Exec, Kokkos::Schedule<Kokkos::Dynamic>>;
  using Scratch = Kokkos::View<S*, typename Exec::scratch_memory_space, Kokkos::MemoryUnmanaged>;

  AView a;
  BView b;
  CView c;
  S beta;
  std::int64_t M, N, K;
  int mc;  // rows of a tile, a multiple of NR
  int nc;  // columns of a tile, a multiple of CB
  std::int64_t tiles_n;

  DenseGemm(AView a_, BView b_, CView c_, S beta_, std::int64_t M_, std::int64_t N_, std::int64_t K_, int threads)
      : a(std::move(a_)), b(std::move(b_)), c(std::move(c_)), beta(beta_), M(M_), N(N_), K(K_) {
    mc = M <= Shape::single_tile_rows ? int((M + NR - 1) / NR * NR) : MC;
    const std::int64_t blocks = (N + CB - 1) / CB, tiles_m = (M + mc - 1) / mc;
    std::int64_t per_tile = blocks < Shape::col_blocks ? blocks : Shape::col_blocks;
    // Fewer tiles than threads (the weight gradients, M = width): narrower tiles, down to
    // Shape::min_col_blocks, so that each thread packs and sums a tile of its own; beyond that,
    // teams share tiles.
    if (tiles_m * ((blocks + per_tile - 1) / per_tile) < threads) {
      const std::int64_t want = (threads + tiles_m - 1) / tiles_m;
      per_tile = std::min(per_tile, std::max<std::int64_t>(Shape::min_col_blocks, (blocks + want - 1) / want));
    }
    nc = int(per_tile) * CB;
    tiles_n = (N + nc - 1) / nc;
  }
  std::int64_t tiles() const { return (M + mc - 1) / mc * tiles_n; }
  std::size_t scratch_bytes() const { return Scratch::shmem_size(std::size_t(mc) * KC + std::size_t(KC) * nc); }

  // Row block g of A's slab: pa[(g·kc + k)·NR + r] = op(A)(i0 + g·NR + r, k0 + k), zero past
  // the tile's rows.
  void pack_a(S* pa, std::int64_t i0, int rows, std::int64_t k0, int kc, int g) const {
    const std::int64_t s0 = std::int64_t(a.stride(0)), s1 = std::int64_t(a.stride(1));
    S* out = pa + std::size_t(g) * kc * NR;
    if (TransA) {  // op(A)(i, k) = a(k, i): a block's NR values of one k lie together
      const S* src = a.data() + k0 * s0 + (i0 + std::int64_t(g) * NR) * s1;
      const bool whole = (g + 1) * NR <= rows && s1 == 1;
      for (int k = 0; k < kc; ++k)
        for (int r = 0; r < NR; ++r) out[k * NR + r] = whole || g * NR + r < rows ? src[k * s0 + r * s1] : S(0);
    } else {  // one row at a time, read along k
      for (int r = 0; r < NR; ++r) {
        const S* src = a.data() + (i0 + std::int64_t(g) * NR + r) * s0 + k0 * s1;
        const bool inside = g * NR + r < rows;
        for (int k = 0; k < kc; ++k) out[k * NR + r] = inside ? src[k * s1] : S(0);
      }
    }
  }

  // Column block h of B's slab: pb[(h·kc + k)·CB + x] = op(B)(k0 + k, j0 + h·CB + x), zero past
  // the tile's columns.
  void pack_b(S* pb, std::int64_t j0, int cols, std::int64_t k0, int kc, int h) const {
    const std::int64_t s0 = std::int64_t(b.stride(0)), s1 = std::int64_t(b.stride(1));
    S* out = pb + std::size_t(h) * kc * CB;
    const int jn = cols - h * CB < CB ? cols - h * CB : CB;
    if (!TransB) {  // op(B)(k, j) = b(k, j): rows of CB values, contiguous in a row-major B
      const S* src = b.data() + k0 * s0 + (j0 + std::int64_t(h) * CB) * s1;
      for (int k = 0; k < kc; ++k) {
        if (jn == CB && s1 == 1) {
          FMATTN_SIMD
          for (int x = 0; x < CB; ++x) out[k * CB + x] = src[k * s0 + x];
        } else {
          for (int x = 0; x < CB; ++x) out[k * CB + x] = x < jn ? src[k * s0 + x * s1] : S(0);
        }
      }
    } else {  // op(B)(k, j) = b(j, k): one column at a time, read along k
      for (int x = 0; x < CB; ++x) {
        const S* src = b.data() + (j0 + std::int64_t(h) * CB + x) * s0 + k0 * s1;
        for (int k = 0; k < kc; ++k) out[k * CB + x] = x < jn ? src[k * s1] : S(0);
      }
    }
  }

  // Depth k of the slabs, all of the tile's row and column blocks: a team packs a slab by its
  // depths, so that each thread reads whole rows of a row-major operand (K × M and K × N in the
  // weight gradients, streamed from memory) and every thread packs as much as any other.
  void pack_depth(S* pa, S* pb, std::int64_t i0, int rows, std::int64_t j0, int cols, std::int64_t k0, int kc,
                  int k) const {
    const int row_blocks = (rows + NR - 1) / NR, col_blocks = (cols + CB - 1) / CB;
    const std::int64_t as0 = std::int64_t(a.stride(0)), as1 = std::int64_t(a.stride(1));
    const std::int64_t as_i = TransA ? as1 : as0, as_k = TransA ? as0 : as1;
    const S* asrc = a.data() + (k0 + k) * as_k + i0 * as_i;
    int g = 0;
    if (as_i == 1)  // whole blocks of a contiguous row: NR values a block, no test per value
      for (; (g + 1) * NR <= rows; ++g)
        for (int r = 0; r < NR; ++r) pa[(std::size_t(g) * kc + k) * NR + r] = asrc[g * NR + r];
    for (; g < row_blocks; ++g)
      for (int r = 0; r < NR; ++r) {
        const int i = g * NR + r;
        pa[(std::size_t(g) * kc + k) * NR + r] = i < rows ? asrc[i * as_i] : S(0);
      }
    const std::int64_t bs0 = std::int64_t(b.stride(0)), bs1 = std::int64_t(b.stride(1));
    const std::int64_t bs_j = TransB ? bs0 : bs1, bs_k = TransB ? bs1 : bs0;
    const S* bsrc = b.data() + (k0 + k) * bs_k + j0 * bs_j;
    for (int h = 0; h < col_blocks; ++h) {
      S* out = pb + (std::size_t(h) * kc + k) * CB;
      const S* src = bsrc + std::int64_t(h) * CB * bs_j;
      if ((h + 1) * CB <= cols && bs_j == 1) {
        FMATTN_SIMD
        for (int x = 0; x < CB; ++x) out[x] = src[x];
      } else {
        for (int x = 0; x < CB; ++x) out[x] = h * CB + x < cols ? src[x * bs_j] : S(0);
      }
    }
  }

  // A team shares a tile's packed slabs: its threads pack the slab by depths, then each sums
  // some of the register blocks (the weight gradients, M = width and N = (4·)width over
  // K = windows·T rows, have few tiles). With many tiles the teams are single threads, which
  // pack by blocks.
  void operator()(const typename Policy::member_type& member) const {
    const std::int64_t i0 = member.league_rank() / tiles_n * mc, j0 = member.league_rank() % tiles_n * nc;
    const int rows = int(M - i0 < mc ? M - i0 : mc), cols = int(N - j0 < nc ? N - j0 : nc);
    const int row_blocks = (rows + NR - 1) / NR, col_blocks = (cols + CB - 1) / CB;
    const Scratch pa(member.team_scratch(1), std::size_t(mc) * KC), pb(member.team_scratch(1), std::size_t(KC) * nc);
    const std::int64_t cs0 = std::int64_t(c.stride(0)), cs1 = std::int64_t(c.stride(1));
    // K = 0 still passes once, to leave beta·C.
    for (std::int64_t k0 = 0; k0 < K || k0 == 0; k0 += KC) {
      const int kc = int(K - k0 < KC ? K - k0 : KC);
      if (member.team_size() > 1) {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(member, kc),
                             [&](const int k) { pack_depth(pa.data(), pb.data(), i0, rows, j0, cols, k0, kc, k); });
      } else {
        for (int g = 0; g < row_blocks; ++g) pack_a(pa.data(), i0, rows, k0, kc, g);
        for (int h = 0; h < col_blocks; ++h) pack_b(pb.data(), j0, cols, k0, kc, h);
      }
      member.team_barrier();
      // Consecutive register blocks (a thread's share) run down a column block: its packed B
      // block stays in cache.
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, row_blocks * col_blocks), [&](const int blk) {
        const int h = blk / row_blocks, g = blk % row_blocks;
        const int jn = cols - h * CB < CB ? cols - h * CB : CB, in = rows - g * NR < NR ? rows - g * NR : NR;
        S* out = c.data() + (i0 + std::int64_t(g) * NR) * cs0 + (j0 + std::int64_t(h) * CB) * cs1;
        S acc[NR][CB];
        for (int r = 0; r < NR; ++r) {
          FMATTN_SIMD
          for (int x = 0; x < CB; ++x) acc[r][x] = S(0);
          if (r >= in) continue;
          // The first slab starts from beta·C; later ones continue from C, which holds the
          // accumulators exactly.
          if ((k0 > 0 || beta == S(1)) && jn == CB && cs1 == 1) {
            FMATTN_SIMD
            for (int x = 0; x < CB; ++x) acc[r][x] = out[r * cs0 + x];
          } else if (k0 > 0 || beta == S(1)) {
            for (int x = 0; x < jn; ++x) acc[r][x] = out[r * cs0 + x * cs1];
          } else if (beta != S(0)) {
            for (int x = 0; x < jn; ++x) acc[r][x] = beta * out[r * cs0 + x * cs1];
          }
        }
        accumulate_block<NR, CB>(acc, pa.data() + std::size_t(g) * kc * NR, 1, NR, pb.data() + std::size_t(h) * kc * CB,
                                 CB, 0, kc);
        for (int r = 0; r < in; ++r) {
          if (jn == CB && cs1 == 1) {
            FMATTN_SIMD
            for (int x = 0; x < CB; ++x) out[r * cs0 + x] = acc[r][x];
          } else {
            for (int x = 0; x < jn; ++x) out[r * cs0 + x * cs1] = acc[r][x];
          }
        }
      });
      member.team_barrier();
    }
  }
};

// A few rows of C (decoding: a row per stream) with a row-major B read in place: the packed
// path would pack all of B and pad the rows to register blocks of 6 for them. Each thread takes
// a block of CB columns, 6 rows at a time and then the rest in one block, with the same
// accumulate_block and the same order over k from the same start: the bits of the packed path.
// Rows i0 .. i0 + R − 1 and columns j0 .. j0 + jn − 1 of C over all of K; Full: jn = CB. A full
// block is an instantiation of its own, so that no loop with a run-time bound indexes its
// accumulators (which would keep them in memory rather than in registers).
template <int R, bool Full, class AView, class BView, class CView, class S>
KOKKOS_INLINE_FUNCTION void rows_block(const AView& a, const BView& b, const CView& c, S beta, std::int64_t i0,
                                       std::int64_t j0, int jn, std::int64_t ars, std::int64_t acs, std::int64_t brs,
                                       std::int64_t K) {
  constexpr int CB = GemmShape<S>::cols;
  const int w = Full ? CB : jn;
  S acc[R][CB];
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < CB; ++x) {
      const S cx = x < w ? c(i0 + r, j0 + x) : S(0);
      acc[r][x] = beta == S(1) ? cx : beta == S(0) ? S(0) : beta * cx;
    }
  const S* arow = a.data() + i0 * ars;
  if constexpr (Full)
    accumulate_block<R, CB>(acc, arow, ars, acs, b.data() + j0, brs, 0, int(K));
  else
    accumulate_block_tail<R, CB>(acc, arow, ars, acs, b.data() + j0, brs, 0, int(K), jn);
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < w; ++x) c(i0 + r, j0 + x) = acc[r][x];
}

// The last `rows` (< R + 1) rows from i0 in one block of that many.
template <int R, bool Full, class AView, class BView, class CView, class S>
KOKKOS_INLINE_FUNCTION void rest_block(const AView& a, const BView& b, const CView& c, S beta, std::int64_t i0,
                                       int rows, std::int64_t j0, int jn, std::int64_t ars, std::int64_t acs,
                                       std::int64_t brs, std::int64_t K) {
  if (rows == R)
    rows_block<R, Full>(a, b, c, beta, i0, j0, jn, ars, acs, brs, K);
  else if constexpr (R > 1)
    rest_block<R - 1, Full>(a, b, c, beta, i0, rows, j0, jn, ars, acs, brs, K);
}

// All M rows of one block of columns.
template <bool Full, class AView, class BView, class CView, class S>
KOKKOS_INLINE_FUNCTION void column_block(const AView& a, const BView& b, const CView& c, S beta, std::int64_t M,
                                         std::int64_t j0, int jn, std::int64_t ars, std::int64_t acs, std::int64_t brs,
                                         std::int64_t K) {
  constexpr int NR = GemmShape<S>::rows;
  std::int64_t i = 0;
  for (; i + NR <= M; i += NR) rows_block<NR, Full>(a, b, c, beta, i, j0, jn, ars, acs, brs, K);
  rest_block<NR - 1, Full>(a, b, c, beta, i, int(M - i), j0, jn, ars, acs, brs, K);
}

template <class Exec, bool TransA, class AView, class BView, class CView>
void few_rows_gemm(const Exec& space, const AView& a, const BView& b, typename CView::non_const_value_type beta,
                   const CView& c, std::int64_t M, std::int64_t N, std::int64_t K) {
  using S = typename CView::non_const_value_type;
  constexpr int CB = GemmShape<S>::cols;
  const std::int64_t acs = std::int64_t(TransA ? a.stride(0) : a.stride(1));
  const std::int64_t ars = std::int64_t(TransA ? a.stride(1) : a.stride(0)), brs = std::int64_t(b.stride(0));
  Kokkos::parallel_for(
      "fmattn::lm::gemm_few_rows",
      Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(space, 0, (N + CB - 1) / CB),
      KOKKOS_LAMBDA(const std::int64_t h) {
        const std::int64_t j0 = h * CB;
        const int jn = N - j0 < CB ? int(N - j0) : CB;
        if (jn == CB)
          column_block<true>(a, b, c, beta, M, j0, jn, ars, acs, brs, K);
        else
          column_block<false>(a, b, c, beta, M, j0, jn, ars, acs, brs, K);
      });
}

// C = op(A)·op(B) + beta·C; op(X) = Xᵀ where trans_x is 'T'. Shapes must agree (checked).
template <class Exec, class AView, class BView, class CView>
void dense_gemm(const Exec& space, char trans_a, char trans_b, const AView& a, const BView& b,
                typename CView::non_const_value_type beta, const CView& c) {
  using S = typename CView::non_const_value_type;
  const bool ta = trans_a == 'T', tb = trans_b == 'T';
  const std::int64_t M = c.extent(0), N = c.extent(1), K = ta ? a.extent(0) : a.extent(1);
  if ((ta ? a.extent(1) : a.extent(0)) != std::size_t(M) || (tb ? b.extent(0) : b.extent(1)) != std::size_t(N) ||
      (tb ? b.extent(1) : b.extent(0)) != std::size_t(K))
    throw std::invalid_argument("fmattn::dense_gemm: the shapes of A, B and C do not agree");
  if constexpr (!Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename Exec::memory_space>::accessible) {
    const char na[2] = {trans_a, 0}, nb[2] = {trans_b, 0};
    KokkosBlas::gemm(na, nb, S(1), a, b, beta, c);
  } else {
    if (M == 0 || N == 0) return;
    if (M <= few_rows && !tb && b.stride(1) == 1 && K <= std::int64_t(1) << 30) {
      ta ? few_rows_gemm<Exec, true>(space, a, b, beta, c, M, N, K)
         : few_rows_gemm<Exec, false>(space, a, b, beta, c, M, N, K);
      return;
    }
    auto launch = [&](auto ta_c, auto tb_c) {
      using F = DenseGemm<Exec, decltype(ta_c)::value, decltype(tb_c)::value, AView, BView, CView>;
      const F f(a, b, c, beta, M, N, K, space.concurrency());
      const int most = typename F::Policy(space, 1, 1).team_size_max(f, Kokkos::ParallelForTag());
      // A tile a thread (no barriers) where there are enough; else teams share tiles' packed
      // slabs, all threads busy. The bits are the same either way.
      const int threads = f.tiles() >= space.concurrency() ? 1 : std::min(most, int(space.concurrency() / f.tiles()));
      Kokkos::parallel_for(
          "fmattn::lm::gemm",
          typename F::Policy(space, int(f.tiles()), threads).set_scratch_size(1, Kokkos::PerTeam(f.scratch_bytes())),
          f);
    };
    using T = std::true_type;
    using F = std::false_type;
    if (ta)
      tb ? launch(T{}, T{}) : launch(T{}, F{});
    else
      tb ? launch(F{}, T{}) : launch(F{}, F{});
  }
}

}  // namespace fmattn::detail
