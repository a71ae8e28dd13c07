// The YAML input deck (README, "Input decks"): every key, its default and its range. Parsing
// rejects unknown keys and reports file:line:column with the key path and what was expected.
#pragma once

#include <fmattn/core/options.hpp>
#include <fmattn/model/config.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace fmattn {

enum class Dtype { float32, float64 };
enum class Queries { fine, coarse };
enum class Source { synthetic, hdf5 };
enum class SyntheticKind { gaussian, smooth, piecewise_constant };
// How MPI ranks divide a run: contiguous token ranges of one sequence (all heads), or whole
// batch·head problems; automatic = sequence where supported (FMA with fine queries).
// How MPI ranks share the work: `fmattn run` shards the sequence or gives each rank whole heads;
// `train` and `eval` give each rank a share of the windows (data) or shard every window
// (sequence). `automatic` picks per verb.
enum class Decomposition { automatic, sequence, heads, data };

struct Deck {
  struct Run {
    std::string name = "quickstart";
    std::uint64_t seed = 1234;
    double progress_seconds = 10;  // between progress lines of a long phase; 0: none
  } run;
  struct Problem {
    std::int64_t batch = 1;
    std::int64_t heads = 4;
    std::int64_t length = 1048576;
    std::int64_t head_dim = 64;
    Dtype dtype = Dtype::float32;
  } problem;
  struct Attention {
    Method method = Method::fma;
    Variant variant = Variant::causal;
    std::int64_t block_size = 64;
    std::int64_t rank = 4;
    Downsampling downsampling = Downsampling::average;
    bool count_weighting = true;
    Boundary boundary = Boundary::masked;
    Queries queries = Queries::fine;
    double scale = 0;  // 0 = auto: 1/sqrt(head_dim)
  } attention;
  struct Input {
    Source source = Source::synthetic;
    std::string file;
    struct Synthetic {
      SyntheticKind kind = SyntheticKind::smooth;  // structured like real activations; gaussian is the worst case
      std::int64_t span = 0;                       // piecewise_constant span; 0 = auto (w_L / p)
      double amplitude = 1.0;
    } synthetic;
  } input;
  struct Weights {
    std::string file;
  } weights;
  struct Validation {
    std::int64_t sample_queries = 64;
  } validation;
  struct Output {
    std::string file;  // empty = results/<run.name>.h5
    bool write_output = true;
  } output;
  struct Parallel {
    Decomposition decomposition = Decomposition::automatic;
  } parallel;
  struct Fit {
    std::int64_t steps = 200;
    double learning_rate = 1e-3;
    std::int64_t sample_queries = 1024;
    std::int64_t checkpoint_every = 50;
    std::string checkpoint_file = "results/fit.h5";
    std::string restart_from;
  } fit;

  // Language models (fmattn train / eval / generate).
  struct Model {
    std::int64_t layers = 4;
    std::int64_t width = 256;
    std::int64_t heads = 4;
    std::int64_t context = 2048;
    Dtype dtype = Dtype::float32;
    Positions positions = Positions::learned;
  } model;
  struct Data {
    std::string train = "data/fortunes-train.bin";
    std::string val = "data/fortunes-val.bin";
  } data;
  struct Train {
    std::int64_t steps = 2000;
    std::int64_t batch = 8;
    std::int64_t micro_batch = 0;  // windows through the model at once per rank; 0 = auto
    double learning_rate = 6e-4;
    double min_learning_rate = 6e-5;
    std::int64_t warmup_steps = 100;
    double weight_decay = 0.1;
    double beta1 = 0.9;
    double beta2 = 0.95;
    double clip_norm = 1.0;
    std::int64_t eval_every = 200;
    std::int64_t eval_windows = 64;
    std::int64_t checkpoint_every = 200;
    std::string checkpoint_file = "results/model.h5";
    std::string restart_from;
  } train;
  struct Eval {
    std::string checkpoint;
    std::string output;
  } eval;
  // Bytes from a model checkpoint (fmattn generate).
  struct Generate {
    std::string checkpoint;      // required by fmattn generate
    std::string prompt;          // inline text, or
    std::string prompt_file;     // a file of bytes; neither: no prompt
    std::int64_t length = 1024;  // bytes per stream
    std::int64_t streams = 1;
    double temperature = 1.0;  // 0: the most likely byte
    std::int64_t top_k = 0;    // 0: all 256
    double top_p = 1.0;
    std::uint64_t seed = 1;
    std::string output = "results/generated";  // stream s: <output>-<s>.txt (one: <output>.txt); "-": stdout
  } generate;

  // Where the deck gives each key it sets: "file:line:column" or "--set key" (README, "Input
  // decks"); keys it leaves at their default are absent.
  std::map<std::string, std::string> origins;
  // A key as messages name it: "file:line:column: key", "--set key", or "key" for a default.
  std::string where(const std::string& key) const;
  bool gives(const std::string& key) const { return origins.count(key) > 0; }

  double resolved_scale() const;
  Decomposition resolved_decomposition() const;
  std::string resolved_output_file() const;
};

// Reads a deck file and applies `section.key=value` overrides (values parsed as YAML scalars).
// Throws InputError naming the file, line and column, the key and the expected value.
Deck load_deck(const std::string& path, const std::vector<std::string>& overrides = {});
// Parses deck text; `origin` names it in messages.
Deck parse_deck(const std::string& text, const std::string& origin, const std::vector<std::string>& overrides = {});
// The fully resolved deck as YAML (every key, defaults filled in).
std::string to_yaml(const Deck& deck);

const char* name_of(Dtype);
const char* name_of(Method);
const char* name_of(Variant);
const char* name_of(Downsampling);
const char* name_of(Boundary);
const char* name_of(Queries);
const char* name_of(Source);
const char* name_of(SyntheticKind);
const char* name_of(Decomposition);
const char* name_of(Positions);

}  // namespace fmattn
