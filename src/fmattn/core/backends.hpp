// The execution spaces fmattn's library is compiled for: every backend of the Kokkos build
// among Serial, OpenMP, Threads, CUDA and HIP (Kokkos' default space is always one of them
// in a supported build). FMATTN_FOR_EACH_BACKEND(M) expands M(space) once per backend.
#pragma once

#include <Kokkos_Core.hpp>

#if defined(KOKKOS_ENABLE_SERIAL)
#define FMATTN_BACKEND_SERIAL(M) M(Kokkos::Serial)
#else
#define FMATTN_BACKEND_SERIAL(M)
#endif
#if defined(KOKKOS_ENABLE_OPENMP)
#define FMATTN_BACKEND_OPENMP(M) M(Kokkos::OpenMP)
#else
#define FMATTN_BACKEND_OPENMP(M)
#endif
#if defined(KOKKOS_ENABLE_THREADS)
#define FMATTN_BACKEND_THREADS(M) M(Kokkos::Threads)
#else
#define FMATTN_BACKEND_THREADS(M)
#endif
#if defined(KOKKOS_ENABLE_CUDA)
#define FMATTN_BACKEND_CUDA(M) M(Kokkos::Cuda)
#else
#define FMATTN_BACKEND_CUDA(M)
#endif
#if defined(KOKKOS_ENABLE_HIP) && KOKKOS_VERSION >= 40000
#define FMATTN_BACKEND_HIP(M) M(Kokkos::HIP)
#elif defined(KOKKOS_ENABLE_HIP)
#define FMATTN_BACKEND_HIP(M) M(Kokkos::Experimental::HIP)
#else
#define FMATTN_BACKEND_HIP(M)
#endif

#define FMATTN_FOR_EACH_BACKEND(M) \
  FMATTN_BACKEND_SERIAL(M)         \
  FMATTN_BACKEND_OPENMP(M)         \
  FMATTN_BACKEND_THREADS(M)        \
  FMATTN_BACKEND_CUDA(M)           \
  FMATTN_BACKEND_HIP(M)
