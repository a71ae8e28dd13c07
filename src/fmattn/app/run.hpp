// `fmattn run`: deck → inputs → attention (coarse levels + evaluation) → sampled validation →
// HDF5 results, with a log line per phase and a summary.
#pragma once

#include <fmattn/io/deck.hpp>
#include <fmattn/util/log.hpp>

#include <mpi.h>

#include <string>

namespace fmattn {

struct RunSummary {
  double total_s = 0, attention_s = 0;
  double flops = 0, gflops = 0;
  bool validated = false;  // sampled rows were checked against exact attention
  double max_rel_error = 0, mean_rel_error = 0;
  std::size_t peak_rss = 0;
  std::int64_t bytes_sent_max = 0;  // sequence sharding: the most bytes any rank sent
  std::string output_file;
};

// The kernel options of the deck's attention section.
AttentionOptions attention_options(const Deck& deck);

// This rank's heads of the deck on `comm`; InputError when there are more ranks than heads.
void local_heads(const Deck& deck, MPI_Comm comm, std::int64_t& first, std::int64_t& last);

// What `fmattn run` will need of each of `ranks` ranks, by the numbers run itself checks:
// InputError, as run gives it, when there are too many ranks or too little memory.
struct RunNeeds {
  int levels = 0;
  double bytes_per_rank = 0;  // q, k, v, output and coarse levels on the rank that holds most
  double node_bytes = 0;      // this node's memory
  double output_bytes = 0;    // the output dataset
};
RunNeeds run_needs(const Deck& deck, int ranks);

// Runs the deck on the ranks of `comm`; InputError for bad input (files, sizes, ranks).
RunSummary run_deck(const Deck& deck, const LogSink& log, MPI_Comm comm = MPI_COMM_WORLD);

}  // namespace fmattn
