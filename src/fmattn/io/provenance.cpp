#include <fmattn/io/provenance.hpp>

#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/util/log.hpp>
#include <fmattn/version.hpp>

#include <Kokkos_Core.hpp>

namespace fmattn {

void write_provenance(hid_t file, const std::string& schema, const std::string& deck_yaml, int mpi_ranks) {
  h5::write_attr(file, "schema", schema);
  h5::write_attr(file, "fmattn_version", std::string(version_string));
  h5::write_attr(file, "git_commit", std::string(git_commit));
  h5::write_attr(file, "created", iso8601_now());
  h5::write_attr(file, "deck", deck_yaml);
  h5::write_attr(file, "kokkos_backend", std::string(Kokkos::DefaultExecutionSpace::name()));
  h5::write_attr(file, "mpi_ranks", std::int64_t(mpi_ranks));
}

}  // namespace fmattn
