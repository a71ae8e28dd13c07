#include <fmattn/app/fit.hpp>

#include <fmattn/app/run.hpp>
#include <fmattn/core/attention.hpp>
#include <fmattn/core/sampling.hpp>
#include <fmattn/io/checkpoint.hpp>
#include <fmattn/io/inputs.hpp>
#include <fmattn/io/output_file.hpp>
#include <fmattn/io/weights_file.hpp>
#include <fmattn/util/errors.hpp>
#include <fmattn/util/interrupt.hpp>
#include <fmattn/util/profiling.hpp>
#include "kernels/sampled_rows.hpp"
#include "kernels/synthetic.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

namespace fmattn {

namespace {

void check_fit_deck(const Deck& deck, const Geometry& g) {
  const auto& a = deck.attention;
  if (a.method != Method::fma) throw InputError("fit learns the downsampling of FMA: attention.method must be fma");
  if (a.downsampling != Downsampling::learned)
    throw InputError("fit learns downsampling weights: attention.downsampling must be learned");
  if (a.queries != Queries::fine)
    throw InputError("fit: attention.queries: coarse (the linear variant) has no backward pass in this version");
  if (g.L == 0)
    throw InputError("fit: problem.length " + std::to_string(g.n) + " with attention.block_size " +
                     std::to_string(g.m) + " has no coarse levels (padded length <= 2 * block_size): nothing to learn");
}

// Rank 0 writes (the weights are the same on every rank); a failure fails every rank.
void save_on_root(const std::string& path, const FitState& s, const Adam& adam, const std::string& yaml,
                  MPI_Comm comm) {
  const std::string problem = failure_on_root(comm, [&] { save_checkpoint(path, s, adam, yaml); });
  if (!problem.empty()) throw std::runtime_error("writing checkpoint " + path + ": " + problem);
}

void sum_over_ranks(std::vector<double>& x, MPI_Comm comm) {
  MPI_Allreduce(MPI_IN_PLACE, x.data(), int(x.size()), MPI_DOUBLE, MPI_SUM, comm);
}

std::string fmt(const char* f, double a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, a);
  return buf;
}

// One Adam step on an operator's weights and biases. Adam moves every parameter by about the
// learning rate, whatever its size, while the average operator's weights are p/w_l (down to
// 4p/N at the coarsest level): level l's weights therefore take learning_rate · p/w_l, i.e. the
// learning rate is relative to the average operator. Biases live on the scale of the tokens
// and take learning_rate itself.
void adam_step(const Adam& adam, std::int64_t t, const Geometry& g, int d, std::vector<double>& weight,
               std::vector<double>& bias, const std::vector<double>& gw, const std::vector<double>& gb,
               std::vector<double>& m1w, std::vector<double>& m1b, std::vector<double>& m2w, std::vector<double>& m2b) {
  for (int l = 1; l <= g.L; ++l) {
    const std::int64_t off = g.weight_offset(l, d), count = g.weight_offset(l + 1, d) - off;
    const double lr = adam.learning_rate * double(g.p) / double(g.cell_size(l));
    adam.update(t, lr, &weight[off], &gw[off], &m1w[off], &m2w[off], std::size_t(count));
  }
  adam.update(t, adam.learning_rate, bias.data(), gb.data(), m1b.data(), m2b.data(), bias.size());
}

// Every value a checkpoint would hold after a step: the loss, the weights and both moments.
bool finite_state(double loss, const FitState& s) {
  if (!std::isfinite(loss)) return false;
  for (const DownsamplingWeights* w : {&s.weights, &s.moment1, &s.moment2})
    for (const auto* v : {&w->k_weight, &w->k_bias, &w->v_weight, &w->v_bias})
      for (double x : *v)
        if (!std::isfinite(x)) return false;
  return true;
}

FitState initial_state(const Deck& deck, const Geometry& g, int d) {
  const std::string& from = deck.fit.restart_from;
  if (from.empty())
    return FitState::start(
        deck.weights.file.empty() ? DownsamplingWeights::average(g, d) : load_weights(deck.weights.file, g, d),
        deck.run.seed);
  FitState s = load_checkpoint(from, g, d);
  if (s.seed != deck.run.seed)
    throw InputError("fit.restart_from: " + from + " was made with run.seed = " + std::to_string(s.seed) +
                     ", the deck has " + std::to_string(deck.run.seed) +
                     " (a restart continues the same sequence of sampled rows)");
  if (s.step > deck.fit.steps)
    throw InputError("fit.steps = " + std::to_string(deck.fit.steps) + " is below the step of fit.restart_from " +
                     from + " (" + std::to_string(s.step) + ")");
  return s;
}

template <class Scalar>
FitSummary fit_typed(const Deck& deck, const LogSink& log, MPI_Comm comm) {
  ScopedRegion region("fmattn::fit");
  Stopwatch total;
  const Geometry g = make_geometry(deck.problem.length, int(deck.attention.block_size), int(deck.attention.rank),
                                   deck.attention.variant);
  check_fit_deck(deck, g);
  std::int64_t first = 0, last = 0;
  local_heads(deck, comm, first, last);
  const std::string& path = deck.fit.checkpoint_file;
  check_writable(path, "fit.checkpoint_file", comm);
  const int d = int(deck.problem.head_dim);
  const std::int64_t H = last - first, n = g.n, S = std::min(deck.fit.sample_queries, n);
  const std::int64_t steps = deck.fit.steps;
  FitState state = initial_state(deck, g, d);
  if (!deck.fit.restart_from.empty())
    log("restart    from " + deck.fit.restart_from + " at step " + std::to_string(state.step) + " of " +
        std::to_string(steps));
  const Adam adam{deck.fit.learning_rate};
  const AttentionOptions opt = attention_options(deck);

  auto in = make_inputs<Scalar>(deck, first, last, comm);
  Attention<Scalar> att(g, opt, d, H);
  using Tensor = typename Attention<Scalar>::Tensor;
  using Mem = typename Attention<Scalar>::memory_space;
  using Exec = typename Attention<Scalar>::execution_space;
  Tensor out(Kokkos::view_alloc(Kokkos::WithoutInitializing, "fmattn::fit_output"), H, n, d);
  Tensor dout("fmattn::fit_output_grad", H, n, d), none;
  typename Attention<Scalar>::RowValues lse(Kokkos::view_alloc(Kokkos::WithoutInitializing, "fmattn::fit_lse"), H, n);
  const double heads_total = double(deck.problem.batch * deck.problem.heads);

  // The error `fmattn run` reports for these weights: its validation rows, mean over heads.
  auto sampled_error = [&](const DownsamplingWeights& w) {
    att.set_weights(w);
    att.forward(in.q, in.k, in.v, out);
    const SampledError e = validate_sampled_rows<Scalar>(deck.run.seed, first, deck.validation.sample_queries,
                                                         deck.attention.variant, opt.scale, in.q, in.k, in.v, out);
    double sum = std::accumulate(e.rel_error.begin(), e.rel_error.end(), 0.0);
    MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, comm);
    return sum / heads_total;
  };

  FitSummary summary;
  summary.first_step = state.step + 1;
  summary.last_step = steps;
  summary.checkpoint = path;
  const bool validate = deck.validation.sample_queries > 0;
  if (validate) summary.average_error = sampled_error(DownsamplingWeights::average(g, d));
  const std::string yaml = to_yaml(deck);
  const double terms = heads_total * double(S) * double(d);
  std::int64_t saved = 0;  // the step of the last checkpoint this fit wrote
  // SIGINT/SIGTERM during the steps: finish the step, write a checkpoint, stop (Interrupted).
  const interrupt::Deferred finish_the_step;
  for (std::int64_t t = state.step + 1; t <= steps; ++t) {
    Stopwatch watch;
    // Fresh rows every step, from (seed, t) alone: a restart draws the same ones.
    const auto rows = sampled_rows(detail::hash_key(state.seed, 0xf17ull, std::uint64_t(t), 0, 0), first, H, n, S);
    Kokkos::View<double***, Kokkos::LayoutRight, Mem> exact("fmattn::fit_exact", H, S, d);
    reference_rows<Scalar>(deck.attention.variant, opt.scale, in.q, in.k, in.v, rows, exact);
    att.set_weights(state.weights);
    att.forward(in.q, in.k, in.v, out, lse);
    // Loss = mean of (out - exact)^2 over the sampled entries; dO = its gradient, nonzero on
    // the sampled rows only.
    const auto err = gather_rows<Scalar>(out, rows);
    Kokkos::deep_copy(dout, Scalar(0));
    detail::sampled_squared_error<Exec, Scalar, Mem>(Exec(), err, exact, rows, terms, dout);
    const auto sq = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), err);
    double loss = std::accumulate(sq.data(), sq.data() + sq.span(), 0.0);  // fixed order: reproducible
    MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, comm);
    loss /= terms;

    DownsamplingWeights grad;
    att.backward(in.q, in.k, in.v, out, lse, dout, none, none, none, &grad);
    for (auto* x : {&grad.k_weight, &grad.k_bias, &grad.v_weight, &grad.v_bias}) sum_over_ranks(*x, comm);
    adam_step(adam, t, g, d, state.weights.k_weight, state.weights.k_bias, grad.k_weight, grad.k_bias,
              state.moment1.k_weight, state.moment1.k_bias, state.moment2.k_weight, state.moment2.k_bias);
    adam_step(adam, t, g, d, state.weights.v_weight, state.weights.v_bias, grad.v_weight, grad.v_bias,
              state.moment1.v_weight, state.moment1.v_bias, state.moment2.v_weight, state.moment2.v_bias);
    if (!finite_state(loss, state))
      throw std::runtime_error("fit: step " + std::to_string(t) +
                               " gave a non-finite loss or parameter (diverged, or a damaged restart file); stopped "
                               "without saving it" +
                               (saved > 0 ? "; " + path + " keeps step " + std::to_string(saved) : std::string()));
    state.step = t;
    state.loss.push_back(loss);
    if (t == summary.first_step) summary.first_loss = loss;
    summary.last_loss = loss;
    // Every rank stops at the same step, whichever received the signal.
    int stop = interrupt::requested();
    MPI_Allreduce(MPI_IN_PLACE, &stop, 1, MPI_INT, MPI_MAX, comm);
    const bool save = t % deck.fit.checkpoint_every == 0 || t == steps || stop;
    if (save) {
      save_on_root(path, state, adam, yaml, comm);
      saved = t;
    }
    double seconds = watch.seconds();
    MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, comm);
    char line[160];
    std::snprintf(line, sizeof line, "step %6lld/%lld  loss %.6e  %8.3f s%s", static_cast<long long>(t),
                  static_cast<long long>(steps), loss, seconds, save ? "  (checkpoint)" : "");
    log(line);
    if (stop && t < steps)
      throw Interrupted("fit stopped by " + std::string(interrupt::signal_name(stop)) + " after step " +
                        std::to_string(t) + " of " + std::to_string(steps) + "; " + path +
                        " holds it: run again with fit.restart_from=" + path + " to continue");
  }
  if (summary.first_step > steps) log("nothing to do: the checkpoint is at step " + std::to_string(steps));
  if (validate) {
    summary.fitted_error = sampled_error(state.weights);
    log("validation sampled rel. error, mean over heads: average operator " + fmt("%.4e", summary.average_error) +
        ", fitted " + fmt("%.4e", summary.fitted_error) + " (" +
        std::to_string(std::min(deck.validation.sample_queries, n)) + " rows per head)");
  }
  summary.seconds = total.seconds();
  MPI_Allreduce(MPI_IN_PLACE, &summary.seconds, 1, MPI_DOUBLE, MPI_MAX, comm);
  return summary;
}

}  // namespace

FitSummary fit_deck(const Deck& deck, const LogSink& log, MPI_Comm comm) {
  return deck.problem.dtype == Dtype::float32 ? fit_typed<float>(deck, log, comm) : fit_typed<double>(deck, log, comm);
}

}  // namespace fmattn
