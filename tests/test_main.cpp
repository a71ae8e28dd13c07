// Test main shared by every test executable: MPI first, then Kokkos, and floating-point
// exceptions on so that a NaN fails the test where it is born. Kokkos is initialised after
// GoogleTest has parsed its flags, and not at all to list the tests: discovery prints only the
// list, and works for a GPU build on a machine without the GPU.
#include <gtest/gtest.h>
#include <mpi.h>
#include <Kokkos_Core.hpp>

#include <cfenv>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
// Open MPI and hwloc keep start-up allocations to the end of the process (some in plug-ins
// loaded at run time, beyond any suppression list); leak reports would drown ours. Memory
// errors are still reported. Applies to test discovery at build time as well.
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }
#endif

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  // Warnings (e.g. about OMP_PROC_BIND) would go to stdout during test discovery.
#ifdef GTEST_FLAG_GET
  const bool listing = GTEST_FLAG_GET(list_tests);
#else  // GoogleTest < 1.12
  const bool listing = ::testing::GTEST_FLAG(list_tests);
#endif
  if (listing) {
    const int result = RUN_ALL_TESTS();
    MPI_Finalize();
    return result;
  }
  std::vector<char*> kargs(argv, argv + argc);
  char quiet[] = "--kokkos-disable-warnings";
  kargs.push_back(quiet);
  int kargc = int(kargs.size());
  Kokkos::initialize(kargc, kargs.data());
  feenableexcept(FE_INVALID | FE_DIVBYZERO | FE_OVERFLOW);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int result = RUN_ALL_TESTS();
  fedisableexcept(FE_ALL_EXCEPT);
  Kokkos::finalize();
  MPI_Finalize();
  return result;
}
