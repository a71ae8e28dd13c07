// A loop hint for the host compilers: the loop that follows has independent iterations and
// should be vectorized (register-blocked micro-kernels rely on it). No effect on device code.
#pragma once

// `omp simd` needs only -fopenmp-simd (set by fmattn's CMake for GCC and Clang), not the
// OpenMP runtime, so Serial builds vectorize the same loops as OpenMP builds.
// FMATTN_SIMD_SUM: the same for a loop that accumulates into a variable named `sum` (the
// vector lanes' partial sums are combined in a fixed order, so results stay deterministic).
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
#define FMATTN_SIMD
#define FMATTN_SIMD_SUM
#elif defined(_OPENMP) || defined(__GNUC__) || defined(__clang__)
#define FMATTN_SIMD _Pragma("omp simd")
#define FMATTN_SIMD_SUM _Pragma("omp simd reduction(+ : sum)")
#else
#define FMATTN_SIMD
#define FMATTN_SIMD_SUM
#endif

// FMATTN_UNROLL: unroll the loop that follows completely; for the loops that move a register
// block's accumulators between memory and registers. Left as loops (even under `omp simd`), GCC
// spills the accumulators to the stack after the contraction and copies them out in 16-byte
// pieces, about a tenth of a tile's time on AVX2; unrolled, the stores come straight from the
// registers. Device code has no such blocks.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define FMATTN_UNROLL
#elif defined(__clang__)
#define FMATTN_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define FMATTN_UNROLL _Pragma("GCC unroll 64")
#else
#define FMATTN_UNROLL
#endif
