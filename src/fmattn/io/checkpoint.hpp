// Fit checkpoints (README, "Output files"): the downsampling weights in the layout `weights.file`
// reads, plus what a restart needs to continue bit for bit — Adam's moments, the step, the
// loss of every step (`fit/loss`) and the state of the row-sampling RNG.
#pragma once

#include <fmattn/core/adam.hpp>
#include <fmattn/core/weights.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace fmattn {

struct FitState {
  DownsamplingWeights weights;           // the parameters after `step` steps
  DownsamplingWeights moment1, moment2;  // Adam's moments of the k and v parameters, same layout
  std::int64_t step = 0;                 // optimizer steps taken
  std::vector<double> loss;              // loss of steps 1 .. step
  // The sampling RNG is counter based: the rows of step t derive from (seed, t) alone, so
  // (seed, step) is its whole state.
  std::uint64_t seed = 0;

  // Step 0 at the given weights: zero moments, no loss yet.
  static FitState start(const DownsamplingWeights& w, std::uint64_t seed);
};

// Writes a complete checkpoint under a temporary name and renames it into place (an interrupted
// write never leaves a truncated file under `path`).
void save_checkpoint(const std::string& path, const FitState& s, const Adam& adam, const std::string& deck_yaml);

// Reads a checkpoint made for geometry g and head dimension d; InputError naming the file when
// it is not a fit checkpoint, was made for another geometry, or lacks a dataset.
FitState load_checkpoint(const std::string& path, const Geometry& g, int head_dim);

}  // namespace fmattn
