// A loop hint for the host compilers: the loop that follows has independent iterations and
// should be vectorized (register-blocked micro-kernels rely on it). No effect on device code.
#pragma once

#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
#define FMATTN_SIMD
#elif defined(_OPENMP)
#define FMATTN_SIMD _Pragma("omp simd")
#elif defined(__GNUC__)
#define FMATTN_SIMD _Pragma("GCC ivdep")
#else
#define FMATTN_SIMD
#endif
