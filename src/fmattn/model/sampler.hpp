// The next byte from a model's logits (model.md §6): softmax(logits / temperature), kept to the
// top_k most likely bytes and then to the smallest set whose probability reaches top_p, drawn
// with a counter-based RNG of (seed, stream, position) — so a stream's bytes depend on nothing
// else (threads, other streams, restarts).
#pragma once

#include <cstdint>

namespace fmattn {

struct SamplingOptions {
  double temperature = 1.0;  // 0: the most likely byte (lowest on ties)
  int top_k = 0;             // 0: all 256
  double top_p = 1.0;        // (0, 1]
  std::uint64_t seed = 1;
};

// The byte drawn from logits[256] for `stream` at `position` (the position the byte will take).
int sample_byte(const double* logits, const SamplingOptions& o, std::int64_t stream, std::int64_t position);

}  // namespace fmattn
