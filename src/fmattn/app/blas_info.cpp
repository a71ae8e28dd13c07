#include <fmattn/app/blas_info.hpp>

#include "kernels/dense_gemm.hpp"

#include <dlfcn.h>

namespace fmattn {

namespace {

// OpenBLAS, loaded for the question only: fmattn itself links no BLAS (a pthreads OpenBLAS
// would start a thread pool next to Kokkos' just by being loaded).
std::string openblas_info() {
  void* lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return "no OpenBLAS found (libopenblas.so.0)";
  using Text = char* (*)();
  using Number = int (*)();
  const auto config = reinterpret_cast<Text>(dlsym(lib, "openblas_get_config"));
  const auto core = reinterpret_cast<Text>(dlsym(lib, "openblas_get_corename"));
  const auto parallel = reinterpret_cast<Number>(dlsym(lib, "openblas_get_parallel"));
  const auto threads = reinterpret_cast<Number>(dlsym(lib, "openblas_get_num_threads"));
  std::string s = config ? config() : "OpenBLAS";
  if (core) s += "; kernel set " + std::string(core());
  if (parallel) {
    const int p = parallel();
    s += p == 0 ? "; sequential build" : p == 1 ? "; pthreads build" : "; OpenMP build";
  }
  if (threads) s += ", " + std::to_string(threads()) + " threads";
  dlclose(lib);
  return s;
}

}  // namespace

std::string dense_products_info() {
  using Shape = detail::GemmShape<float>;
  std::string s =
      "dense products (fmattn train/eval): fmattn's own GEMM in Kokkos' threads, each element summed in one "
      "fixed order (the same bits for any thread count and CPU kernel set), register blocks " +
      std::to_string(Shape::rows) + " x " + std::to_string(Shape::cols) + " floats\n";
  s += "BLAS (the benchmarks' GEMM ceiling, through Kokkos Kernels): " + openblas_info() + "\n";
  return s;
}

}  // namespace fmattn
