// What `fmattn train` and `fmattn eval` share: the model a deck describes, the windows each
// rank takes, and the validation losses.
#pragma once

#include <fmattn/io/deck.hpp>
#include <fmattn/io/model_file.hpp>
#include <fmattn/model/config.hpp>
#include <fmattn/model/corpus.hpp>
#include <fmattn/model/language_model.hpp>

#include <mpi.h>

#include <cstdint>
#include <vector>

namespace fmattn {

// The model of the deck's model and attention sections; InputError naming the key for what a
// language model cannot use (bidirectional or coarse-query attention, a zero_sink context that
// is not block_size · 2^k).
ModelConfig model_config(const Deck& deck);

// The corpus of deck key `key` (data.train, data.val); InputError naming the key (and where
// the deck gives it) when it cannot be read or held in memory.
Corpus load_corpus(const Deck& deck, const std::string& key, const std::string& path, std::int64_t window);

// The model checkpoint of deck key `key` (train.restart_from, eval.checkpoint): load_model,
// with the key named in every InputError.
ModelState load_checkpoint(const Deck& deck, const std::string& key, const std::string& path,
                           const ModelState* expect = nullptr, const PartOf& part = {});

// The slots rank `rank` of `ranks` holds of a sequence-sharded model (its rows of P), as
// LanguageModel lays them out: what it reads of a checkpoint.
PartOf sequence_part(int rank, int ranks);

// eval runs the checkpoint's model: InputError naming the key when the deck sets a model or
// attention key to another value than the checkpoint holds — except model.context for a model
// with positions none, which runs at any context.
void check_deck_matches(const Deck& deck, const ModelState& state);

// The model eval runs: the checkpoint's, at the deck's model.context when the deck sets it and
// the model has no position table (check_deck_matches refuses another context otherwise).
ModelConfig eval_config(const Deck& deck, const ModelState& state);

// Whether train and eval shard every window of model `c` over `ranks` ranks (model.md §7):
// parallel.decomposition sequence, or auto with more ranks than train.batch. InputError naming
// the key when the deck asks for heads (fmattn run's), or for sequence with exact attention, or
// with fewer fine blocks in a window than there are ranks.
bool shards_windows(const Deck& deck, const ModelConfig& c, int ranks);

// How many of a rank's `share` windows go through the model at once: train.micro_batch, or
// for 0 (auto) up to 2^17 tokens whose activations fit in 4 GiB (a function of the deck
// alone, so the same deck gives the same bits on any node). `rows`: a window's positions on
// this rank (0: the whole context). InputError naming the key when that many windows'
// activations exceed this node's memory (unless `check_memory` is off: a report).
std::int64_t windows_at_once(const Deck& deck, const ModelConfig& c, Dtype dtype, std::int64_t share,
                             std::int64_t rows = 0, bool check_memory = true);

// What `fmattn validate` reports for training a deck's model on `ranks` ranks: the bytes a rank
// holds (parameters, gradients and AdamW moments, activations of the windows it takes at once;
// more than the node has is reported, not refused) and, with sequence sharding, the
// attention's bytes sent by the busiest rank per step.
struct TrainNeeds {
  bool sequence = false;
  std::int64_t windows_per_rank = 0, tokens_per_window = 0;  // a rank's share of a step
  double bytes_per_rank = 0;
  double sent_per_step = 0, sent_per_layer = 0;  // per window and layer
};
TrainNeeds train_needs(const Deck& deck, int ranks);

// Windows [first, last) of `count` that rank `rank` of `ranks` takes: contiguous shares, the
// same windows in the same order whatever the number of ranks.
void window_share(std::int64_t count, int rank, int ranks, std::int64_t& first, std::int64_t& last);

// Each window's mean loss (nats per byte) over validation windows 0 .. windows-1 of `corpus`,
// computed by the ranks of `comm` in shares (or every window by all of them, for a sharded
// model) and returned to every rank in window order. With `position_losses`, also the mean
// over the windows of the loss at each position [T].
template <class Scalar>
std::vector<double> validation_losses(LanguageModel<Scalar>& model, const Corpus& corpus, std::uint64_t seed,
                                      std::int64_t windows, MPI_Comm comm,
                                      std::vector<double>* position_losses = nullptr);

// Concatenates every rank's values (rank order) on every rank.
std::vector<double> all_gather(const std::vector<double>& mine, MPI_Comm comm);

}  // namespace fmattn
