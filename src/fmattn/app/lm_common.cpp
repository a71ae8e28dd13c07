#include <fmattn/app/lm_common.hpp>

#include <fmattn/app/run.hpp>

#include <fmattn/util/errors.hpp>

#include <cmath>

namespace fmattn {

ModelConfig model_config(const Deck& deck) {
  const auto& a = deck.attention;
  if (a.variant != Variant::causal)
    throw InputError("attention.variant: a language model predicts the next byte and needs causal attention");
  if (a.queries != Queries::fine) throw InputError("attention.queries: a language model needs fine queries");
  ModelConfig c;
  c.layers = int(deck.model.layers);
  c.width = int(deck.model.width);
  c.heads = int(deck.model.heads);
  c.context = int(deck.model.context);
  c.block_size = int(a.block_size);
  c.rank = int(a.rank);
  c.attention = attention_options(deck);
  // The deck's automatic scale is for problem.head_dim; the model's heads are width / heads wide.
  c.attention.scale = a.scale > 0 ? a.scale : 1.0 / std::sqrt(double(c.head_dim()));
  const std::int64_t T = c.context;
  if (a.boundary == Boundary::zero_sink && (T % a.block_size != 0 || !is_pow2(T / a.block_size)))
    throw InputError("attention.boundary: zero_sink needs model.context = block_size * 2^k, got context " +
                     std::to_string(T) + " with block_size " + std::to_string(a.block_size));
  return c;
}

void window_share(std::int64_t count, int rank, int ranks, std::int64_t& first, std::int64_t& last) {
  first = count * rank / ranks;
  last = count * (rank + 1) / ranks;
}

std::vector<double> all_gather(const std::vector<double>& mine, MPI_Comm comm) {
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);
  int n = int(mine.size());
  std::vector<int> counts(static_cast<std::size_t>(ranks)), displs(static_cast<std::size_t>(ranks), 0);
  MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, comm);
  for (int r = 1; r < ranks; ++r) displs[std::size_t(r)] = displs[std::size_t(r) - 1] + counts[std::size_t(r) - 1];
  std::vector<double> all(std::size_t(displs.back() + counts.back()));
  MPI_Allgatherv(mine.data(), n, MPI_DOUBLE, all.data(), counts.data(), displs.data(), MPI_DOUBLE, comm);
  return all;
}

template <class S>
std::vector<double> validation_losses(LanguageModel<S>& model, const Corpus& corpus, std::uint64_t seed,
                                      std::int64_t windows, MPI_Comm comm, std::vector<double>* position_losses) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  std::int64_t first = 0, last = 0;
  window_share(windows, rank, ranks, first, last);
  const std::int64_t T = model.config().context;
  std::vector<double> mine, tokens, batch_tokens;
  for (std::int64_t i = first; i < last; i += model.max_windows()) {
    std::vector<const std::uint8_t*> batch;
    for (std::int64_t j = i; j < last && j < i + model.max_windows(); ++j)
      batch.push_back(corpus.at(validation_offset(seed, j, corpus.size(), T + 1)));
    for (double sum : model.windows(batch, 0.0, position_losses ? &batch_tokens : nullptr))
      mine.push_back(sum / double(T));
    tokens.insert(tokens.end(), batch_tokens.begin(), batch_tokens.end());
  }
  if (position_losses) {
    // Every window's token losses in window order, summed in that order: the same bits on any
    // number of ranks.
    const std::vector<double> all = all_gather(tokens, comm);
    position_losses->assign(std::size_t(T), 0.0);
    for (std::int64_t w = 0; w < windows; ++w)
      for (std::int64_t t = 0; t < T; ++t) (*position_losses)[std::size_t(t)] += all[std::size_t(w * T + t)];
    for (double& x : *position_losses) x /= double(windows);
  }
  return all_gather(mine, comm);
}

template std::vector<double> validation_losses(LanguageModel<float>&, const Corpus&, std::uint64_t, std::int64_t,
                                               MPI_Comm, std::vector<double>*);
template std::vector<double> validation_losses(LanguageModel<double>&, const Corpus&, std::uint64_t, std::int64_t,
                                               MPI_Comm, std::vector<double>*);

}  // namespace fmattn
