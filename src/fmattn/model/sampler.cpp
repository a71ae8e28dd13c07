#include <fmattn/model/sampler.hpp>

#include <fmattn/model/config.hpp>
#include "kernels/synthetic.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

namespace fmattn {

int sample_byte(const double* logits, const SamplingOptions& o, std::int64_t stream, std::int64_t position) {
  std::array<int, vocabulary> order{};
  std::iota(order.begin(), order.end(), 0);
  // Most likely first, lower byte first among equals: greedy and the cut-offs are well defined.
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  if (o.temperature == 0) return order[0];
  const int keep = o.top_k > 0 ? std::min(o.top_k, vocabulary) : vocabulary;
  std::array<double, vocabulary> prob{};
  double total = 0;
  for (int i = 0; i < keep; ++i) {
    prob[std::size_t(i)] = std::exp((logits[order[std::size_t(i)]] - logits[order[0]]) / o.temperature);
    total += prob[std::size_t(i)];
  }
  // The smallest prefix whose share of the kept probability reaches top_p.
  int kept = 0;
  double mass = 0;
  while (kept < keep) {
    mass += prob[std::size_t(kept++)];
    if (mass >= o.top_p * total) break;
  }
  const double u =
      detail::unit_uniform(detail::hash_key(o.seed, 0x6e7e4a7eull, std::uint64_t(stream), std::uint64_t(position), 0)) *
      mass;
  double cumulative = 0;
  for (int i = 0; i < kept; ++i) {
    cumulative += prob[std::size_t(i)];
    if (u <= cumulative) return order[std::size_t(i)];
  }
  return order[std::size_t(kept) - 1];
}

}  // namespace fmattn
