// Writes small HDF5 files through the library's own writers, for the tests of
// tools/fmattn-analyze:
//
//   fmattn_test_h5_fixtures weights    OUT.h5   downsampling weights as save_weights() makes them
//   fmattn_test_h5_fixtures checkpoint OUT.h5   the same plus provenance, a `step` attribute and
//                                               `fit/loss` (the checkpoint layout of the interfaces)
//   fmattn_test_h5_fixtures other      OUT.h5   an fmattn file of another schema
//   fmattn_test_h5_fixtures input      OUT.h5   q, k, v [1][2][64][4] as a user's input file (a
//                                               NaN in v), without provenance
//
// The weights are the average operator plus a smooth perturbation, so the basis plot shows
// something other than boxes. Exit 0 on success, 2 on bad arguments, 1 on any other failure.
#include <fmattn/core/geometry.hpp>
#include <fmattn/core/weights.hpp>
#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/io/provenance.hpp>
#include <fmattn/io/weights_file.hpp>

#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

namespace {

void perturb(std::vector<double>& w, double amplitude, double phase) {
  for (std::size_t i = 0; i < w.size(); ++i) w[i] += amplitude * std::sin(0.37 * double(i) + phase);
}

int write(const std::string& kind, const std::string& path) {
  const int d = 4;
  const fmattn::Geometry g = fmattn::make_geometry(512, 16, 4, fmattn::Variant::causal);
  fmattn::h5::NewFile file(path);
  if (kind == "input") {
    std::vector<double> x(2 * 64 * 4);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1 * double(i));
    fmattn::h5::write_dataset(file.id(), "q", {1, 2, 64, 4}, x.data());
    fmattn::h5::write_dataset(file.id(), "k", {1, 2, 64, 4}, x.data());
    x[5] = std::nan("");
    fmattn::h5::write_dataset(file.id(), "v", {1, 2, 64, 4}, x.data());
  } else if (kind == "other") {
    fmattn::write_provenance(file.id(), "fmattn-something-else/1", "run:\n  name: other\n", 1);
    const std::vector<double> data{1.0, 2.0, 3.0};
    fmattn::h5::write_dataset(file.id(), "values", {3}, data.data());
  } else {
    fmattn::DownsamplingWeights w = fmattn::DownsamplingWeights::average(g, d);
    perturb(w.k_weight, 0.01, 0.0);
    perturb(w.v_weight, 0.02, 1.0);
    perturb(w.k_bias, 0.001, 2.0);
    fmattn::write_provenance(file.id(), kind == "checkpoint" ? "fmattn-checkpoint/1" : "fmattn-weights/1",
                             "run:\n  name: fit\n", 1);
    fmattn::write_weights(file.id(), w);
    if (kind == "checkpoint") {
      std::vector<double> loss(40);
      for (std::size_t s = 0; s < loss.size(); ++s) loss[s] = 0.05 + std::exp(-0.1 * double(s));
      fmattn::h5::Handle fit = fmattn::h5::create_group(file.id(), "fit");
      fmattn::h5::write_dataset(fit, "loss", {std::int64_t(loss.size())}, loss.data());
      fmattn::h5::write_attr(file.id(), "step", std::int64_t(loss.size()));
    }
  }
  file.commit();
  std::printf("wrote %s (%s)\n", path.c_str(), kind.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int code = 0;
  const std::string kind = argc == 3 ? argv[1] : "";
  if (kind != "weights" && kind != "checkpoint" && kind != "other" && kind != "input") {
    std::fprintf(stderr, "usage: fmattn_test_h5_fixtures weights|checkpoint|other|input OUT.h5\n");
    code = 2;
  } else {
    try {
      code = write(kind, argv[2]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fmattn_test_h5_fixtures: error: %s\n", e.what());
      code = 1;
    }
  }
  MPI_Finalize();
  return code;
}
