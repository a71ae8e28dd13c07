// A loop hint for the host compilers: the loop that follows has independent iterations and
// should be vectorized (register-blocked micro-kernels rely on it). No effect on device code.
#pragma once

// `omp simd` needs only -fopenmp-simd (set by fmattn's CMake for GCC and Clang), not the
// OpenMP runtime, so Serial builds vectorize the same loops as OpenMP builds.
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
#define FMATTN_SIMD
#elif defined(_OPENMP) || defined(__GNUC__) || defined(__clang__)
#define FMATTN_SIMD _Pragma("omp simd")
#else
#define FMATTN_SIMD
#endif
