#include <fmattn/model/decoder.hpp>

#include <fmattn/model/model_views.hpp>
#include <fmattn/util/profiling.hpp>
#include "kernels/decode_attention.hpp"
#include "kernels/dense_gemm.hpp"
#include "kernels/lm_block.hpp"
#include "kernels/lm_layers.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace fmattn {

namespace {

// Coarse levels a query at position t < capacity can reach: those with a cell two before its
// own (model.md §6: beyond T, as many as the prefix's length implies).
int levels_for(std::int64_t capacity, int m) {
  int l = 0;
  while ((capacity - 1) / (std::int64_t(m) << l) >= 2) ++l;
  return l;
}

// What the decoder of model c keeps for positions 0 .. capacity − 1.
detail::DecodeShape shape_of(const ModelConfig& c, std::int64_t capacity) {
  const Geometry window = c.geometry();
  detail::DecodeShape shape;
  shape.heads = c.heads;
  shape.d = c.head_dim();
  shape.m = c.block_size;
  shape.p = c.rank;
  shape.method = c.attention.method;
  shape.count_weighting = c.attention.count_weighting;
  shape.scale = c.attention.scale;
  shape.zero_sink = c.attention.boundary == Boundary::zero_sink;
  shape.sink_levels = shape.zero_sink ? window.L : 0;
  if (shape.method == Method::fma) shape.levels = std::max(levels_for(capacity, c.block_size), shape.sink_levels);
  shape.learned_levels = c.learned_basis() ? std::min(shape.levels, window.L) : 0;
  shape.ring = shape.method == Method::exact ? capacity : 2 * std::int64_t(c.block_size);
  return shape;
}

}  // namespace

template <class S>
struct Decoder<S>::Impl {
  using Memory = memory_space;
  using Matrix = detail::ModelMatrix<S, Memory>;
  using Vec = detail::ModelVector<S, Memory>;
  execution_space space;
  detail::ModelViews<S, Memory> p;
  detail::DecodeShape shape;
  detail::DecodeState<S, Memory> state;
  // Rows of the streams: the residual stream, the LayerNorms' outputs, q, k, v, attention
  // output, the MLP's pre- and post-GELU values, the final norm and the logits.
  Matrix x, a, h, q, k, v, y, u, g, f, logits;
  // Eᵀ [W][256], for the logits f·Eᵀ as a product whose B is read in place (few rows), not
  // packed every step; the same sums in the same order, so the same logits.
  Matrix embedding_t;
  Vec mean, rstd;
  Kokkos::View<int*, Memory> tokens;
  // Their host copies, made once: a step moves bytes in and logits out.
  typename Kokkos::View<int*, Memory>::HostMirror tokens_host;
  typename Matrix::HostMirror logits_host;

  Impl(const LanguageModel<S>& model, std::int64_t streams, std::int64_t capacity)
      : p(model.parameters(), model.slots(), model.config()) {
    const ModelConfig& c = model.config();
    const int H = c.heads, d = c.head_dim(), W = c.width, layers = c.layers;
    shape = shape_of(c, capacity);
    const std::int64_t units = streams * H, cells = std::int64_t(detail::kept_cells) * c.rank;
    auto state4 = [&](const char* label, std::int64_t n1) {
      return decltype(state.ring_k)(std::string("fmattn::decoder::") + label, layers, units, n1, d);
    };
    auto state5 = [&](const char* label, std::int64_t n2) {
      return decltype(state.cell_k)(std::string("fmattn::decoder::") + label, layers, units, shape.levels, n2, d);
    };
    state.ring_k = state4("ring_k", shape.ring);
    state.ring_v = state4("ring_v", shape.ring);
    state.cell_k = state5("cell_k", cells);
    state.cell_v = state5("cell_v", cells);
    state.sum_k = state5("sum_k", c.rank);
    state.sum_v = state5("sum_v", c.rank);
    state.scores = decltype(state.scores)("fmattn::decoder::scores", units, shape.max_slots());
    // The learned basis functions of each block's levels 1 .. learned_levels, K and V, copied
    // from the parameters in the layout the kernels index (Geometry::weight_offset).
    const std::int64_t weights = shape.weight_offset(shape.learned_levels + 1),
                       biases = std::int64_t(shape.learned_levels) * c.rank * d;
    state.weight_k = decltype(state.weight_k)("fmattn::decoder::weight_k", layers, weights);
    state.weight_v = decltype(state.weight_v)("fmattn::decoder::weight_v", layers, weights);
    state.bias_k = decltype(state.bias_k)("fmattn::decoder::bias_k", layers, biases);
    state.bias_v = decltype(state.bias_v)("fmattn::decoder::bias_v", layers, biases);
    const auto& flat = model.parameters();
    for (int b = 0; b < layers; ++b)
      for (int l = 1; l <= shape.learned_levels; ++l)
        for (const char op : {'k', 'v'}) {
          const ParameterSlot& w = find_slot(model.slots(), basis_prefix(b, op, l) + "weight");
          const ParameterSlot& bias = find_slot(model.slots(), basis_prefix(b, op, l) + "bias");
          const std::int64_t wo = shape.weight_offset(l), bo = std::int64_t(l - 1) * c.rank * d;
          const auto& weight_to = op == 'k' ? state.weight_k : state.weight_v;
          const auto& bias_to = op == 'k' ? state.bias_k : state.bias_v;
          Kokkos::deep_copy(space, Kokkos::subview(weight_to, b, std::make_pair(wo, wo + w.size)),
                            Kokkos::subview(flat, std::make_pair(w.offset, w.offset + w.size)));
          Kokkos::deep_copy(space, Kokkos::subview(bias_to, b, std::make_pair(bo, bo + bias.size)),
                            Kokkos::subview(flat, std::make_pair(bias.offset, bias.offset + bias.size)));
        }
    auto rows = [&](const char* label, std::int64_t cols) {
      return Matrix(Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string("fmattn::decoder::") + label), streams,
                    cols);
    };
    x = rows("x", W);
    a = rows("normed", W);
    h = rows("h", W);
    q = rows("q", W);
    k = rows("k", W);
    v = rows("v", W);
    y = rows("y", W);
    u = rows("mlp_u", 4 * std::int64_t(W));
    g = rows("mlp_g", 4 * std::int64_t(W));
    f = rows("final_norm", W);
    logits = rows("logits", vocabulary);
    mean = Vec("fmattn::decoder::mean", streams);
    rstd = Vec("fmattn::decoder::rstd", streams);
    tokens = decltype(tokens)("fmattn::decoder::tokens", streams);
    embedding_t =
        Matrix(Kokkos::view_alloc(Kokkos::WithoutInitializing, "fmattn::decoder::embedding_t"), W, vocabulary);
    detail::lm::transpose(space, p.embedding, embedding_t);
    tokens_host = Kokkos::create_mirror_view(tokens);
    logits_host = Kokkos::create_mirror_view(logits);
  }

  detail::DecodeLayer<S, Memory> layer(int b) const { return {shape, state, b}; }
};

template <class S>
std::int64_t Decoder<S>::positions_limit(const ModelConfig& c) {
  if (c.positions == Positions::learned || c.attention.boundary == Boundary::zero_sink) return c.context;
  return std::numeric_limits<std::int64_t>::max();
}

template <class S>
Decoder<S>::Decoder(LanguageModel<S>& model, std::int64_t streams, std::int64_t capacity)
    : model_(model), streams_(streams), capacity_(capacity) {
  if (streams < 1) throw std::invalid_argument("Decoder: streams must be at least 1");
  if (capacity < 1 || capacity > positions_limit(model.config()))
    throw std::invalid_argument("Decoder: capacity " + std::to_string(capacity) + " outside 1 .. " +
                                std::to_string(positions_limit(model.config())));
  impl_ = std::make_unique<Impl>(model, streams, capacity);
}

template <class S>
Decoder<S>::~Decoder() = default;

template <class S>
void Decoder<S>::prefill(const std::vector<std::uint8_t>& prompt, std::size_t forward_budget) {
  ScopedRegion region("fmattn::Decoder::prefill");
  const ModelConfig& c = model_.config();
  const std::int64_t n = std::int64_t(prompt.size()), T = c.context;
  if (n < 1 || n > capacity_)
    throw std::invalid_argument("Decoder::prefill: a prompt of 1 .. " + std::to_string(capacity_) + " bytes, got " +
                                std::to_string(n));
  // A prompt longer than the context (positions none) goes through a model of its length with
  // the same parameters (levels beyond the trained ones average), as far as its activations fit
  // in the budget; the decoder steps through the rest.
  std::int64_t head = n;
  auto longer = [&](std::int64_t context) {
    ModelConfig l = c;
    l.context = int(context);
    return l;
  };
  while (head > T && LanguageModel<S>::activation_bytes(longer(head), 1) > forward_budget) head = std::max(T, head / 2);
  if (head <= T) {
    prefill_forward(model_, prompt, head);
  } else {
    const auto flat = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model_.parameters());
    LanguageModel<S> wide(longer(head), 0, 1);
    wide.set_parameters(
        adapt_parameters(c, std::vector<double>(flat.data(), flat.data() + flat.extent(0)), wide.config()));
    prefill_forward(wide, prompt, head);
  }
  for (std::int64_t i = head; i < n; ++i)
    step(std::vector<std::uint8_t>(std::size_t(streams_), prompt[std::size_t(i)]));
}

template <class S>
void Decoder<S>::prefill_forward(LanguageModel<S>& model, const std::vector<std::uint8_t>& prompt, std::int64_t n) {
  const ModelConfig& c = model.config();
  // One window of T + 1 bytes: the prompt's first n, then zeros that no position before them sees.
  std::vector<std::uint8_t> window(std::size_t(c.context) + 1, 0);
  std::copy_n(prompt.begin(), n, window.begin());
  model.window(window.data(), 0.0);
  Impl& m = *impl_;
  const auto heads = std::make_pair(std::int64_t(0), std::int64_t(c.heads));
  for (int b = 0; b < c.layers; ++b)
    detail::decode_prefill(m.space, m.layer(b), n, Kokkos::subview(model.keys(b), heads, Kokkos::ALL, Kokkos::ALL),
                           Kokkos::subview(model.values(b), heads, Kokkos::ALL, Kokkos::ALL), streams_);
  m.space.fence();
  const std::vector<double> last = model.logits(n - 1);
  logits_.resize(std::size_t(streams_) * vocabulary);
  for (std::int64_t s = 0; s < streams_; ++s) std::copy(last.begin(), last.end(), logits_.begin() + s * vocabulary);
  position_ = n;
}

template <class S>
void Decoder<S>::step(const std::vector<std::uint8_t>& bytes) {
  if (std::int64_t(bytes.size()) != streams_)
    throw std::invalid_argument("Decoder::step: one byte per stream (" + std::to_string(streams_) + ")");
  if (position_ < 1 || position_ >= capacity_)
    throw std::logic_error("Decoder::step: prefill first, and at most capacity positions");
  Impl& m = *impl_;
  const auto& e = m.space;
  const ModelConfig& c = model_.config();
  const std::int64_t t = position_;
  for (std::int64_t s = 0; s < streams_; ++s) m.tokens_host(s) = bytes[std::size_t(s)];
  Kokkos::deep_copy(e, m.tokens, m.tokens_host);
  // x = E[byte] + P[t]: the embedding kernel of training with the one row of P of position t
  // (none without a position table).
  const typename Impl::Matrix position =
      c.positions == Positions::learned
          ? typename Impl::Matrix(Kokkos::subview(m.p.position, std::make_pair(t, t + 1), Kokkos::ALL))
          : typename Impl::Matrix();
  detail::lm::embed(e, m.tokens, m.p.embedding, position, m.x);
  for (int b = 0; b < c.layers; ++b) {
    const detail::BlockViews<S, memory_space>& p = m.p.blocks[std::size_t(b)];
    const detail::BlockRows<S, memory_space> rows{m.x, m.a, m.q, m.k,    m.v,    m.y,    m.h,   m.a,
                                                  m.u, m.g, m.x, m.mean, m.rstd, m.mean, m.rstd};
    detail::block_forward(e, p, rows, [&](const auto& q, const auto& k, const auto& v, const auto& y) {
      detail::decode_token(e, m.layer(b), t, q, k, v, y);
    });
  }
  detail::lm::layer_norm(e, m.x, m.p.final_gain, m.p.final_bias, m.f, m.mean, m.rstd);
  detail::dense_gemm(e, 'N', 'N', m.f, m.embedding_t, S(0), m.logits);
  Kokkos::deep_copy(e, m.logits_host, m.logits);
  e.fence();
  for (std::size_t i = 0; i < logits_.size(); ++i) logits_[i] = double(m.logits_host.data()[i]);
  ++position_;
}

template <class S>
std::size_t Decoder<S>::state_bytes(const ModelConfig& c, std::int64_t capacity) {
  // Per layer and head, keys and values: the ring, and per level the kept cells and the sums.
  const detail::DecodeShape shape = shape_of(c, capacity);
  const double values = 2.0 * double(c.layers) * c.heads * shape.d *
                        (double(shape.ring) + double(shape.levels) * (detail::kept_cells + 1) * shape.p);
  return values * sizeof(S) < double(std::numeric_limits<std::size_t>::max()) ? std::size_t(values * sizeof(S))
                                                                              : std::numeric_limits<std::size_t>::max();
}

template <class S>
std::size_t Decoder<S>::state_bytes_per_stream() const {
  return state_bytes(model_.config(), capacity_);
}

template class Decoder<float>;
template class Decoder<double>;

}  // namespace fmattn
