#include <fmattn/model/language_model.hpp>

#include <fmattn/core/attention.hpp>
#include <fmattn/core/weights.hpp>
#include <fmattn/util/profiling.hpp>
#include "kernels/dense_gemm.hpp"
#include "kernels/lm_layers.hpp"

#include <array>
#include <stdexcept>

namespace fmattn {

namespace {

template <class S>
using Matrix = Kokkos::View<S**, Kokkos::LayoutRight, typename LanguageModel<S>::memory_space>;
template <class S>
using Vec = Kokkos::View<S*, typename LanguageModel<S>::memory_space>;

template <class S>
Matrix<S> matrix(const char* label, std::int64_t rows, std::int64_t cols) {
  return Matrix<S>(Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string("fmattn::lm::") + label), rows, cols);
}
template <class S>
Vec<S> vec(const char* label, std::int64_t n) {
  return Vec<S>(Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string("fmattn::lm::") + label), n);
}

// Calls f(slot, values) for each K and V weight and bias slot of block b's basis functions, with
// `values` the same numbers' place in w (layout of DownsamplingWeights): the one map between
// the flat parameters and what Attention takes.
template <class F>
void for_each_basis_slot(const std::vector<ParameterSlot>& slots, const Geometry& g, int d, int b,
                         DownsamplingWeights& w, F&& f) {
  for (const char op : {'k', 'v'}) {
    std::vector<double>& weight = op == 'k' ? w.k_weight : w.v_weight;
    std::vector<double>& bias = op == 'k' ? w.k_bias : w.v_bias;
    for (int l = 1; l <= g.L; ++l) {
      const std::string q = basis_prefix(b, op, l);
      f(find_slot(slots, q + "weight"), weight.data() + g.weight_offset(l, d));
      f(find_slot(slots, q + "bias"), bias.data() + std::int64_t(l - 1) * g.p * d);
    }
  }
}

}  // namespace

// One block's parameters (or gradients) as views into a flat vector.
template <class S>
struct BlockViews {
  Vec<S> ln1_gain, ln1_bias, bq, bk, bv, bo, ln2_gain, ln2_bias, b1, b2;
  Matrix<S> wq, wk, wv, wo, w1, w2;
};

template <class S>
struct ModelViews {
  Matrix<S> embedding, position;
  std::vector<BlockViews<S>> blocks;
  Vec<S> final_gain, final_bias;

  ModelViews(const Vec<S>& flat, const std::vector<ParameterSlot>& slots, int layers) {
    auto m = [&](const std::string& name) {
      const ParameterSlot& s = find_slot(slots, name);
      return Matrix<S>(flat.data() + s.offset, s.shape[0], s.shape[1]);
    };
    auto v = [&](const std::string& name) {
      const ParameterSlot& s = find_slot(slots, name);
      return Vec<S>(flat.data() + s.offset, s.size);
    };
    embedding = m("embedding");
    position = m("position");
    for (int b = 0; b < layers; ++b) {
      const std::string p = block_prefix(b);
      blocks.push_back({v(p + "ln1_gain"), v(p + "ln1_bias"), v(p + "bq"), v(p + "bk"), v(p + "bv"), v(p + "bo"),
                        v(p + "ln2_gain"), v(p + "ln2_bias"), v(p + "b1"), v(p + "b2"), m(p + "wq"), m(p + "wk"),
                        m(p + "wv"), m(p + "wo"), m(p + "w1"), m(p + "w2")});
    }
    final_gain = v("final_norm/gain");
    final_bias = v("final_norm/bias");
  }
};

// What the backward needs of one block's forward.
template <class S>
struct BlockActivations {
  Matrix<S> x;          // input [T][W]
  Matrix<S> a1, h, a2;  // LN1(x), x + attention, LN2(h)
  Vec<S> mean1, rstd1, mean2, rstd2;
  typename Attention<S>::Tensor q, k, v, y;  // per head [H][T][d]
  typename Attention<S>::RowValues lse;
  Matrix<S> u, g;  // MLP pre- and post-GELU [T][4W]
};

template <class S>
struct LanguageModel<S>::Workspace {
  using Exec = execution_space;
  using Tensor = typename Attention<S>::Tensor;
  Exec space;
  ModelViews<S> p, dp;
  std::vector<std::unique_ptr<Attention<S>>> attention;
  std::vector<BlockActivations<S>> act;
  Matrix<S> x_final, f, logits, dlogits;
  Vec<S> mean_f, rstd_f;
  Kokkos::View<int*, memory_space> input, target, order, start;
  Kokkos::View<double*, memory_space> loss;
  // Backward scratch.
  Matrix<S> dx, dh, da, dy, dq, dk, dv, dg;
  Tensor dqh, dkh, dvh, dyh;
  std::vector<S> host_params;  // basis functions staged for set_weights

  Workspace(const ModelConfig& c, const Vec<S>& params, const Vec<S>& grads, const std::vector<ParameterSlot>& slots)
      : p(params, slots, c.layers), dp(grads, slots, c.layers) {
    const std::int64_t T = c.context, W = c.width, H = c.heads, d = c.head_dim();
    const Geometry geo = c.geometry();
    for (int b = 0; b < c.layers; ++b) {
      attention.push_back(std::make_unique<Attention<S>>(geo, c.attention, int(d), H, space));
      BlockActivations<S> a;
      a.x = matrix<S>("x", T, W);
      a.a1 = matrix<S>("ln1", T, W);
      a.h = matrix<S>("h", T, W);
      a.a2 = matrix<S>("ln2", T, W);
      a.mean1 = vec<S>("mean1", T);
      a.rstd1 = vec<S>("rstd1", T);
      a.mean2 = vec<S>("mean2", T);
      a.rstd2 = vec<S>("rstd2", T);
      a.q = Tensor("fmattn::lm::q", H, T, d);
      a.k = Tensor("fmattn::lm::k", H, T, d);
      a.v = Tensor("fmattn::lm::v", H, T, d);
      a.y = Tensor("fmattn::lm::y", H, T, d);
      a.lse = typename Attention<S>::RowValues("fmattn::lm::lse", H, T);
      a.u = matrix<S>("mlp_u", T, 4 * W);
      a.g = matrix<S>("mlp_g", T, 4 * W);
      act.push_back(a);
    }
    x_final = matrix<S>("x_final", T, W);
    f = matrix<S>("final_norm", T, W);
    logits = matrix<S>("logits", T, vocabulary);
    dlogits = matrix<S>("dlogits", T, vocabulary);
    mean_f = vec<S>("mean_f", T);
    rstd_f = vec<S>("rstd_f", T);
    input = decltype(input)("fmattn::lm::input", T);
    target = decltype(target)("fmattn::lm::target", T);
    order = decltype(order)("fmattn::lm::order", T);
    start = decltype(start)("fmattn::lm::start", vocabulary + 1);
    loss = decltype(loss)("fmattn::lm::loss", T);
    for (Matrix<S>* m : {&dx, &dh, &da, &dy, &dq, &dk, &dv}) *m = matrix<S>("grad", T, W);
    dg = matrix<S>("grad_mlp", T, 4 * W);
    for (Tensor* t : {&dqh, &dkh, &dvh, &dyh}) *t = Tensor("fmattn::lm::grad_heads", H, T, d);
  }
};

template <class S>
LanguageModel<S>::LanguageModel(const ModelConfig& config, std::uint64_t seed)
    : config_(config), slots_(parameter_slots(config)) {
  if (config.width % config.heads != 0) throw std::invalid_argument("model width must be a multiple of heads");
  const std::int64_t n = parameter_count(slots_);
  params_ = Vector("fmattn::lm::parameters", n);
  grads_ = Vector("fmattn::lm::gradients", n);
  ws_ = std::make_unique<Workspace>(config, params_, grads_, slots_);
  set_parameters(initial_parameters(config, slots_, seed));
}

template <class S>
void LanguageModel<S>::set_parameters(const std::vector<double>& x) {
  if (x.size() != params_.extent(0)) throw std::invalid_argument("LanguageModel::set_parameters: wrong size");
  auto host = Kokkos::create_mirror_view(params_);
  for (std::size_t i = 0; i < x.size(); ++i) host(i) = S(x[i]);
  Kokkos::deep_copy(params_, host);
  parameters_changed();
}

template <class S>
LanguageModel<S>::~LanguageModel() = default;

template <class S>
void LanguageModel<S>::zero_gradients() {
  Kokkos::deep_copy(grads_, S(0));
}

template <class S>
void LanguageModel<S>::parameters_changed() {
  if (!config_.learned_basis()) return;
  const Geometry g = config_.geometry();
  const int d = config_.head_dim();
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), params_);
  for (int b = 0; b < config_.layers; ++b) {
    DownsamplingWeights w = DownsamplingWeights::average(g, d);
    for_each_basis_slot(slots_, g, d, b, w, [&](const ParameterSlot& slot, double* values) {
      for (std::int64_t i = 0; i < slot.size; ++i) values[i] = double(host(slot.offset + i));
    });
    ws_->attention[std::size_t(b)]->set_weights(w);
  }
}

template <class S>
void LanguageModel<S>::forward(const std::uint8_t* bytes) {
  ScopedRegion region("fmattn::LanguageModel::forward");
  Workspace& w = *ws_;
  const auto& e = w.space;
  const std::int64_t T = config_.context;
  {
    auto in = Kokkos::create_mirror_view(w.input);
    auto tg = Kokkos::create_mirror_view(w.target);
    auto order = Kokkos::create_mirror_view(w.order);
    auto start = Kokkos::create_mirror_view(w.start);
    std::array<int, vocabulary + 1> count{};
    for (std::int64_t t = 0; t < T; ++t) {
      in(t) = bytes[t];
      tg(t) = bytes[t + 1];
      ++count[std::size_t(bytes[t]) + 1];
    }
    for (int v = 0; v < vocabulary; ++v) count[std::size_t(v) + 1] += count[std::size_t(v)];
    for (int v = 0; v <= vocabulary; ++v) start(v) = count[std::size_t(v)];
    for (std::int64_t t = 0; t < T; ++t) order(count[bytes[t]]++) = int(t);
    Kokkos::deep_copy(e, w.input, in);
    Kokkos::deep_copy(e, w.target, tg);
    Kokkos::deep_copy(e, w.order, order);
    Kokkos::deep_copy(e, w.start, start);
    e.fence();  // the host mirrors go out of scope
  }
  detail::lm::embed(e, w.input, w.p.embedding, w.p.position, w.act[0].x);
  for (int b = 0; b < config_.layers; ++b) {
    BlockActivations<S>& a = w.act[std::size_t(b)];
    const BlockViews<S>& p = w.p.blocks[std::size_t(b)];
    const Matrix<S>& x_next = b + 1 < config_.layers ? w.act[std::size_t(b) + 1].x : w.x_final;
    detail::lm::layer_norm(e, a.x, p.ln1_gain, p.ln1_bias, a.a1, a.mean1, a.rstd1);
    // q, k, v through the dense products, then into heads.
    detail::dense_gemm(e, 'N', 'N', a.a1, p.wq, S(0), w.dq);
    detail::dense_gemm(e, 'N', 'N', a.a1, p.wk, S(0), w.dk);
    detail::dense_gemm(e, 'N', 'N', a.a1, p.wv, S(0), w.dv);
    detail::lm::add_bias(e, w.dq, p.bq);
    detail::lm::add_bias(e, w.dk, p.bk);
    detail::lm::add_bias(e, w.dv, p.bv);
    detail::lm::split_heads(e, w.dq, a.q);
    detail::lm::split_heads(e, w.dk, a.k);
    detail::lm::split_heads(e, w.dv, a.v);
    w.attention[std::size_t(b)]->forward(a.q, a.k, a.v, a.y, a.lse);
    // h = x + y·Wo + bo.
    detail::lm::merge_heads(e, a.y, w.dy);
    Kokkos::deep_copy(e, a.h, a.x);
    detail::dense_gemm(e, 'N', 'N', w.dy, p.wo, S(1), a.h);
    detail::lm::add_bias(e, a.h, p.bo);
    // x_next = h + GELU(LN2(h)·W1 + b1)·W2 + b2.
    detail::lm::layer_norm(e, a.h, p.ln2_gain, p.ln2_bias, a.a2, a.mean2, a.rstd2);
    detail::dense_gemm(e, 'N', 'N', a.a2, p.w1, S(0), a.u);
    detail::lm::bias_gelu(e, a.u, p.b1, a.g);
    Kokkos::deep_copy(e, x_next, a.h);
    detail::dense_gemm(e, 'N', 'N', a.g, p.w2, S(1), x_next);
    detail::lm::add_bias(e, x_next, p.b2);
  }
  detail::lm::layer_norm(e, w.x_final, w.p.final_gain, w.p.final_bias, w.f, w.mean_f, w.rstd_f);
  detail::dense_gemm(e, 'N', 'T', w.f, w.p.embedding, S(0), w.logits);
}

template <class S>
void LanguageModel<S>::backward() {
  ScopedRegion region("fmattn::LanguageModel::backward");
  Workspace& w = *ws_;
  const auto& e = w.space;
  const Geometry geo = config_.geometry();
  const int d = config_.head_dim();
  // Tied output: dE += dlogitsᵀ·f; df = dlogits·E.
  detail::dense_gemm(e, 'T', 'N', w.dlogits, w.f, S(1), w.dp.embedding);
  detail::dense_gemm(e, 'N', 'N', w.dlogits, w.p.embedding, S(0), w.da);
  Kokkos::deep_copy(e, w.dx, S(0));
  detail::lm::layer_norm_backward(e, w.da, w.x_final, w.mean_f, w.rstd_f, w.p.final_gain, w.dx, w.dp.final_gain,
                                  w.dp.final_bias);
  for (int b = config_.layers - 1; b >= 0; --b) {
    BlockActivations<S>& a = w.act[std::size_t(b)];
    const BlockViews<S>& p = w.p.blocks[std::size_t(b)];
    const BlockViews<S>& dp = w.dp.blocks[std::size_t(b)];
    // dx is the gradient of the block's output. MLP: dW2 += gᵀ·dx, db2 += Σ dx, dg = dx·W2ᵀ.
    detail::dense_gemm(e, 'T', 'N', a.g, w.dx, S(1), dp.w2);
    detail::lm::add_column_sums(e, w.dx, dp.b2);
    detail::dense_gemm(e, 'N', 'T', w.dx, p.w2, S(0), w.dg);
    detail::lm::gelu_backward(e, a.u, w.dg);
    detail::dense_gemm(e, 'T', 'N', a.a2, w.dg, S(1), dp.w1);
    detail::lm::add_column_sums(e, w.dg, dp.b1);
    detail::dense_gemm(e, 'N', 'T', w.dg, p.w1, S(0), w.da);
    // dh = dx + LN2'(da).
    Kokkos::deep_copy(e, w.dh, w.dx);
    detail::lm::layer_norm_backward(e, w.da, a.h, a.mean2, a.rstd2, p.ln2_gain, w.dh, dp.ln2_gain, dp.ln2_bias);
    // Output projection: dWo += yᵀ·dh, dbo += Σ dh, dy = dh·Woᵀ.
    detail::lm::merge_heads(e, a.y, w.dy);
    detail::dense_gemm(e, 'T', 'N', w.dy, w.dh, S(1), dp.wo);
    detail::lm::add_column_sums(e, w.dh, dp.bo);
    detail::dense_gemm(e, 'N', 'T', w.dh, p.wo, S(0), w.dy);
    detail::lm::split_heads(e, w.dy, w.dyh);
    DownsamplingWeights dbasis;
    w.attention[std::size_t(b)]->backward(a.q, a.k, a.v, a.y, a.lse, w.dyh, w.dqh, w.dkh, w.dvh,
                                          config_.learned_basis() ? &dbasis : nullptr);
    detail::lm::merge_heads(e, w.dqh, w.dq);
    detail::lm::merge_heads(e, w.dkh, w.dk);
    detail::lm::merge_heads(e, w.dvh, w.dv);
    // Projections: dW += a1ᵀ·d(qkv), db += Σ d(qkv), da = Σ d(qkv)·Wᵀ.
    detail::dense_gemm(e, 'T', 'N', a.a1, w.dq, S(1), dp.wq);
    detail::dense_gemm(e, 'T', 'N', a.a1, w.dk, S(1), dp.wk);
    detail::dense_gemm(e, 'T', 'N', a.a1, w.dv, S(1), dp.wv);
    detail::lm::add_column_sums(e, w.dq, dp.bq);
    detail::lm::add_column_sums(e, w.dk, dp.bk);
    detail::lm::add_column_sums(e, w.dv, dp.bv);
    detail::dense_gemm(e, 'N', 'T', w.dq, p.wq, S(0), w.da);
    detail::dense_gemm(e, 'N', 'T', w.dk, p.wk, S(1), w.da);
    detail::dense_gemm(e, 'N', 'T', w.dv, p.wv, S(1), w.da);
    // dx(block input) = dh + LN1'(da).
    Kokkos::deep_copy(e, w.dx, w.dh);
    detail::lm::layer_norm_backward(e, w.da, a.x, a.mean1, a.rstd1, p.ln1_gain, w.dx, dp.ln1_gain, dp.ln1_bias);
    if (config_.learned_basis() && geo.L > 0) {
      // The block's basis-function slots are contiguous: only they go through the host.
      const ParameterSlot& first = find_slot(slots_, basis_prefix(b, 'k', 1) + "weight");
      const ParameterSlot& last = find_slot(slots_, basis_prefix(b, 'v', geo.L) + "bias");
      const auto range = Kokkos::subview(grads_, std::make_pair(first.offset, last.offset + last.size));
      e.fence();
      auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), range);
      for_each_basis_slot(slots_, geo, d, b, dbasis, [&](const ParameterSlot& slot, const double* values) {
        for (std::int64_t i = 0; i < slot.size; ++i) host(slot.offset - first.offset + i) += S(values[i]);
      });
      Kokkos::deep_copy(range, host);
    }
  }
  detail::lm::embed_backward(e, w.order, w.start, w.dx, w.dp.embedding, w.dp.position);
}

template <class S>
double LanguageModel<S>::window(const std::uint8_t* bytes, double grad_scale, std::vector<double>* per_token) {
  Workspace& w = *ws_;
  forward(bytes);
  detail::lm::cross_entropy(w.space, w.logits, w.target, w.loss, w.dlogits, grad_scale);
  if (grad_scale > 0) backward();
  w.space.fence();
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), w.loss);
  double sum = 0;
  for (std::size_t t = 0; t < host.extent(0); ++t) sum += host(t);
  if (per_token) per_token->assign(host.data(), host.data() + host.extent(0));
  return sum;
}

template <class S>
std::vector<double> LanguageModel<S>::logits() const {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), ws_->logits);
  return std::vector<double>(host.data(), host.data() + host.span());
}

template <class S>
std::size_t LanguageModel<S>::workspace_bytes() const {
  const std::size_t T = std::size_t(config_.context), W = std::size_t(config_.width), N = std::size_t(config_.layers);
  const std::size_t per_block = T * W * (4 + 4 + 8) + 4 * T + config_.heads * T;
  std::size_t attention = 0;
  for (const auto& a : ws_->attention) attention += a->workspace_bytes() + a->backward_workspace_bytes();
  return sizeof(S) * (N * per_block + T * W * (2 + 7 + 4 + 4) + 2 * T * vocabulary) + attention;
}

template class LanguageModel<float>;
template class LanguageModel<double>;

}  // namespace fmattn
