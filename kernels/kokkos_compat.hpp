// The few Kokkos spellings that changed between 3.4 (Debian) and 4.x (clusters).
#pragma once

#include <Kokkos_Core.hpp>

namespace fmattn::compat {

#if KOKKOS_VERSION >= 30700
using Kokkos::exp;
using Kokkos::log;
using Kokkos::sqrt;
using Kokkos::sin;
using Kokkos::cos;
#else
using Kokkos::Experimental::exp;
using Kokkos::Experimental::log;
using Kokkos::Experimental::sqrt;
using Kokkos::Experimental::sin;
using Kokkos::Experimental::cos;
#endif

}  // namespace fmattn::compat
