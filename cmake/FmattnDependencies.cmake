# Finds fmattn's dependencies and papers over the known defects of Debian's Kokkos 3.4
# packages (see README "Building against an existing Kokkos").

find_package(Kokkos REQUIRED)

# Debian's Kokkos::kokkos points its include directory at a path that does not exist; point it
# at the directory that really holds Kokkos_Core.hpp.
get_target_property(_fmattn_kokkos_inc Kokkos::kokkos INTERFACE_INCLUDE_DIRECTORIES)
set(_fmattn_inc_ok TRUE)
foreach(_dir IN LISTS _fmattn_kokkos_inc)
  if(NOT _dir MATCHES "^\\$<" AND NOT EXISTS "${_dir}")
    set(_fmattn_inc_ok FALSE)
  endif()
endforeach()
if(NOT _fmattn_inc_ok)
  find_path(FMATTN_KOKKOS_INCLUDE_DIR Kokkos_Core.hpp PATHS /usr/include/trilinos REQUIRED)
  set_target_properties(Kokkos::kokkos PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${FMATTN_KOKKOS_INCLUDE_DIR}")
  message(STATUS "fmattn: fixed Kokkos::kokkos include directory -> ${FMATTN_KOKKOS_INCLUDE_DIR}")
endif()

# Kokkos Kernels (required: the language model's dense products are its GEMM): the standalone package exports Kokkos::kokkoskernels; Debian's exports only trilinos_kokkoskernels
# and has no version file. Only a Kokkos Kernels built for the Kokkos in use is accepted: with a
# Kokkos 4 prefix and Debian's Kokkos Kernels (built for 3.4) still installed, a library search
# alone would pair the two, and its headers do not compile against Kokkos 4.
# A Kokkos Kernels installed next to the Kokkos in use is looked for first: Debian's (built into
# its own Trilinos Kokkos) would otherwise be found on the default paths and load a second
# Kokkos core into the process.
get_filename_component(_fmattn_kokkos_prefix "${Kokkos_DIR}/../../.." ABSOLUTE)
if(NOT DEFINED KokkosKernels_DIR AND NOT DEFINED KokkosKernels_ROOT AND NOT DEFINED ENV{KokkosKernels_ROOT})
  find_package(KokkosKernels QUIET PATHS "${_fmattn_kokkos_prefix}" NO_DEFAULT_PATH)
endif()
find_package(KokkosKernels QUIET)
if(KokkosKernels_DIR MATCHES "/cmake/KokkosKernels$" AND TARGET trilinos_kokkoskernels)
  get_filename_component(_fmattn_kk_cmake "${KokkosKernels_DIR}" DIRECTORY)
  get_filename_component(_fmattn_kokkos_cmake "${Kokkos_DIR}" DIRECTORY)
  if(NOT _fmattn_kk_cmake STREQUAL _fmattn_kokkos_cmake)
    message(FATAL_ERROR "fmattn: the Kokkos Kernels found (${KokkosKernels_DIR}) is Debian's, built for Debian's "
      "Kokkos, but Kokkos comes from ${Kokkos_DIR}: both Kokkos cores would be loaded. Set KokkosKernels_ROOT to a "
      "Kokkos Kernels built for this Kokkos (scripts/setup.sh builds a matching pair).")
  endif()
endif()
if(NOT TARGET Kokkos::kokkoskernels)
  if(TARGET trilinos_kokkoskernels)
    add_library(Kokkos::kokkoskernels INTERFACE IMPORTED)
    target_link_libraries(Kokkos::kokkoskernels INTERFACE trilinos_kokkoskernels)
  else()
    find_library(FMATTN_KK_LIB NAMES kokkoskernels trilinos_kokkoskernels)
    if(FMATTN_KK_LIB)
      add_library(Kokkos::kokkoskernels INTERFACE IMPORTED)
      target_link_libraries(Kokkos::kokkoskernels INTERFACE "${FMATTN_KK_LIB}" Kokkos::kokkos)
    endif()
  endif()
endif()
set(FMATTN_HAS_KOKKOSKERNELS FALSE)
if(TARGET Kokkos::kokkoskernels)
  # The check is cached per Kokkos version and library, so pointing Kokkos_ROOT elsewhere
  # checks again.
  get_target_property(_fmattn_kk_links Kokkos::kokkoskernels INTERFACE_LINK_LIBRARIES)
  string(MAKE_C_IDENTIFIER "FMATTN_KK_MATCHES_${Kokkos_VERSION}_${_fmattn_kk_links}" _fmattn_kk_check)
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_LIBRARIES Kokkos::kokkoskernels Kokkos::kokkos)
  set(CMAKE_REQUIRED_QUIET ON)
  check_cxx_source_compiles("
#include <KokkosBlas3_gemm.hpp>
#include <Kokkos_Core.hpp>
int main() {
  Kokkos::View<float**> a(\"a\", 1, 1);
  KokkosBlas::gemm(\"N\", \"N\", 1.0f, a, a, 0.0f, a);
  return 0;
}" ${_fmattn_kk_check})
  unset(CMAKE_REQUIRED_LIBRARIES)
  unset(CMAKE_REQUIRED_QUIET)
  if(${_fmattn_kk_check})
    set(FMATTN_HAS_KOKKOSKERNELS TRUE)
  endif()
endif()
if(NOT FMATTN_HAS_KOKKOSKERNELS)
  message(FATAL_ERROR "fmattn: no Kokkos Kernels that builds against Kokkos ${Kokkos_VERSION} was found "
    "(set KokkosKernels_ROOT to one built for this Kokkos; scripts/setup.sh builds a matching pair)")
endif()

find_package(MPI REQUIRED COMPONENTS C)

set(HDF5_PREFER_PARALLEL ON)
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(WARNING "fmattn: HDF5 is not built with MPI-IO; multi-rank runs cannot write output collectively")
endif()

find_package(yaml-cpp REQUIRED)
if(NOT TARGET yaml-cpp::yaml-cpp)
  add_library(yaml-cpp::yaml-cpp INTERFACE IMPORTED)
  target_link_libraries(yaml-cpp::yaml-cpp INTERFACE yaml-cpp)
endif()

# Kokkos 3.4 does not define KOKKOS_CLASS_LAMBDA everywhere; fmattn does not use it.

include(FeatureSummary)
set_package_properties(Kokkos PROPERTIES TYPE REQUIRED PURPOSE "kernels and views")
set_package_properties(MPI PROPERTIES TYPE REQUIRED PURPOSE "sharding across nodes")
set_package_properties(HDF5 PROPERTIES TYPE REQUIRED PURPOSE "input, output and checkpoints")
set_package_properties(yaml-cpp PROPERTIES TYPE REQUIRED PURPOSE "input decks")
