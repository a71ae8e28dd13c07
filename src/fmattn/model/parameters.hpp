// The parameters of a language model as one flat vector: a table of named slots (the dataset
// names of a checkpoint's `params` group) and their seeded initial values.
#pragma once

#include <fmattn/model/config.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace fmattn {

struct ParameterSlot {
  std::string name;  // e.g. "block_00/wq", "block_01/downsampling/k/level_02/weight"
  std::vector<std::int64_t> shape;
  std::int64_t offset = 0;  // first element in the flat vector
  std::int64_t size = 0;
  bool decay = false;  // matrices, E and P take weight decay; biases, gains, basis functions not
  // Multiplies the learning rate. Basis-function weights of level l take p / w_l: the average
  // operator's weights are that small, and Adam moves every parameter by about the rate.
  double lr_scale = 1.0;
  // The first row of the whole parameter that the slot holds: a sequence-sharded rank holds
  // rows [row_begin, row_begin + shape[0]) of the position table; 0 for every other slot.
  std::int64_t row_begin = 0;
};

// The slots of a model in flat order: embedding, position (learned positions only), the blocks
// (with their basis functions when learned), final_norm.
std::vector<ParameterSlot> parameter_slots(const ModelConfig& c);
// The same with rows [position_begin, position_end) of the position table alone: what a rank
// of a sequence-sharded model holds (model.md §7).
std::vector<ParameterSlot> parameter_slots(const ModelConfig& c, std::int64_t position_begin,
                                           std::int64_t position_end);
// The values of the slots `part` (some rows of the slots of `whole`, as a sharded rank holds
// them) taken from x, laid out as `whole`; and the reverse, a part's values written into their
// place in x. std::invalid_argument when a slot of `part` is not rows of `whole`'s.
std::vector<double> take_rows(const std::vector<ParameterSlot>& whole, const std::vector<double>& x,
                              const std::vector<ParameterSlot>& part);
void put_rows(const std::vector<ParameterSlot>& part, const std::vector<double>& values,
              const std::vector<ParameterSlot>& whole, std::vector<double>& x);
std::int64_t parameter_count(const std::vector<ParameterSlot>& slots);
const ParameterSlot& find_slot(const std::vector<ParameterSlot>& slots, const std::string& name);

// Initial values (docs/language-model.md): matrices, E and P normal(0, 0.02); the output
// projections normal(0, 0.02 / sqrt(2·layers)); biases 0; gains 1; basis functions the average
// operator. Each value depends on (seed, slot, element of the whole parameter) alone: a
// positions-none model starts where the learned-positions model of the same seed does, less
// P, and a rank's rows of P are those rows of the whole table.
std::vector<double> initial_parameters(const ModelConfig& c, const std::vector<ParameterSlot>& slots,
                                       std::uint64_t seed);

// The parameters `x` of model `from` for model `to`, which differs from it in the context alone:
// what lets a positions-none model run at another length. Every slot of `to` that `from` has
// (same name and shape) is copied; the basis functions of coarse levels `from` does not have (a
// longer context has more) start at the average operator, as initial_parameters gives them.
// std::invalid_argument when the models differ in anything else, when a learned-positions model
// changes its context, or when any other slot is missing or of another shape.
std::vector<double> adapt_parameters(const ModelConfig& from, const std::vector<double>& x, const ModelConfig& to);

// "block_03/" for block 3.
std::string block_prefix(int block);
// "block_01/downsampling/k/level_02/" for block 1's K basis functions of level 2.
std::string basis_prefix(int block, char op, int level);

}  // namespace fmattn
