// Language-model checkpoints (schema fmattn-model/1, docs/file-formats.md): the parameters,
// AdamW's moments in the same layout, the training history and the RNG state, written
// atomically; loading refuses a checkpoint of another shape, naming the mismatch.
#pragma once

#include <fmattn/io/deck.hpp>
#include <fmattn/model/config.hpp>
#include <fmattn/model/parameters.hpp>

#include <cstdint>
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

void save_model(const std::string& path, const ModelState& s, const std::string& deck_yaml, int mpi_ranks);

// Reads a checkpoint; with `expect` set, refuses one whose shape (layers, width, heads,
// context, attention, dtype) differs, naming the first difference. InputError naming the file
// for anything missing or malformed.
ModelState load_model(const std::string& path, const ModelState* expect = nullptr);

}  // namespace fmattn
