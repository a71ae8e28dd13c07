// A profiling region for kokkos-tools around each public entry point (Kokkos 3.4 lacks
// Kokkos::Profiling::ScopedRegion).
#pragma once

#include <Kokkos_Core.hpp>

#include <string>

namespace fmattn {

class ScopedRegion {
 public:
  explicit ScopedRegion(const std::string& name) { Kokkos::Profiling::pushRegion(name); }
  ~ScopedRegion() { Kokkos::Profiling::popRegion(); }
  ScopedRegion(const ScopedRegion&) = delete;
  ScopedRegion& operator=(const ScopedRegion&) = delete;
};

}  // namespace fmattn
