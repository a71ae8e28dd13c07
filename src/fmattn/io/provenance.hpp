// Root attributes that every fmattn HDF5 file carries (README, "Output files"), so that a file
// found later says what made it.
#pragma once

#include <hdf5.h>

#include <string>

namespace fmattn {

// schema, fmattn_version, git_commit, created, deck, kokkos_backend, mpi_ranks.
void write_provenance(hid_t file, const std::string& schema, const std::string& deck_yaml, int mpi_ranks);

}  // namespace fmattn
