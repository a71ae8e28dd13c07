// How the ranks of a training run combine what each computed (docs/language-model.md): the
// gradients of the parameters every rank holds whole, summed in rank order; the global norm
// of the gradients.
#pragma once

#include <fmattn/model/language_model.hpp>
#include <fmattn/model/optimizer.hpp>
#include <fmattn/model/parameters.hpp>

#include <mpi.h>

#include <vector>

namespace fmattn {

// Sums every rank's gradients of the replicated parameters into every rank's, rank 0's first,
// then 1, 2, ...: the same additions in the same order whatever the network does. A sharded
// model's rows of P keep the rank's own gradients.
template <class S>
void sum_gradients(const LanguageModel<S>& model, MPI_Comm comm);

// The L2 norm of all gradients of the model, after sum_gradients: the replicated parameters'
// once, and (sharded) every rank's rows of P added in rank order. The same on every rank.
template <class S>
double gradient_norm(const LanguageModel<S>& model, const AdamW<S>& adamw, MPI_Comm comm);

}  // namespace fmattn
