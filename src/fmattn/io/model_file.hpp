// Language-model checkpoints (schema fmattn-model/1, docs/file-formats.md): the parameters,
// AdamW's moments in the same layout, the training history and the RNG state, written
// atomically; loading refuses a checkpoint of another shape, naming the mismatch.
#pragma once

#include <fmattn/io/deck.hpp>
#include <fmattn/model/config.hpp>
#include <fmattn/model/parameters.hpp>

#include <mpi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace fmattn {

inline constexpr const char* model_schema = "fmattn-model/1";

struct TrainHistory {
  std::vector<double> loss;                                         // bits per byte, one per step
  std::vector<double> learning_rate, grad_norm, tokens_per_second;  // one per step
  std::vector<double> val_loss;                                     // bits per byte, one per evaluation
  std::vector<std::int64_t> val_step;
};

// What a checkpoint holds, on the host in double (converted to and from the model's dtype).
struct ModelState {
  ModelConfig config;
  Dtype dtype = Dtype::float32;
  std::int64_t step = 0;
  std::uint64_t seed = 0;
  std::vector<double> params, moment1, moment2;  // flat, in parameter_slots(config) order
  TrainHistory history;
};

// Writes a checkpoint. With `part` (the layout of s.params and the moments: a sequence-sharded
// rank's slots, its rows of P) every rank of `comm` calls it with its own state, and the file
// is written collectively in the layout of one rank's: rank 0 writes what all ranks hold whole,
// each rank its rows of P.
void save_model(const std::string& path, const ModelState& s, const std::string& deck_yaml, int mpi_ranks,
                MPI_Comm comm = MPI_COMM_SELF, const std::vector<ParameterSlot>* part = nullptr);

// The slots of the part of a model of config c that a reader holds (a sharded rank's rows of P).
using PartOf = std::function<std::vector<ParameterSlot>(const ModelConfig& c)>;

// Reads a checkpoint; with `expect` set, refuses one whose shape (layers, width, heads,
// context, attention, dtype) differs, naming the first difference. With `part`, only the part's
// rows of each dataset are read, and params and moments are laid out as the part. InputError
// naming the file for anything missing or malformed.
ModelState load_model(const std::string& path, const ModelState* expect = nullptr, const PartOf& part = {});

}  // namespace fmattn
