// The HDF5 layout of downsampling weights (README, "Output files"):
// downsampling/{q,k,v}/level_XX/{weight [p][w_l][d], bias [p][d]} with root attributes
// block_size, rank, head_dim, length; in weights files and in fit checkpoints.
#pragma once

#include <fmattn/core/weights.hpp>

#include <hdf5.h>

#include <string>
#include <vector>

namespace fmattn {

// The `schema` attributes of the two files that hold downsampling weights.
inline constexpr const char* weights_schema = "fmattn-weights/1";
inline constexpr const char* checkpoint_schema = "fmattn-checkpoint/1";

// Reads weights from a checkpoint file and checks them against the run's geometry and head
// dimension; InputError naming the file and the mismatch. Group downsampling/q is required
// with `need_q` (linear variant) and read when present; otherwise q keeps the average operator.
DownsamplingWeights load_weights(const std::string& path, const Geometry& g, int head_dim, bool need_q = false);
// Writes the downsampling groups and geometry attributes into an open file.
void write_weights(hid_t file, const DownsamplingWeights& w);
// One operator's parameters as <parent>/<name>/level_XX/{weight [p][w_l][d], bias [p][d]}, and
// back (`group` is the full path of <parent>/<name>; InputError naming `path` on a missing or
// misshapen dataset). Also used for the optimizer state of fit checkpoints.
void write_operator(hid_t parent, const std::string& name, const Geometry& g, int head_dim,
                    const std::vector<double>& weight, const std::vector<double>& bias);
void read_operator(hid_t file, const std::string& group, const Geometry& g, int head_dim, std::vector<double>& weight,
                   std::vector<double>& bias, const std::string& path);
// A complete weights file: provenance (schema fmattn-weights/1) plus write_weights, written
// under a temporary name and renamed when complete.
void save_weights(const std::string& path, const DownsamplingWeights& w, const std::string& deck_yaml);

}  // namespace fmattn
