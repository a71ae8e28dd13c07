// What `fmattn info` says about dense linear algebra: fmattn's own products, and the BLAS on
// this machine that the benchmarks' GEMM ceiling (Kokkos Kernels) uses, with its kernel set and
// threading (an OpenBLAS picks its kernels for the CPU when it loads, OPENBLAS_CORETYPE overrides).
#pragma once

#include <string>

namespace fmattn {

std::string dense_products_info();

}  // namespace fmattn
