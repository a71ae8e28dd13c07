#include <fmattn/app/lm_common.hpp>
#include <fmattn/app/train.hpp>
#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/io/model_file.hpp>
#include <fmattn/io/output_file.hpp>
#include <fmattn/io/provenance.hpp>
#include <fmattn/model/parameters.hpp>
#include <fmattn/parallel/shard_plan.hpp>
#include <fmattn/util/errors.hpp>
#include <fmattn/util/profiling.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace fmattn {

namespace {

inline constexpr const char* eval_schema = "fmattn-eval/1";

template <class S>
EvalSummary eval_typed(const Deck& deck, const ModelState& state, const ModelConfig& c, const LogSink& log,
                       MPI_Comm comm) {
  Stopwatch watch;
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);
  const std::int64_t T = c.context, windows = deck.train.eval_windows;
  const bool by_sequence = shards_windows(deck, c, ranks);
  const Corpus val = load_corpus(deck, "data.val", deck.data.val, T + 1);
  // Windows in batches, as many at once as training takes (train.micro_batch); sharded, every
  // rank takes every window, and its rows of P.
  const std::int64_t rows = by_sequence ? plan_shard(c.geometry(), 0, ranks).shard.token_end(c.geometry()) : 0;
  LanguageModel<S> model(c, state.seed, windows_at_once(deck, c, state.dtype, windows, rows),
                         by_sequence ? comm : MPI_COMM_NULL);
  // A sharded model with a position table read its rows of it (the context is the checkpoint's).
  model.set_parameters(by_sequence && c.learned_positions() ? state.params
                                                            : adapt_parameters(state.config, state.params, c));
  std::vector<double> by_position;
  const std::vector<double> losses = validation_losses(model, val, deck.run.seed, windows, comm, &by_position);
  for (double& x : by_position) x /= std::log(2.0);
  EvalSummary s;
  s.step = state.step;
  s.windows = windows;
  s.context = T;
  double sum = 0;
  std::vector<double> bpb(losses.size());
  std::vector<std::int64_t> offsets(losses.size());
  for (std::size_t i = 0; i < losses.size(); ++i) {
    sum += losses[i];
    bpb[i] = losses[i] / std::log(2.0);
    offsets[i] = validation_offset(deck.run.seed, std::int64_t(i), val.size(), T + 1);
  }
  s.bits_per_byte = sum / double(losses.size()) / std::log(2.0);
  // Nothing non-finite is printed or written (a damaged or diverged checkpoint).
  for (std::size_t i = 0; i <= bpb.size(); ++i)
    if (!std::isfinite(i < bpb.size() ? bpb[i] : s.bits_per_byte))
      throw std::runtime_error("eval: " + deck.eval.checkpoint + " gives a non-finite loss on data.val" +
                               (i < bpb.size() ? " (window " + std::to_string(i) + ")" : std::string()) +
                               " (a diverged or damaged model); nothing was written");
  if (!deck.eval.output.empty()) {
    const std::string yaml = to_yaml(deck);
    const std::string problem = failure_on_root(comm, [&] {
      h5::NewFile file(deck.eval.output);
      write_provenance(file.id(), eval_schema, yaml, ranks);
      h5::write_attr(file.id(), "checkpoint", deck.eval.checkpoint);
      h5::write_attr(file.id(), "step", state.step);
      h5::write_attr(file.id(), "context", T);
      h5::write_attr(file.id(), "data", deck.data.val);
      h5::write_attr(file.id(), "bits_per_byte", s.bits_per_byte);
      h5::write_dataset(file.id(), "window_bits_per_byte", {windows}, bpb.data());
      h5::write_dataset(file.id(), "window_offset", {windows}, offsets.data());
      h5::write_dataset(file.id(), "position_bits_per_byte", {T}, by_position.data());
      h5::write_attr(file.id(), "method", std::string(name_of(c.attention.method)));
      h5::write_attr(file.id(), "positions", std::string(name_of(c.positions)));
      h5::write_attr(file.id(), "downsampling", std::string(name_of(c.attention.downsampling)));
      h5::write_attr(file.id(), "block_size", std::int64_t(c.block_size));
      file.commit();
    });
    if (!problem.empty()) throw std::runtime_error("writing " + deck.eval.output + ": " + problem);
    log("wrote      " + deck.eval.output);
  }
  s.seconds = watch.seconds();
  MPI_Allreduce(MPI_IN_PLACE, &s.seconds, 1, MPI_DOUBLE, MPI_MAX, comm);
  return s;
}

}  // namespace

EvalSummary eval_deck(const Deck& deck, const LogSink& log, MPI_Comm comm) {
  ScopedRegion region("fmattn::eval");
  if (deck.eval.checkpoint.empty()) throw InputError("eval.checkpoint: no model checkpoint given");
  if (!deck.eval.output.empty()) check_writable(deck.eval.output, "eval.output", comm);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  // Sharded, a rank reads its rows of P alone (a deck that cannot be sharded fails below, naming
  // its key).
  const ModelState state =
      load_checkpoint(deck, "eval.checkpoint", deck.eval.checkpoint, nullptr, [&](const ModelConfig& c) {
        bool sharded = false;
        try {
          sharded = shards_windows(deck, c, ranks);
        } catch (const InputError&) {
        }
        return sharded ? sequence_part(rank, ranks)(c) : parameter_slots(c);
      });
  check_deck_matches(deck, state);
  const ModelConfig& trained = state.config;
  const ModelConfig config = eval_config(deck, state);
  char line[200];
  std::snprintf(line, sizeof line,
                "model      %s: step %lld, %d layers, width %d, %d heads, context %d, positions %s, %s, %s attention",
                deck.eval.checkpoint.c_str(), static_cast<long long>(state.step), trained.layers, trained.width,
                trained.heads, trained.context, name_of(trained.positions), name_of(state.dtype),
                name_of(trained.attention.method));
  log(line);
  log("eval       at context " + std::to_string(config.context) +
      (config.context == trained.context ? std::string(", the checkpoint's")
                                         : " (model.context; trained at " + std::to_string(trained.context) + ")"));
  return state.dtype == Dtype::float32 ? eval_typed<float>(deck, state, config, log, comm)
                                       : eval_typed<double>(deck, state, config, log, comm);
}

}  // namespace fmattn
