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
