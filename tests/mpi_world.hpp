// The size of MPI_COMM_WORLD and this process's rank in it, for the MPI tests.
#pragma once

#include <mpi.h>

namespace testing_mpi {

inline int world_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

}  // namespace testing_mpi
