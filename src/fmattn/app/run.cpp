#include <fmattn/app/run.hpp>

#include <fmattn/core/attention.hpp>
#include <fmattn/core/cost.hpp>
#include <fmattn/core/sampling.hpp>
#include <fmattn/core/weights.hpp>
#include <fmattn/io/inputs.hpp>
#include <fmattn/io/output_file.hpp>
#include <fmattn/io/weights_file.hpp>
#include <fmattn/parallel/sequence_parallel.hpp>
#include <fmattn/parallel/shard_plan.hpp>
#include <fmattn/util/errors.hpp>
#include <fmattn/util/profiling.hpp>
#include "kernels/allocation.hpp"
#include "kernels/finite.hpp"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <numeric>

namespace fmattn {

namespace {

std::string fmt(const char* f, double a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, a);
  return buf;
}

// Bytes of q, k, v, output and coarse levels for `heads` problems of `rows` stored tokens and
// `coarse` coarse tokens each.
double memory_needed(const Deck& deck, std::int64_t heads, std::int64_t rows, std::int64_t coarse) {
  const double d = double(deck.problem.head_dim);
  const double tokens = double(heads) * double(rows) * d;
  const double coarse_tensors = deck.attention.queries == Queries::coarse ? 4.0 : 2.0;  // qc, partials
  const double levels = deck.attention.method == Method::fma ? coarse_tensors * double(heads) * double(coarse) * d : 0;
  return (4.0 * tokens + levels) * (deck.problem.dtype == Dtype::float32 ? 4.0 : 8.0);
}

// Refuses problems that cannot fit in this node's memory before allocating anything.
void check_memory(double need) {
  const double have = node_memory_bytes();
  if (Kokkos::SpaceAccessibility<Kokkos::HostSpace, Kokkos::DefaultExecutionSpace::memory_space>::accessible &&
      need > have)
    throw InputError("problem needs " + format_bytes(need) +
                     " per rank for q, k, v, output and coarse levels; this node has " + format_bytes(have) +
                     " (use more ranks or a shorter problem.length)");
}

enum class Phase { input, attention, validation };

// What one rank computes: its heads of whole sequences, or (sequence sharding) its run of
// tokens of every head. Either way: inputs, forward, sampled validation; `done` is called as
// each phase ends (on every rank: it may reduce over them), `progress` during the attention.
template <class Scalar>
struct LocalRun {
  using Tensor = typename Attention<Scalar>::Tensor;
  QKV<Scalar> in;
  Tensor out;
  SampledError samples;
  CommStats comm;
  std::size_t workspace = 0;
  double input_s = 0, weights_s = 0, attention_s = 0, validation_s = 0;
  double coarse_s = 0;  // the upward pass within attention_s (whole-sequence runs)
  std::function<void(Phase)> done;
  std::function<void(double)> progress;
};

template <class Scalar>
void run_heads(const Deck& deck, const Geometry& g, const AttentionOptions& opt, MPI_Comm comm, RunRecord& rec,
               LocalRun<Scalar>& r) {
  const int d = int(deck.problem.head_dim);
  local_heads(deck, comm, rec.first, rec.last);
  rec.diag_first = rec.first;
  rec.diag_last = rec.last;
  check_memory(memory_needed(deck, rec.last - rec.first, g.n, g.total_coarse_tokens()));
  Stopwatch phase;
  r.in = make_inputs<Scalar>(deck, rec.first, rec.last, comm);
  Attention<Scalar> attention(g, opt, d, rec.last - rec.first);
  if (opt.method == Method::fma && opt.downsampling == Downsampling::learned && !deck.weights.file.empty()) {
    Stopwatch weights;
    attention.set_weights(load_weights(deck.weights.file, g, d, opt.coarse_queries));
    r.weights_s = weights.seconds();
  }
  r.out = detail::allocate<typename LocalRun<Scalar>::Tensor>(attention.execution_space_instance(), "fmattn::output",
                                                              rec.last - rec.first, g.n, d);
  r.input_s = phase.seconds() - r.weights_s;
  r.done(Phase::input);
  MPI_Barrier(comm);
  // forward() in its two steps, so that the upward pass (memory-bound) and the tile
  // evaluation (compute-bound) are timed apart.
  phase = Stopwatch();
  attention.build_coarse(r.in.q, r.in.k, r.in.v);
  Kokkos::fence();
  r.coarse_s = phase.seconds();
  attention.evaluate(r.in.q, r.in.k, r.in.v, r.out, r.progress);
  Kokkos::fence();
  r.attention_s = phase.seconds();
  r.workspace = attention.workspace_bytes();
  r.done(Phase::attention);
  phase = Stopwatch();
  r.samples = validate_sampled_rows<Scalar>(deck.run.seed, rec.first, deck.validation.sample_queries, g.variant,
                                            opt.scale, r.in.q, r.in.k, r.in.v, r.out);
  r.validation_s = phase.seconds();
}

template <class Scalar>
void run_sequence(const Deck& deck, const Geometry& g, const AttentionOptions& opt, MPI_Comm comm, RunRecord& rec,
                  LocalRun<Scalar>& r) {
  const int d = int(deck.problem.head_dim);
  const std::int64_t heads = deck.problem.batch * deck.problem.heads;
  ShardedAttention<Scalar> sharded(g, opt, d, heads, comm);
  const Shard& s = sharded.shard();
  rec.first = 0;
  rec.last = heads;
  rec.tokens = h5::TokenRange{s.token_begin(g), s.token_end(g) - s.token_begin(g)};
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  rec.diag_first = 0;
  rec.diag_last = rank == 0 ? heads : 0;  // rank 0 holds the combined sampled errors
  check_memory(memory_needed(deck, heads, s.key_end - s.key_begin, s.coarse_tokens(g)));
  Stopwatch phase;
  r.in = make_shard_inputs<Scalar>(deck, g, s, comm);
  if (opt.downsampling == Downsampling::learned && !deck.weights.file.empty()) {
    Stopwatch weights;
    sharded.local().set_weights(load_weights(deck.weights.file, g, d));
    r.weights_s = weights.seconds();
  }
  r.out = detail::allocate<typename LocalRun<Scalar>::Tensor>(sharded.local().execution_space_instance(),
                                                              "fmattn::output", heads, rec.tokens.count, d);
  r.input_s = phase.seconds() - r.weights_s;
  r.done(Phase::input);
  MPI_Barrier(comm);
  phase = Stopwatch();
  sharded.forward(r.in.q, r.in.k, r.in.v, r.out, r.progress);
  Kokkos::fence();
  r.attention_s = phase.seconds();
  r.comm = sharded.stats();
  r.workspace = sharded.local().workspace_bytes();
  r.done(Phase::attention);
  phase = Stopwatch();
  r.samples = validate_sharded_rows<Scalar>(deck.run.seed, deck.validation.sample_queries, g.variant, opt.scale, g, s,
                                            r.in.q, r.in.k, r.in.v, r.out, comm);
  r.validation_s = phase.seconds();
}

template <class Scalar>
RunSummary run_typed(const Deck& deck, const LogSink& log, MPI_Comm comm) {
  ScopedRegion region("fmattn::run");
  Stopwatch total;
  const auto& a = deck.attention;
  const std::int64_t heads = deck.problem.batch * deck.problem.heads;
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);
  check_writable(deck.resolved_output_file(), "output.file", comm);
  const Geometry g = make_geometry(deck.problem.length, int(a.block_size), int(a.rank), a.variant);
  const AttentionOptions opt = attention_options(deck);
  const bool by_sequence = ranks > 1 && deck.resolved_decomposition() == Decomposition::sequence;
  const bool coarse_timed = !by_sequence && a.method == Method::fma;
  RunRecord rec;
  rec.deck = &deck;
  rec.geometry = g;
  auto slowest = [&](double x) {
    MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_MAX, comm);
    return x;
  };
  LocalRun<Scalar> r;
  double attention_s = 0, flops = 0;
  std::int64_t bytes[2] = {0, 0};  // sent: max and sum over ranks
  Stopwatch attention_clock;       // restarted when the input phase ends, for the progress lines
  double last_line = 0;
  // Each phase's line as soon as it ends, so that a job log shows where a run is.
  r.done = [&](Phase phase) {
    if (phase == Phase::input) {
      attention_clock = Stopwatch();
      rec.timings.add("input", r.input_s);
      log("input      " + fmt("%9.3f s", slowest(r.input_s)) + "  (" + name_of(deck.input.source) + ", " +
          (by_sequence ? "sequence sharded" : "heads distributed") + " over " + std::to_string(ranks) + " rank(s))");
      const double weights_s = slowest(r.weights_s);
      if (weights_s > 0) {
        rec.timings.add("weights", r.weights_s);
        log("weights    " + fmt("%9.3f s", weights_s) + "  " + deck.weights.file);
      }
      return;
    }
    rec.timings.add("attention", r.attention_s);
    if (coarse_timed) rec.timings.add("coarse_levels", r.coarse_s);
    attention_s = slowest(r.attention_s);
    // Counted once the work is done: the count walks every fine block (slow for sizes that
    // check_memory refuses).
    flops = attention_cost(g, opt, int(deck.problem.head_dim), heads).flops();
    log("attention  " + fmt("%9.3f s", attention_s) + "  " + fmt("%.2f GFLOP/s", flops / attention_s * 1e-9) + "  (" +
        name_of(a.method) + ", " + name_of(a.variant) + ", levels " +
        std::to_string(a.method == Method::fma ? g.L : 0) + ", coarse workspace " + format_bytes(double(r.workspace)) +
        (coarse_timed ? ", of which coarse levels " + fmt("%.3f s", slowest(r.coarse_s)) : std::string()) + ")");
    if (by_sequence) {
      rec.timings.add("communication", r.comm.seconds);
      bytes[0] = bytes[1] = r.comm.bytes_sent;
      MPI_Allreduce(MPI_IN_PLACE, &bytes[0], 1, MPI_INT64_T, MPI_MAX, comm);
      MPI_Allreduce(MPI_IN_PLACE, &bytes[1], 1, MPI_INT64_T, MPI_SUM, comm);
      log("comm       " + fmt("%9.3f s", slowest(r.comm.seconds)) +
          "  (in the attention phase) bytes sent per rank: max " + format_bytes(double(bytes[0])) + ", mean " +
          format_bytes(double(bytes[1]) / ranks));
    }
  };
  // A plain line (no carriage return: job logs are files) every progress_seconds while the
  // attention runs, from this rank's share of the query tiles.
  r.progress = [&](double fraction) {
    const double t = attention_clock.seconds();
    if (deck.run.progress_seconds <= 0 || fraction >= 1 || t - last_line < deck.run.progress_seconds) return;
    last_line = t;
    log("attention  " + fmt("%5.1f %% of the query tiles", 100 * fraction) + fmt(" after %.1f s", t) +
        fmt(", about %.0f s left", t * (1 - fraction) / fraction));
  };
  if (by_sequence)
    run_sequence(deck, g, opt, comm, rec, r);
  else
    run_heads(deck, g, opt, comm, rec, r);

  // Never write non-finite results as if they were results.
  Stopwatch guard;
  std::int64_t nonfinite = detail::count_nonfinite(r.out);
  MPI_Allreduce(MPI_IN_PLACE, &nonfinite, 1, MPI_INT64_T, MPI_SUM, comm);
  r.validation_s += guard.seconds();
  if (nonfinite > 0)
    throw std::runtime_error("the attention output holds " + std::to_string(nonfinite) +
                             " non-finite values (inputs or learned weights too large for " +
                             name_of(deck.problem.dtype) + "); nothing was written");

  rec.samples = r.samples;
  rec.timings.add("validation", r.validation_s);
  double err_max = 0, err_sum = 0;
  for (double e : r.samples.rel_error) {
    err_max = std::max(err_max, e);
    err_sum += e;
  }
  if (!by_sequence) {  // each rank holds its heads' errors (sequence sharding: all, everywhere)
    MPI_Allreduce(MPI_IN_PLACE, &err_max, 1, MPI_DOUBLE, MPI_MAX, comm);
    MPI_Allreduce(MPI_IN_PLACE, &err_sum, 1, MPI_DOUBLE, MPI_SUM, comm);
  }
  if (r.samples.per_head > 0) {
    log("validation " + fmt("%9.3f s", slowest(r.validation_s)) + "  sampled rel. error max " + fmt("%.3e", err_max) +
        ", mean " + fmt("%.3e", err_sum / double(heads)) + " (" + std::to_string(r.samples.per_head) +
        " rows per head)");
    if (deck.input.source == Source::synthetic && deck.input.synthetic.kind == SyntheticKind::gaussian &&
        a.method == Method::fma && err_max > 0.1)
      log("note       i.i.d. gaussian inputs are the worst case for any hierarchical approximation (distant "
          "tokens share no structure that coarse keys could summarise): judge accuracy on smooth or real data");
  }

  // Timing attributes must be identical on all ranks: record the slowest rank's.
  PhaseTimes agreed;
  for (auto [name, sec] : rec.timings.all()) agreed.add(name, slowest(sec));
  rec.timings = agreed;
  // What a scaling study needs per rank: memory high-water and bytes sent.
  rec.threads = Kokkos::DefaultExecutionSpace().concurrency();
  rec.gflops = flops / attention_s * 1e-9;
  rec.peak_rss.assign(ranks, 0);
  rec.bytes_sent.assign(ranks, 0);
  const std::int64_t mine[2] = {std::int64_t(peak_rss_bytes()), r.comm.bytes_sent};
  std::vector<std::int64_t> all(std::size_t(2) * std::size_t(ranks));
  MPI_Allgather(mine, 2, MPI_INT64_T, all.data(), 2, MPI_INT64_T, comm);
  for (int k = 0; k < ranks; ++k) {
    rec.peak_rss[k] = all[2 * std::size_t(k)];
    rec.bytes_sent[k] = all[2 * std::size_t(k) + 1];
  }

  Stopwatch phase;
  const std::string path = deck.resolved_output_file();
  if (deck.output.write_output) {
    auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), r.out);
    write_results<Scalar>(path, rec, host.data(), comm, total);
  } else {
    write_results<Scalar>(path, rec, static_cast<const Scalar*>(nullptr), comm, total);
  }
  log("write      " + fmt("%9.3f s", slowest(phase.seconds())) + "  " + path);

  RunSummary out;
  out.total_s = slowest(total.seconds());
  out.attention_s = attention_s;
  out.flops = flops;
  out.gflops = rec.gflops;
  out.validated = r.samples.per_head > 0;
  out.max_rel_error = err_max;
  out.mean_rel_error = err_sum / double(heads);
  out.bytes_sent_max = bytes[0];
  out.peak_rss = std::size_t(*std::max_element(rec.peak_rss.begin(), rec.peak_rss.end()));
  out.output_file = path;
  return out;
}

}  // namespace

AttentionOptions attention_options(const Deck& deck) {
  const auto& a = deck.attention;
  AttentionOptions opt;
  opt.method = a.method;
  opt.downsampling = a.downsampling;
  opt.count_weighting = a.count_weighting;
  opt.boundary = a.boundary;
  opt.scale = deck.resolved_scale();
  opt.coarse_queries = a.queries == Queries::coarse;
  return opt;
}

namespace {
void check_heads_per_rank(const Deck& deck, int ranks) {
  const std::int64_t heads = deck.problem.batch * deck.problem.heads;
  if (ranks <= heads) return;
  const bool can_shard = deck.attention.method == Method::fma && deck.attention.queries == Queries::fine;
  throw InputError("too many MPI ranks (" + std::to_string(ranks) + ") for batch * heads = " + std::to_string(heads) +
                   ": each rank needs at least one head" +
                   (can_shard ? "; parallel.decomposition: sequence (or auto) shards the sequence instead"
                              : "; exact attention and the linear variant split heads only: use at most " +
                                    std::to_string(heads) + " ranks"));
}
}  // namespace

void local_heads(const Deck& deck, MPI_Comm comm, std::int64_t& first, std::int64_t& last) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  check_heads_per_rank(deck, ranks);
  balanced_range(deck.problem.batch * deck.problem.heads, rank, ranks, first, last);
}

RunNeeds run_needs(const Deck& deck, int ranks) {
  const auto& a = deck.attention;
  const Geometry g = make_geometry(deck.problem.length, int(a.block_size), int(a.rank), a.variant);
  const std::int64_t heads = deck.problem.batch * deck.problem.heads;
  RunNeeds needs;
  needs.levels = a.method == Method::fma ? g.L : 0;
  needs.output_bytes = deck.output.write_output ? double(heads) * double(g.n) * double(deck.problem.head_dim) *
                                                      (deck.problem.dtype == Dtype::float32 ? 4.0 : 8.0)
                                                : 0.0;
  needs.node_bytes = node_memory_bytes();
  if (ranks > 1 && deck.resolved_decomposition() == Decomposition::sequence) {
    // Rank 0 holds the most: balanced ranges give the extra blocks to the first ranks.
    const Shard s = plan_shard(g, 0, ranks).shard;
    needs.bytes_per_rank = memory_needed(deck, heads, s.key_end - s.key_begin, s.coarse_tokens(g));
  } else {
    check_heads_per_rank(deck, ranks);
    needs.bytes_per_rank = memory_needed(deck, (heads + ranks - 1) / ranks, g.n, g.total_coarse_tokens());
  }
  check_memory(needs.bytes_per_rank);
  return needs;
}

RunSummary run_deck(const Deck& deck, const LogSink& log, MPI_Comm comm) {
  return deck.problem.dtype == Dtype::float32 ? run_typed<float>(deck, log, comm) : run_typed<double>(deck, log, comm);
}

}  // namespace fmattn
