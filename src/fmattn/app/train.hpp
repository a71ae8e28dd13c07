// `fmattn train` and `fmattn eval`: byte-level language models (docs/language-model.md).
// train: AdamW steps over windows of data.train, the step's windows shared by the ranks and
// their gradients reduced in rank order; validation on data.val every train.eval_every steps
// and at the end; checkpoints (fmattn-model/1) every train.checkpoint_every steps, at the end
// and on SIGINT/SIGTERM; train.restart_from continues bit for bit.
// eval: a checkpoint's bits per byte on data.val, optionally the per-window losses to HDF5.
#pragma once

#include <fmattn/io/deck.hpp>
#include <fmattn/util/log.hpp>

#include <mpi.h>

#include <cstdint>
#include <string>

namespace fmattn {

struct TrainSummary {
  std::int64_t first_step = 0, last_step = 0;  // steps taken by this call (first > last: none)
  double first_loss = 0, last_loss = 0;        // bits per byte of those steps
  double val_loss = 0;                         // bits per byte at the end
  double tokens_per_second = 0;                // mean over the steps taken
  double model_flops_per_second = 0;           // tokens/s × training_flops_per_token
  double seconds = 0;
  std::string checkpoint;
};

TrainSummary train_deck(const Deck& deck, const LogSink& log, MPI_Comm comm = MPI_COMM_WORLD);

struct EvalSummary {
  std::int64_t step = 0, windows = 0, context = 0;
  double bits_per_byte = 0;
  double seconds = 0;
};

EvalSummary eval_deck(const Deck& deck, const LogSink& log, MPI_Comm comm = MPI_COMM_WORLD);

}  // namespace fmattn
