#include "run.hpp"

#include "attention.hpp"
#include "cost.hpp"
#include "errors.hpp"
#include "inputs.hpp"
#include "output_file.hpp"
#include "profiling.hpp"
#include "sampling.hpp"
#include "weights.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <numeric>

namespace fmattn {

namespace {

std::string fmt(const char* f, double a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, a);
  return buf;
}

// Refuses problems that cannot fit in this node's memory before allocating anything.
void check_memory(const Deck& deck, const Geometry& g, std::int64_t heads, std::size_t scalar) {
  const double tokens = double(heads) * double(deck.problem.length) * double(deck.problem.head_dim);
  const double coarse_tensors = deck.attention.queries == Queries::coarse ? 4.0 : 2.0;  // qc, partials
  const double coarse =
      deck.attention.method == Method::fma
          ? coarse_tensors * double(heads) * double(g.total_coarse_tokens()) * double(deck.problem.head_dim)
          : 0.0;
  const double need = (4.0 * tokens + coarse) * double(scalar);
  const double have = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
  if (Kokkos::SpaceAccessibility<Kokkos::HostSpace, Kokkos::DefaultExecutionSpace::memory_space>::accessible &&
      need > have)
    throw InputError("problem needs " + format_bytes(need) +
                     " per rank for q, k, v, output and coarse levels; this node has " + format_bytes(have) +
                     " (use more ranks or a shorter problem.length)");
}

template <class Scalar>
RunSummary run_typed(const Deck& deck, const LogSink& log, MPI_Comm comm) {
  ScopedRegion region("fmattn::run");
  Stopwatch total;
  const auto& a = deck.attention;
  const std::int64_t heads = deck.problem.batch * deck.problem.heads;
  std::int64_t first = 0, last = 0;
  local_heads(deck, comm, first, last);
  check_writable(deck.resolved_output_file(), "output.file", comm);
  const Geometry g = make_geometry(deck.problem.length, int(a.block_size), int(a.rank), a.variant);
  check_memory(deck, g, last - first, sizeof(Scalar));
  const int d = int(deck.problem.head_dim);
  RunRecord rec;
  rec.deck = &deck;
  rec.geometry = g;
  rec.first = first;
  rec.last = last;

  Stopwatch phase;
  auto in = make_inputs<Scalar>(deck, first, last, comm);
  rec.timings.add("input", phase.seconds());
  log("input      " + fmt("%9.3f s", rec.timings.get("input")) + "  (" + name_of(deck.input.source) + ")");

  const AttentionOptions opt = attention_options(deck);
  Attention<Scalar> attention(g, opt, d, last - first);
  if (a.method == Method::fma && a.downsampling == Downsampling::learned && !deck.weights.file.empty()) {
    phase = Stopwatch();
    attention.set_weights(load_weights(deck.weights.file, g, d, a.queries == Queries::coarse));
    rec.timings.add("weights", phase.seconds());
  }

  typename Attention<Scalar>::Tensor out(Kokkos::view_alloc(Kokkos::WithoutInitializing, "fmattn::output"),
                                         last - first, g.n, d);
  MPI_Barrier(comm);
  phase = Stopwatch();
  attention.forward(in.q, in.k, in.v, out);
  Kokkos::fence();
  rec.timings.add("attention", phase.seconds());
  const AttentionCost cost = attention_cost(g, opt, d, heads);
  double attention_s = rec.timings.get("attention");
  MPI_Allreduce(MPI_IN_PLACE, &attention_s, 1, MPI_DOUBLE, MPI_MAX, comm);
  log("attention  " + fmt("%9.3f s", attention_s) + "  " + fmt("%.2f GFLOP/s", cost.flops() / attention_s * 1e-9) +
      "  (" + name_of(a.method) + ", " + name_of(a.variant) + ", levels " +
      std::to_string(a.method == Method::fma ? g.L : 0) + ", coarse workspace " +
      format_bytes(double(attention.workspace_bytes())) + ")");

  phase = Stopwatch();
  rec.samples = validate_sampled_rows<Scalar>(deck.run.seed, first, deck.validation.sample_queries, a.variant,
                                              opt.scale, in.q, in.k, in.v, out);
  rec.timings.add("validation", phase.seconds());
  double err_max = 0, err_sum = 0;
  for (double e : rec.samples.rel_error) {
    err_max = std::max(err_max, e);
    err_sum += e;
  }
  MPI_Allreduce(MPI_IN_PLACE, &err_max, 1, MPI_DOUBLE, MPI_MAX, comm);
  MPI_Allreduce(MPI_IN_PLACE, &err_sum, 1, MPI_DOUBLE, MPI_SUM, comm);
  if (rec.samples.per_head > 0)
    log("validation " + fmt("%9.3f s", rec.timings.get("validation")) + "  sampled rel. error max " +
        fmt("%.3e", err_max) + ", mean " + fmt("%.3e", err_sum / double(heads)) + " (" +
        std::to_string(rec.samples.per_head) + " rows per head)");

  // Timing attributes must be identical on all ranks: record the slowest rank's.
  rec.timings.add("total", total.seconds());
  PhaseTimes agreed;
  for (auto [name, s] : rec.timings.all()) {
    MPI_Allreduce(MPI_IN_PLACE, &s, 1, MPI_DOUBLE, MPI_MAX, comm);
    agreed.add(name, s);
  }
  rec.timings = agreed;

  phase = Stopwatch();
  const std::string path = deck.resolved_output_file();
  if (deck.output.write_output) {
    auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out);
    write_results<Scalar>(path, rec, host.data(), comm);
  } else {
    write_results<Scalar>(path, rec, static_cast<const Scalar*>(nullptr), comm);
  }
  log("write      " + fmt("%9.3f s", phase.seconds()) + "  " + path);

  RunSummary s;
  s.total_s = rec.timings.get("total");
  s.attention_s = attention_s;
  s.flops = cost.flops();
  s.gflops = cost.flops() / attention_s * 1e-9;
  s.max_rel_error = err_max;
  s.mean_rel_error = err_sum / double(heads);
  long rss = long(peak_rss_bytes());
  MPI_Allreduce(MPI_IN_PLACE, &rss, 1, MPI_LONG, MPI_MAX, comm);
  s.peak_rss = std::size_t(rss);
  s.output_file = path;
  return s;
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

void local_heads(const Deck& deck, MPI_Comm comm, std::int64_t& first, std::int64_t& last) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  const std::int64_t heads = deck.problem.batch * deck.problem.heads;
  if (ranks > heads)
    throw InputError("too many MPI ranks (" + std::to_string(ranks) + ") for batch * heads = " + std::to_string(heads) +
                     ": each rank needs at least one head");
  head_range(heads, rank, ranks, first, last);
}

void head_range(std::int64_t heads, int rank, int ranks, std::int64_t& first, std::int64_t& last) {
  const std::int64_t base = heads / ranks, extra = heads % ranks;
  first = rank * base + std::min<std::int64_t>(rank, extra);
  last = first + base + (rank < extra ? 1 : 0);
}

RunSummary run_deck(const Deck& deck, const LogSink& log, MPI_Comm comm) {
  return deck.problem.dtype == Dtype::float32 ? run_typed<float>(deck, log, comm) : run_typed<double>(deck, log, comm);
}

}  // namespace fmattn
