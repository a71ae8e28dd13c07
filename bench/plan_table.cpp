// fmattn_plan_table: the communication plan's bytes per rank for a range of rank counts, from
// the planner alone (no MPI run): the prediction for runs larger than the machine at hand.
//
//   fmattn_plan_table [--tokens-per-rank 1048576 | --length N] [--m 64] [--p 4] [--d 64]
//                     [--heads 4] [--bytes 4] [--variant causal|bidirectional]
//                     [--ranks 1,2,4,...,4096]
// With --tokens-per-rank (the default) the length grows with the ranks (weak scaling); with
// --length it is fixed (strong scaling). Prints a Markdown table: the largest and mean bytes
// received and sent per rank and the planner's bound 2·(2m + 11pL)·heads·d·bytes.
//
//   fmattn_plan_table --model WIDTH [--layers 2] [--heads 4] [--m 256] [--p 4] [--bytes 4] ...
// The same for one layer of a sequence-sharded language model step (model.md §7; width W = heads·d,
// average downsampling, learned positions): the bytes the busiest rank sends per layer and
// window, forward and backward (the backward sends what the forward received), next to what a
// ring-attention step moves, 2·(P−1)/P·T·W words per rank and layer; and the memory per rank
// (parameters, gradients, AdamW moments and the activations of one window).
#include <fmattn/model/language_model.hpp>
#include <fmattn/model/parameters.hpp>
#include <fmattn/parallel/shard_plan.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::int64_t per_rank = std::int64_t(1) << 20, length = 0, heads = 4, bytes = 4;
  int m = 64, p = 4, d = 64, width = 0, layers = 2;
  fmattn::Variant variant = fmattn::Variant::causal;
  std::vector<int> ranks;
  for (int r = 1; r <= 4096; r *= 2) ranks.push_back(r);
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--tokens-per-rank")
        per_rank = std::stoll(next());
      else if (a == "--length")
        length = std::stoll(next());
      else if (a == "--m")
        m = std::stoi(next());
      else if (a == "--p")
        p = std::stoi(next());
      else if (a == "--d")
        d = std::stoi(next());
      else if (a == "--heads")
        heads = std::stoll(next());
      else if (a == "--bytes")
        bytes = std::stoll(next());
      else if (a == "--model")
        width = std::stoi(next());
      else if (a == "--layers")
        layers = std::stoi(next());
      else if (a == "--variant")
        variant = next() == "bidirectional" ? fmattn::Variant::bidirectional : fmattn::Variant::causal;
      else if (a == "--ranks") {
        ranks.clear();
        std::stringstream ss(next());
        for (std::string x; std::getline(ss, x, ',');) ranks.push_back(std::stoi(x));
      } else {
        throw std::runtime_error("unknown option " + a);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fmattn_plan_table: %s\n", e.what());
    return 2;
  }
  auto mib = [](double b) { return b / (1024.0 * 1024.0); };
  if (width > 0) {
    fmattn::ModelConfig c;
    c.layers = layers;
    c.width = width;
    c.heads = int(heads);
    c.block_size = m;
    c.rank = p;
    c.attention.downsampling = fmattn::Downsampling::average;
    c.positions = fmattn::Positions::none;  // the replicated parameters; P's rows are added per rank
    c.context = 2 * m;
    const double replicated = double(fmattn::parameter_count(fmattn::parameter_slots(c)));
    std::printf(
        "| ranks | context T | levels | sent per rank per layer (max) | ring attention | ratio | memory per "
        "rank |\n|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int P : ranks) {
      const std::int64_t n = length > 0 ? length : per_rank * P;
      const fmattn::Geometry g = fmattn::make_geometry(n, m, p, fmattn::Variant::causal);
      double most = 0;
      for (int r = 0; r < P; ++r) {
        const fmattn::ShardPlan plan = fmattn::plan_shard(g, r, P);
        most = std::max(most, double(plan.fine_sent + plan.coarse_sent + plan.fine_received + plan.coarse_received));
      }
      const double sent = most * 2.0 * width * double(bytes), ring = 2.0 * (P - 1) / P * double(n) * width * bytes;
      const fmattn::Shard s = fmattn::plan_shard(g, 0, P).shard;
      const std::int64_t own = s.token_end(g) - s.token_begin(g);
      const double memory = double(bytes == 4 ? fmattn::LanguageModel<float>::activation_bytes(c, 1, own)
                                              : fmattn::LanguageModel<double>::activation_bytes(c, 1, own)) +
                            4.0 * double(bytes) * (replicated + double(own) * width);
      std::printf("| %d | 2^%d | %d | %.3f MiB | %.1f MiB | %.0f | %.2f GiB |\n", P, int(std::log2(double(n))), g.L,
                  mib(sent), mib(ring), ring / sent, memory / (1024.0 * 1024.0 * 1024.0));
    }
    return 0;
  }
  const double token_bytes = 2.0 * double(heads) * d * double(bytes);  // K and V rows of all heads
  std::printf("| ranks | n | levels | received max | received mean | sent max | sent mean | bound |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int P : ranks) {
    const std::int64_t n = length > 0 ? length : per_rank * P;
    const fmattn::Geometry g = fmattn::make_geometry(n, m, p, variant);
    double rmax = 0, rsum = 0, smax = 0, ssum = 0;
    for (int r = 0; r < P; ++r) {
      const fmattn::ShardPlan plan = fmattn::plan_shard(g, r, P);
      const double in = double(plan.fine_received + plan.coarse_received) * token_bytes;
      const double out = double(plan.fine_sent + plan.coarse_sent) * token_bytes;
      rmax = std::max(rmax, in);
      smax = std::max(smax, out);
      rsum += in;
      ssum += out;
    }
    std::printf("| %d | %lld | %d | %.3f MiB | %.3f MiB | %.3f MiB | %.3f MiB | %.3f MiB |\n", P,
                static_cast<long long>(n), g.L, mib(rmax), mib(rsum / P), mib(smax), mib(ssum / P),
                mib(double(fmattn::received_token_bound(g)) * token_bytes));
  }
  return 0;
}
