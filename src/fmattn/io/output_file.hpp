// HDF5 results of a run (README, "Output files"): root provenance attributes, the `output`
// dataset and the `diagnostics` group.
#pragma once

#include <fmattn/core/geometry.hpp>
#include <fmattn/core/sampling.hpp>
#include <fmattn/io/deck.hpp>
#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/util/log.hpp>

#include <hdf5.h>
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace fmattn {

struct RunRecord {
  const Deck* deck = nullptr;
  Geometry geometry;
  PhaseTimes timings;
  std::int64_t first = 0, last = 0;                // this rank's flattened batch·head rows of `output`
  h5::TokenRange tokens;                           // and their tokens (all unless the sequence is sharded)
  std::int64_t diag_first = 0, diag_last = 0;      // the rows of `samples` this rank writes
  SampledError samples;                            // for rows [diag_first, diag_last)
  int threads = 1;                                 // per rank
  double gflops = 0;                               // of the attention phase
  std::vector<std::int64_t> peak_rss, bytes_sent;  // per rank
};

// Runs `work` on rank 0 of `comm` only (file-system work done once) and returns on every rank
// the message of the exception it threw, or "" when it succeeded.
std::string failure_on_root(MPI_Comm comm, const std::function<void()>& work);

// Fails alike on every rank of `comm` (InputError naming the deck key) when `path` cannot be
// written: a directory, or a folder that cannot be created or written. Checked on rank 0,
// which sees the same file system as the writer, before any work is done.
void check_writable(const std::string& path, const std::string& key, MPI_Comm comm);

// Writes the results file collectively over `comm`; `output` holds this rank's rows (or is
// null when output.write_output is false). The timings are written last, with `write` (the
// datasets) and `total` (since `run_started`, on the slowest rank): what the user waited.
template <class Scalar>
void write_results(const std::string& path, const RunRecord& rec, const Scalar* output, MPI_Comm comm,
                   const Stopwatch& run_started);

}  // namespace fmattn
