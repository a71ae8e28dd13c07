// `fmattn generate`: bytes from a model checkpoint (docs/language-model.md, "Generating"). The
// prompt goes through the model's batched forward once, then every stream advances one byte
// per step through the decoder's hierarchical KV cache. Each stream's bytes go to a file of its
// own, written under a temporary name and renamed when complete (a stop leaves no partial file
// under the final name), or to standard output as they come.
#pragma once

#include <fmattn/io/deck.hpp>
#include <fmattn/util/log.hpp>

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace fmattn {

struct GenerateSummary {
  std::int64_t prompt_bytes = 0, bytes_per_stream = 0, streams = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  double bytes_per_second = 0;              // all streams' bytes over the decode time
  double seconds_per_step = 0;              // one byte for every stream
  double seconds_per_step_second_half = 0;  // the steady rate, after the first half's warm-up
  std::size_t state_bytes_per_stream = 0;
  bool stopped_at_context = false;  // a learned-positions model ran out of positions
  std::vector<std::string> outputs;
};

GenerateSummary generate_deck(const Deck& deck, const LogSink& log, MPI_Comm comm = MPI_COMM_WORLD);

}  // namespace fmattn
