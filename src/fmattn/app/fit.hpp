// `fmattn fit`: learns the K and V downsampling weights (spec §2, learned) so that FMA matches
// exact attention on the deck's data. Each step draws fit.sample_queries fresh query rows per
// head, takes the mean squared error between FMA and exact attention on them as the loss, and
// updates the weights with Adam; checkpoints every fit.checkpoint_every steps and at the end.
#pragma once

#include <fmattn/io/deck.hpp>
#include <fmattn/util/log.hpp>

#include <mpi.h>

#include <cstdint>
#include <string>

namespace fmattn {

struct FitSummary {
  std::int64_t first_step = 0, last_step = 0;  // steps taken by this call (first > last: none)
  double first_loss = 0, last_loss = 0;        // loss of the first and last of those steps
  // Sampled relative error (validation.sample_queries rows, as `fmattn run` reports it), mean
  // over heads, with the average operator and with the fitted weights.
  double average_error = 0, fitted_error = 0;
  double seconds = 0;
  std::string checkpoint;
};

// Heads are split across the ranks of `comm` and the gradients summed over all of them.
// InputError for a deck that has nothing to fit, an unusable checkpoint or a restart that
// cannot continue exactly.
FitSummary fit_deck(const Deck& deck, const LogSink& log, MPI_Comm comm = MPI_COMM_WORLD);

}  // namespace fmattn
