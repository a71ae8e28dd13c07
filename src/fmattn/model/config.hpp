// The shape of a byte-level language model (docs/language-model.md): what a checkpoint must
// match to be loaded, and the attention every block runs.
#pragma once

#include <fmattn/core/geometry.hpp>
#include <fmattn/core/options.hpp>

#include <cstdint>
#include <string>

namespace fmattn {

inline constexpr int vocabulary = 256;  // byte values

// learned: a table P [T][W] added to the embedding. none: no table, the causal mask and FMA's
// hierarchy are the only sense of order; no parameter is then tied to the context, so the model
// runs at any length (adapt_parameters).
enum class Positions { learned, none };

struct ModelConfig {
  int layers = 4;
  int width = 256;  // W; heads divide it
  int heads = 4;
  int context = 2048;  // T, positions per window
  Positions positions = Positions::learned;
  AttentionOptions attention;  // method, downsampling, count weighting, boundary; scale resolved
  int block_size = 64;
  int rank = 4;

  int head_dim() const { return width / heads; }
  bool learned_positions() const { return positions == Positions::learned; }
  bool learned_basis() const {
    return attention.method == Method::fma && attention.downsampling == Downsampling::learned;
  }
  // The causal FMA geometry of one window.
  Geometry geometry() const { return make_geometry(context, block_size, rank, Variant::causal); }
};

}  // namespace fmattn
