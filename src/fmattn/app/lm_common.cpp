#include <fmattn/app/lm_common.hpp>

#include <fmattn/app/run.hpp>
#include <fmattn/parallel/shard_plan.hpp>

#include <fmattn/util/errors.hpp>
#include <fmattn/util/log.hpp>

#include <algorithm>
#include <cmath>
#include <new>

namespace fmattn {

namespace {

void check_zero_sink_context(const Deck& deck, const ModelConfig& c) {
  const std::int64_t T = c.context;
  if (c.attention.boundary == Boundary::zero_sink && (T % c.block_size != 0 || !is_pow2(T / c.block_size)))
    throw InputError(deck.where(deck.gives("model.context") ? "model.context" : "attention.boundary") +
                     ": zero_sink needs model.context = block_size * 2^k, got context " + std::to_string(T) +
                     " with block_size " + std::to_string(c.block_size));
}

}  // namespace

ModelConfig model_config(const Deck& deck) {
  const auto& a = deck.attention;
  if (a.variant != Variant::causal)
    throw InputError(deck.where("attention.variant") +
                     ": a language model predicts the next byte and needs causal attention");
  if (a.queries != Queries::fine)
    throw InputError(deck.where("attention.queries") + ": a language model needs fine queries");
  ModelConfig c;
  c.layers = int(deck.model.layers);
  c.width = int(deck.model.width);
  c.heads = int(deck.model.heads);
  c.context = int(deck.model.context);
  c.positions = deck.model.positions;
  c.block_size = int(a.block_size);
  c.rank = int(a.rank);
  c.attention = attention_options(deck);
  // The deck's automatic scale is for problem.head_dim; the model's heads are width / heads wide.
  c.attention.scale = a.scale > 0 ? a.scale : 1.0 / std::sqrt(double(c.head_dim()));
  check_zero_sink_context(deck, c);
  return c;
}

ModelConfig eval_config(const Deck& deck, const ModelState& state) {
  ModelConfig c = state.config;
  if (deck.gives("model.context") && !c.learned_positions()) {
    c.context = int(deck.model.context);
    check_zero_sink_context(deck, c);
  }
  return c;
}

Corpus load_corpus(const Deck& deck, const std::string& key, const std::string& path, std::int64_t window) {
  try {
    return Corpus(path, deck.where(key), window);
  } catch (const std::bad_alloc&) {
    throw InputError(deck.where(key) + ": '" + path + "' does not fit in this node's memory");
  }
}

ModelState load_checkpoint(const Deck& deck, const std::string& key, const std::string& path, const ModelState* expect,
                           const PartOf& part) {
  try {
    return load_model(path, expect, part);
  } catch (const InputError& e) {
    throw InputError(deck.where(key) + ": " + e.what());
  }
}

void check_deck_matches(const Deck& deck, const ModelState& state) {
  const ModelConfig& c = state.config;
  const auto& a = deck.attention;
  auto differ = [&](const char* key, const std::string& deck_value, const std::string& checkpoint_value) {
    if (deck.gives(key) && deck_value != checkpoint_value)
      throw InputError(deck.where(key) + ": the deck says " + deck_value + ", the checkpoint (eval.checkpoint) " +
                       "was trained with " + checkpoint_value +
                       "; eval runs the checkpoint's model: remove the key or set it to " + checkpoint_value);
  };
  const auto n = [](std::int64_t v) { return std::to_string(v); };
  differ("model.layers", n(deck.model.layers), n(c.layers));
  differ("model.width", n(deck.model.width), n(c.width));
  differ("model.heads", n(deck.model.heads), n(c.heads));
  differ("model.positions", name_of(deck.model.positions), name_of(c.positions));
  if (c.learned_positions()) differ("model.context", n(deck.model.context), n(c.context));
  differ("model.dtype", name_of(deck.model.dtype), name_of(state.dtype));
  differ("attention.method", name_of(a.method), name_of(c.attention.method));
  differ("attention.block_size", n(a.block_size), n(c.block_size));
  differ("attention.rank", n(a.rank), n(c.rank));
  differ("attention.downsampling", name_of(a.downsampling), name_of(c.attention.downsampling));
  differ("attention.boundary", name_of(a.boundary), name_of(c.attention.boundary));
}

PartOf sequence_part(int rank, int ranks) {
  return [rank, ranks](const ModelConfig& c) {
    if (!c.learned_positions()) return parameter_slots(c);
    const Geometry g = c.geometry();
    const Shard s = plan_shard(g, rank, ranks).shard;
    return parameter_slots(c, s.token_begin(g), s.token_end(g));
  };
}

bool shards_windows(const Deck& deck, const ModelConfig& c, int ranks) {
  const Decomposition d = deck.parallel.decomposition;
  if (d == Decomposition::heads)
    throw InputError(deck.where("parallel.decomposition") +
                     ": heads applies to fmattn run; train and eval take data (windows per rank) or sequence (every "
                     "window sharded)");
  const bool sequence = d == Decomposition::sequence || (d == Decomposition::automatic && ranks > deck.train.batch);
  if (!sequence) return false;
  if (c.attention.method == Method::exact)
    throw InputError(deck.where("parallel.decomposition") +
                     ": sequence sharding needs attention.method fma or local, not exact (use data, with at most "
                     "train.batch ranks)");
  const std::int64_t blocks = (std::int64_t(c.context) + c.block_size - 1) / c.block_size;
  if (ranks > blocks)
    throw InputError(deck.where("parallel.decomposition") + ": " + std::to_string(ranks) +
                     " ranks cannot share a window of model.context = " + std::to_string(c.context) +
                     " bytes in blocks of attention.block_size = " + std::to_string(c.block_size) + ": at most " +
                     std::to_string(blocks) + " (one block per rank)");
  return true;
}

std::int64_t windows_at_once(const Deck& deck, const ModelConfig& c, Dtype dtype, std::int64_t share, std::int64_t rows,
                             bool check_memory) {
  const bool single = dtype == Dtype::float32;
  const auto bytes = [&](std::int64_t w) {
    return single ? LanguageModel<float>::activation_bytes(c, w, rows)
                  : LanguageModel<double>::activation_bytes(c, w, rows);
  };
  std::int64_t n = deck.train.micro_batch;
  if (n == 0)  // up to 2^17 tokens a call (a stop is honoured between calls) in 4 GiB
    n = std::max<std::int64_t>(1, std::min(std::int64_t((std::size_t(4) << 30) / bytes(1)),
                                           (std::int64_t(1) << 17) / (rows > 0 ? rows : std::int64_t(c.context))));
  n = std::min(n, share);
  const double memory = node_memory_bytes();
  if (check_memory && memory > 0 && double(bytes(n)) > 0.8 * memory)
    throw InputError(deck.where(deck.train.micro_batch > 0 ? "train.micro_batch" : "model.context") + ": " +
                     std::to_string(n) + " window(s) of " + std::to_string(c.context) + " bytes need " +
                     format_bytes(double(bytes(n))) + " of activations, more than this node's " + format_bytes(memory) +
                     " allows (set train.micro_batch lower, or a smaller model.context)");
  return n;
}

TrainNeeds train_needs(const Deck& deck, int ranks) {
  TrainNeeds n;
  const ModelConfig c = model_config(deck);
  const Geometry g = c.geometry();
  const std::int64_t B = deck.train.batch;
  n.sequence = shards_windows(deck, c, ranks);
  n.windows_per_rank = n.sequence ? B : (B + ranks - 1) / ranks;
  n.tokens_per_window = c.context;
  const std::size_t scalar = deck.model.dtype == Dtype::float32 ? sizeof(float) : sizeof(double);
  std::int64_t params = parameter_count(parameter_slots(c));
  if (n.sequence) {
    // Rank 0 holds the most (balanced ranges give the extra blocks to the first ranks). Per
    // layer and window, a rank sends what the forward's plan sends and, in the backward,
    // what it received (the gradients go back the same ways).
    const Shard s = plan_shard(g, 0, ranks).shard;
    n.tokens_per_window = s.token_end(g) - s.token_begin(g);
    params = parameter_count(parameter_slots(c, s.token_begin(g), s.token_end(g)));
    std::int64_t most = 0;
    for (int r = 0; r < ranks; ++r) {
      const ShardPlan p = plan_shard(g, r, ranks);
      // Local attention has the halo alone: no coarse cell travels.
      const bool far = c.attention.method == Method::fma;
      most = std::max(most, p.fine_sent + p.fine_received + (far ? p.coarse_sent + p.coarse_received : 0));
    }
    n.sent_per_layer = double(most) * 2.0 * double(c.width) * double(scalar);
    n.sent_per_step = n.sent_per_layer * double(c.layers) * double(B);
  }
  const std::int64_t rows = n.sequence ? n.tokens_per_window : 0;
  const std::int64_t at_once = windows_at_once(deck, c, deck.model.dtype, n.windows_per_rank, rows, false);
  const std::size_t activations = deck.model.dtype == Dtype::float32
                                      ? LanguageModel<float>::activation_bytes(c, at_once, rows)
                                      : LanguageModel<double>::activation_bytes(c, at_once, rows);
  // Parameters, gradients and AdamW's two moments.
  n.bytes_per_rank = double(activations) + 4.0 * double(params) * double(scalar);
  return n;
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
  std::int64_t first = 0, last = windows;
  if (!model.sharded()) window_share(windows, rank, ranks, first, last);
  const std::int64_t T = model.config().context;
  std::vector<double> mine, tokens, batch_tokens;
  for (std::int64_t i = first; i < last; i += model.max_windows()) {
    std::vector<const std::uint8_t*> batch;
    for (std::int64_t j = i; j < last && j < i + model.max_windows(); ++j)
      batch.push_back(corpus.at(validation_offset(seed, j, corpus.size(), T + 1)));
    for (double sum : model.windows(batch, 0.0, position_losses ? &batch_tokens : nullptr))
      mine.push_back(model.sharded() ? sum : sum / double(T));
    tokens.insert(tokens.end(), batch_tokens.begin(), batch_tokens.end());
  }
  if (model.sharded()) {
    // Every rank's terms of every window, added in rank order; each rank's positions are a run
    // of the window's, in rank order.
    const std::vector<double> all = all_gather(mine, comm);
    std::vector<double> losses(std::size_t(windows), 0.0);
    for (int r = 0; r < ranks; ++r)
      for (std::int64_t w = 0; w < windows; ++w) losses[std::size_t(w)] += all[std::size_t(r * windows + w)];
    for (double& x : losses) x /= double(T);
    if (position_losses) {
      const std::int64_t own = model.token_end() - model.token_begin();
      std::vector<double> by_position(std::size_t(own), 0.0);
      for (std::int64_t w = 0; w < windows; ++w)
        for (std::int64_t t = 0; t < own; ++t) by_position[std::size_t(t)] += tokens[std::size_t(w * own + t)];
      for (double& x : by_position) x /= double(windows);
      *position_losses = all_gather(by_position, comm);
    }
    return losses;
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
