#include <fmattn/app/train.hpp>

#include <fmattn/app/lm_common.hpp>
#include <fmattn/io/model_file.hpp>
#include <fmattn/io/output_file.hpp>
#include <fmattn/io/paths.hpp>
#include <fmattn/model/flops.hpp>
#include <fmattn/model/optimizer.hpp>
#include <fmattn/model/training_reduction.hpp>
#include <fmattn/util/errors.hpp>
#include <fmattn/util/interrupt.hpp>
#include <fmattn/util/profiling.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>

namespace fmattn {

namespace {

template <class V>
std::vector<double> to_host(const V& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  return std::vector<double>(h.data(), h.data() + h.extent(0));
}

template <class V>
void from_host(const std::vector<double>& x, const V& v) {
  auto h = Kokkos::create_mirror_view(v);
  for (std::size_t i = 0; i < x.size(); ++i) h(i) = typename V::non_const_value_type(x[i]);
  Kokkos::deep_copy(v, h);
}

std::string duration(double s) {
  char b[32];
  if (s < 60)
    std::snprintf(b, sizeof b, "%.0fs", s);
  else if (s < 3600)
    std::snprintf(b, sizeof b, "%dm%02ds", int(s) / 60, int(s) % 60);
  else
    std::snprintf(b, sizeof b, "%dh%02dm", int(s) / 3600, int(s) / 60 % 60);
  return b;
}

OptimizerConfig optimizer_config(const Deck& deck) {
  const auto& t = deck.train;
  OptimizerConfig c;
  c.steps = t.steps;
  c.learning_rate = t.learning_rate;
  c.min_learning_rate = t.min_learning_rate;
  c.warmup_steps = t.warmup_steps;
  c.weight_decay = t.weight_decay;
  c.beta1 = t.beta1;
  c.beta2 = t.beta2;
  c.clip_norm = t.clip_norm;
  return c;
}

template <class S>
TrainSummary train_typed(const Deck& deck, const LogSink& log, MPI_Comm comm) {
  ScopedRegion region("fmattn::train");
  Stopwatch total;
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  const ModelConfig config = model_config(deck);
  const std::int64_t B = deck.train.batch, T = config.context, steps = deck.train.steps;
  const bool by_sequence = shards_windows(deck, config, ranks);
  if (!by_sequence && ranks > B)
    throw InputError("train.batch: " + std::to_string(B) + " windows per step cannot be shared by " +
                     std::to_string(ranks) + " ranks (run at most " + std::to_string(B) +
                     " ranks, raise train.batch, or shard every window: parallel.decomposition: sequence)");
  const Corpus train_data = load_corpus(deck, "data.train", deck.data.train, T + 1);
  const Corpus val_data = load_corpus(deck, "data.val", deck.data.val, T + 1);
  const std::string& path = deck.train.checkpoint_file;
  if (path.empty()) throw InputError("train.checkpoint_file: no file given");
  check_writable(path, "train.checkpoint_file", comm);

  ModelState state;
  state.config = config;
  state.dtype = deck.model.dtype;
  state.seed = deck.run.seed;
  const std::string& from = deck.train.restart_from;
  if (!from.empty()) {
    // A sharded rank reads its rows of P alone.
    state =
        load_checkpoint(deck, "train.restart_from", from, &state, by_sequence ? sequence_part(rank, ranks) : PartOf());
    if (state.seed != deck.run.seed)
      throw InputError("train.restart_from: " + from + " was made with run.seed = " + std::to_string(state.seed) +
                       ", the deck has " + std::to_string(deck.run.seed) +
                       " (a restart continues the same sequence of windows)");
    if (state.step > steps)
      throw InputError("train.steps = " + std::to_string(steps) + " is below the step of train.restart_from " + from +
                       " (" + std::to_string(state.step) + ")");
    log("restart    from " + from + " at step " + std::to_string(state.step) + " of " + std::to_string(steps));
  }
  // Data parallel: a share of the step's windows per rank. Sequence: every window, each rank its
  // run of blocks of it.
  std::int64_t first = 0, last = B;
  if (!by_sequence) window_share(B, rank, ranks, first, last);
  const TrainNeeds needs = train_needs(deck, ranks);
  // A rank's windows of a step go through the model together, train.micro_batch at a time.
  LanguageModel<S> model(
      config, deck.run.seed,
      windows_at_once(deck, config, deck.model.dtype, last - first, by_sequence ? needs.tokens_per_window : 0),
      by_sequence ? comm : MPI_COMM_NULL);
  const OptimizerConfig schedule = optimizer_config(deck);
  AdamW<S> adamw(schedule, model.slots());
  const double flops_per_token = training_flops_per_token(config);
  if (!from.empty()) {
    model.set_parameters(state.params);
    from_host(state.moment1, adamw.moment1());
    from_host(state.moment2, adamw.moment2());
  }
  {
    char line[256];
    std::snprintf(line, sizeof line,
                  "model      %d layers, width %d, %d heads, context %lld, positions %s, %s, %s attention, %lld "
                  "parameters, %s activations for %lld window(s), %.3g training FLOPs per token",
                  config.layers, config.width, config.heads, static_cast<long long>(T), name_of(config.positions),
                  name_of(deck.model.dtype), name_of(config.attention.method),
                  static_cast<long long>(parameter_count(model.slots())),
                  format_bytes(double(model.workspace_bytes())).c_str(), static_cast<long long>(model.max_windows()),
                  flops_per_token);
    log(line);
    log("data       " + train_data.path() + " (" + format_bytes(double(train_data.size())) + "), validation " +
        val_data.path() + " (" + format_bytes(double(val_data.size())) + ")");
    if (by_sequence) {
      std::snprintf(line, sizeof line,
                    "parallel   sequence: every window sharded over %d ranks, %lld positions on rank 0, %s per rank, "
                    "%s sent per rank per step (planned)",
                    ranks, static_cast<long long>(needs.tokens_per_window), format_bytes(needs.bytes_per_rank).c_str(),
                    format_bytes(needs.sent_per_step).c_str());
      log(line);
    }
  }

  const std::string yaml = to_yaml(deck);
  auto save = [&]() {
    state.params = to_host(model.parameters());
    state.moment1 = to_host(adamw.moment1());
    state.moment2 = to_host(adamw.moment2());
    // Data parallel: rank 0 holds the whole model and writes it. Sharded: every rank writes its
    // rows of P into the same file, collectively.
    std::string problem;
    if (by_sequence) {
      try {
        save_model(path, state, yaml, ranks, comm, &model.slots());
      } catch (const std::exception& e) {
        problem = e.what();
      }
      int failed = !problem.empty();
      MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, comm);
      if (failed && problem.empty()) problem = "another rank could not write its part";
    } else {
      problem = failure_on_root(comm, [&] { save_model(path, state, yaml, ranks); });
    }
    if (!problem.empty()) throw std::runtime_error("writing checkpoint " + path + ": " + problem);
  };
  auto validate = [&]() {
    const std::vector<double> losses = validation_losses(model, val_data, deck.run.seed, deck.train.eval_windows, comm);
    double sum = 0;
    for (double l : losses) sum += l;
    const double bpb = sum / double(losses.size()) / std::log(2.0);
    state.history.val_loss.push_back(bpb);
    state.history.val_step.push_back(state.step);
    char line[160];
    std::snprintf(line, sizeof line, "validation step %lld: %.4f bits per byte (%lld windows)",
                  static_cast<long long>(state.step), bpb, static_cast<long long>(losses.size()));
    log(line);
    return bpb;
  };

  TrainSummary summary;
  summary.first_step = state.step + 1;
  summary.last_step = steps;
  summary.checkpoint = path;
  const double grad_scale = 1.0 / double(T * B);
  // The step `path` holds: the restart's only when it is the same file.
  std::int64_t saved = !from.empty() && same_file(from, path) ? state.step : 0;
  const auto on_disk = [&] {
    return "; " + path + (saved > 0 ? " keeps step " + std::to_string(saved) : std::string(" was not written"));
  };
  double stepping = 0, last_progress = 0;
  Stopwatch since_start;
  const interrupt::Deferred finish_the_step;
  for (std::int64_t t = state.step + 1; t <= steps; ++t) {
    Stopwatch watch;
    const CommStats comm_before = model.communication();
    model.zero_gradients();
    std::vector<double> mine;
    double stop_seen = -1;  // a stop finishes the step unless that takes over 5 s more
    const auto give_up = [&] {
      int stop = 0;
      if (interrupt::requested()) {
        if (stop_seen < 0) stop_seen = watch.seconds();
        stop = watch.seconds() - stop_seen > 5;
      }
      // Sharded, every rank takes part in every batch's attention: all stop together or none.
      if (by_sequence) MPI_Allreduce(MPI_IN_PLACE, &stop, 1, MPI_INT, MPI_MAX, comm);
      return stop != 0;
    };
    // The rank's windows in batches of up to model.max_windows(), each through the model at once.
    for (std::int64_t i = first; i < last && !give_up(); i += model.max_windows()) {
      std::vector<const std::uint8_t*> batch;
      for (std::int64_t j = i; j < last && j < i + model.max_windows(); ++j)
        batch.push_back(train_data.at(train_offset(state.seed, t, j, train_data.size(), T + 1)));
      for (const double l : model.windows(batch, grad_scale)) mine.push_back(l);
    }
    // A step given up after a stop: the last finished one is kept.
    int cut = int(std::int64_t(mine.size()) < last - first);
    MPI_Allreduce(MPI_IN_PLACE, &cut, 1, MPI_INT, MPI_MAX, comm);
    if (cut) {
      if (t - 1 > saved) {
        save();
        saved = t - 1;
      }
      throw Interrupted("train stopped by " + std::string(interrupt::signal_name(interrupt::requested())) +
                        " during step " + std::to_string(t) + " of " + std::to_string(steps) + on_disk() +
                        (saved > 0 ? ": run again with train.restart_from=" + path + " to continue" : ""));
    }
    double loss = 0;
    for (double l : all_gather(mine, comm)) loss += l;
    loss /= double(T * B) * std::log(2.0);
    sum_gradients(model, comm);
    const double gnorm = gradient_norm(model, adamw, comm);
    adamw.step(t, model.parameters(), model.gradients(), gnorm);
    model.parameters_changed();
    if (!std::isfinite(loss) || !std::isfinite(gnorm) || !std::isfinite(adamw.norm(model.parameters())) ||
        !std::isfinite(adamw.norm(adamw.moment1())) || !std::isfinite(adamw.norm(adamw.moment2())))
      throw std::runtime_error("train: step " + std::to_string(t) +
                               " gave a non-finite loss, gradient, parameter or optimizer moment (diverged: lower "
                               "train.learning_rate or train.clip_norm); stopped without saving it" +
                               on_disk());
    double seconds = watch.seconds();
    MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, comm);
    stepping += seconds;
    state.step = t;
    state.history.loss.push_back(loss);
    state.history.learning_rate.push_back(learning_rate_at(schedule, t));
    state.history.grad_norm.push_back(gnorm);
    state.history.tokens_per_second.push_back(double(T * B) / seconds);
    if (t == summary.first_step) summary.first_loss = loss;
    summary.last_loss = loss;
    char line[256];
    std::snprintf(line, sizeof line, "step %6lld/%lld  loss %.4f bpb  lr %.3e  |g| %.3e  %9.0f tok/s  %7.1f GFLOP/s",
                  static_cast<long long>(t), static_cast<long long>(steps), loss, state.history.learning_rate.back(),
                  gnorm, state.history.tokens_per_second.back(),
                  state.history.tokens_per_second.back() * flops_per_token * 1e-9);
    if (by_sequence) {
      // The attention's messages of the step: the slowest rank's waiting, the busiest's bytes.
      const CommStats now = model.communication();
      double most[2] = {now.seconds - comm_before.seconds, double(now.bytes_sent - comm_before.bytes_sent)};
      MPI_Allreduce(MPI_IN_PLACE, most, 2, MPI_DOUBLE, MPI_MAX, comm);
      std::snprintf(line + std::strlen(line), sizeof line - std::strlen(line), "  comm %.2fs %s", most[0],
                    format_bytes(most[1]).c_str());
    }
    log(line);
    const double taken = double(t - summary.first_step + 1);
    if (deck.run.progress_seconds > 0 && since_start.seconds() - last_progress >= deck.run.progress_seconds &&
        t < steps) {
      last_progress = since_start.seconds();
      std::snprintf(line, sizeof line, "progress   step %lld of %lld (%.1f%%), %s elapsed, about %s left",
                    static_cast<long long>(t), static_cast<long long>(steps), 100.0 * double(t) / double(steps),
                    duration(since_start.seconds()).c_str(), duration(stepping / taken * double(steps - t)).c_str());
      log(line);
    }
    if (t % deck.train.eval_every == 0 || t == steps) summary.val_loss = validate();
    if (!std::isfinite(summary.val_loss))
      throw std::runtime_error("train: the validation loss at step " + std::to_string(t) +
                               " is not finite (diverged: lower train.learning_rate or train.clip_norm); stopped "
                               "without saving step " +
                               std::to_string(t) + on_disk());
    int stop = interrupt::requested();
    MPI_Allreduce(MPI_IN_PLACE, &stop, 1, MPI_INT, MPI_MAX, comm);
    if (t % deck.train.checkpoint_every == 0 || t == steps || stop) {
      save();
      saved = t;
      log("checkpoint step " + std::to_string(t) + " -> " + path);
    }
    if (stop && t < steps)
      throw Interrupted("train stopped by " + std::string(interrupt::signal_name(stop)) + " after step " +
                        std::to_string(t) + " of " + std::to_string(steps) + "; " + path +
                        " holds it: run again with train.restart_from=" + path + " to continue");
  }
  if (summary.first_step > steps) {
    log("nothing to do: the checkpoint is at step " + std::to_string(steps));
    summary.val_loss = state.history.val_loss.empty() ? validate() : state.history.val_loss.back();
    if (!std::isfinite(summary.val_loss))
      throw std::runtime_error("train: the validation loss of " + from + " at step " + std::to_string(steps) +
                               " is not finite; nothing was written");
  }
  const double taken = double(std::max<std::int64_t>(0, steps - summary.first_step + 1));
  summary.tokens_per_second = taken > 0 ? taken * double(T * B) / stepping : 0;
  summary.model_flops_per_second = summary.tokens_per_second * flops_per_token;
  summary.seconds = total.seconds();
  MPI_Allreduce(MPI_IN_PLACE, &summary.seconds, 1, MPI_DOUBLE, MPI_MAX, comm);
  return summary;
}

}  // namespace

TrainSummary train_deck(const Deck& deck, const LogSink& log, MPI_Comm comm) {
  return deck.model.dtype == Dtype::float32 ? train_typed<float>(deck, log, comm)
                                            : train_typed<double>(deck, log, comm);
}

}  // namespace fmattn
