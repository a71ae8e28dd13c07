// Allocation of the large arrays (q, k, v, output, coarse levels): what a cold run pays before
// the kernels. On Linux the pages of host memory are 4 KiB unless asked otherwise, and first
// touching them costs about 2 s per GiB on a virtual machine (a fault per page), more than the
// attention itself at large n. Asking for transparent huge pages (2 MiB, honoured in the usual
// `madvise` THP mode) cuts the faults 512-fold; touching the pages in parallel with the
// execution space that computes on them places them with its threads (NUMA first touch).
#pragma once

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>
#include <type_traits>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fmattn::detail {

// Huge pages for the whole 2 MiB pages inside the view's host memory (nothing elsewhere).
template <class View>
void advise_huge_pages(const View& x) {
  if constexpr (std::is_same_v<typename View::memory_space, Kokkos::HostSpace>) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const std::size_t bytes = x.span() * sizeof(typename View::non_const_value_type);
    constexpr std::size_t huge = std::size_t(2) << 20;
    const auto begin = reinterpret_cast<std::uintptr_t>(x.data());
    const std::uintptr_t first = (begin + huge - 1) / huge * huge, last = (begin + bytes) / huge * huge;
    // Advice only: where THP is off or unsupported the pages stay small and nothing fails.
    if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
  }
}

// Huge pages, then one write per 4 KiB page by `space`, the execution space that will compute
// on the view. Contents are unspecified afterwards (zeros or old data).
template <class ExecSpace, class View>
void place_pages(const ExecSpace& space, const View& x) {
  if constexpr (std::is_same_v<typename View::memory_space, Kokkos::HostSpace>) {
    using Scalar = typename View::non_const_value_type;
    advise_huge_pages(x);
    constexpr std::int64_t per_page = std::int64_t(4096 / sizeof(Scalar));
    const std::int64_t pages = (std::int64_t(x.span()) + per_page - 1) / per_page;
    Scalar* data = x.data();
    Kokkos::parallel_for(
        "fmattn::allocation::first_touch",
        Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(space, 0, pages),
        KOKKOS_LAMBDA(const std::int64_t page) { data[page * per_page] = Scalar(0); });
    space.fence();
  }
}

// An uninitialised view of the given extents, allocated for `space`, with its pages placed.
template <class View, class ExecSpace, class... Extents>
View allocate(const ExecSpace& space, const std::string& label, Extents... extents) {
  View x(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, label), extents...);
  place_pages(space, x);
  return x;
}

// The same, zero-filled by `space`: the parallel fill itself first touches the pages.
template <class View, class ExecSpace, class... Extents>
View allocate_zeroed(const ExecSpace& space, const std::string& label, Extents... extents) {
  View x(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, label), extents...);
  advise_huge_pages(x);
  Kokkos::deep_copy(space, x, typename View::non_const_value_type(0));
  space.fence();
  return x;
}

}  // namespace fmattn::detail
