#include <fmattn/model/language_model.hpp>

#include <fmattn/model/model_views.hpp>
#include "kernels/lm_block.hpp"

#include <fmattn/core/attention.hpp>
#include <fmattn/core/weights.hpp>
#include <fmattn/util/errors.hpp>
#include <fmattn/util/profiling.hpp>
#include "kernels/dense_gemm.hpp"
#include "kernels/lm_layers.hpp"

#include <array>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

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

// What the backward needs of one block's forward, for the windows of a call: rows [w·T + t]
// (T: the positions of a window the model holds; the keys and values of a sharded model also
// hold the halo rows before them).
template <class S>
struct BlockActivations {
  Matrix<S> x;          // input [rows][W]
  Matrix<S> a1, h, a2;  // LN1(x), x + attention, LN2(h)
  Vec<S> mean1, rstd1, mean2, rstd2;
  typename Attention<S>::Tensor q, k, v, y;  // per window and head [windows·H][T][d]
  typename Attention<S>::RowValues lse;
  Matrix<S> u, g;  // MLP pre- and post-GELU [rows][4W]
};

// Every activation and scratch array of a call; allocated once for the most windows a call
// may take, and taken as the leading rows (and window·heads) for a call of fewer.
template <class S>
struct Activations {
  using Tensor = typename Attention<S>::Tensor;
  using Index = Kokkos::View<int*, typename LanguageModel<S>::memory_space>;
  std::vector<BlockActivations<S>> act;
  Matrix<S> x_final, f, logits, dlogits;
  Vec<S> mean_f, rstd_f;
  Index input, target, order;
  Kokkos::View<double*, typename LanguageModel<S>::memory_space> loss;
  // Backward scratch.
  Matrix<S> dx, dh, da, dy, dq, dk, dv, dg;
  Tensor dqh, dkh, dvh, dyh;

  Activations() = default;
  // Windows of T positions; `keys` rows of keys and values per window and head.
  Activations(const ModelConfig& c, std::int64_t windows, std::int64_t T, std::int64_t keys) {
    const std::int64_t R = windows * T, W = c.width, WH = windows * c.heads, d = c.head_dim();
    for (int b = 0; b < c.layers; ++b) {
      BlockActivations<S> a;
      a.x = matrix<S>("x", R, W);
      a.a1 = matrix<S>("ln1", R, W);
      a.h = matrix<S>("h", R, W);
      a.a2 = matrix<S>("ln2", R, W);
      a.mean1 = vec<S>("mean1", R);
      a.rstd1 = vec<S>("rstd1", R);
      a.mean2 = vec<S>("mean2", R);
      a.rstd2 = vec<S>("rstd2", R);
      a.q = Tensor("fmattn::lm::q", WH, T, d);
      a.k = Tensor("fmattn::lm::k", WH, keys, d);
      a.v = Tensor("fmattn::lm::v", WH, keys, d);
      a.y = Tensor("fmattn::lm::y", WH, T, d);
      a.lse = typename Attention<S>::RowValues("fmattn::lm::lse", WH, T);
      a.u = matrix<S>("mlp_u", R, 4 * W);
      a.g = matrix<S>("mlp_g", R, 4 * W);
      act.push_back(a);
    }
    x_final = matrix<S>("x_final", R, W);
    f = matrix<S>("final_norm", R, W);
    logits = matrix<S>("logits", R, vocabulary);
    dlogits = matrix<S>("dlogits", R, vocabulary);
    mean_f = vec<S>("mean_f", R);
    rstd_f = vec<S>("rstd_f", R);
    input = Index("fmattn::lm::input", R);
    target = Index("fmattn::lm::target", R);
    order = Index("fmattn::lm::order", R);
    loss = decltype(loss)("fmattn::lm::loss", R);
    for (Matrix<S>* m : {&dx, &dh, &da, &dy, &dq, &dk, &dv}) *m = matrix<S>("grad", R, W);
    dg = matrix<S>("grad_mlp", R, 4 * W);
    for (Tensor* t : {&dqh, &dyh}) *t = Tensor("fmattn::lm::grad_heads", WH, T, d);
    for (Tensor* t : {&dkh, &dvh}) *t = Tensor("fmattn::lm::grad_heads", WH, keys, d);
  }

  // The same arrays for the first `rows` rows and `heads` window·heads.
  Activations first(std::int64_t rows, std::int64_t heads) const {
    const auto r = std::make_pair(std::int64_t(0), rows);
    const auto h = std::make_pair(std::int64_t(0), heads);
    auto m = [&](const Matrix<S>& x) { return Matrix<S>(Kokkos::subview(x, r, Kokkos::ALL)); };
    auto t = [&](const Tensor& x) { return Tensor(Kokkos::subview(x, h, Kokkos::ALL, Kokkos::ALL)); };
    auto v = [&](const auto& x) { return std::decay_t<decltype(x)>(Kokkos::subview(x, r)); };
    Activations out;
    for (const BlockActivations<S>& a : act)
      out.act.push_back({m(a.x), m(a.a1), m(a.h), m(a.a2), v(a.mean1), v(a.rstd1), v(a.mean2), v(a.rstd2), t(a.q),
                         t(a.k), t(a.v), t(a.y),
                         typename Attention<S>::RowValues(Kokkos::subview(a.lse, h, Kokkos::ALL)), m(a.u), m(a.g)});
    out.x_final = m(x_final);
    out.f = m(f);
    out.logits = m(logits);
    out.dlogits = m(dlogits);
    out.mean_f = v(mean_f);
    out.rstd_f = v(rstd_f);
    out.input = v(input);
    out.target = v(target);
    out.order = v(order);
    out.loss = v(loss);
    for (auto [to, from] : {std::pair{&out.dx, &dx},
                            {&out.dh, &dh},
                            {&out.da, &da},
                            {&out.dy, &dy},
                            {&out.dq, &dq},
                            {&out.dk, &dk},
                            {&out.dv, &dv},
                            {&out.dg, &dg}})
      *to = m(*from);
    for (auto [to, from] : {std::pair{&out.dqh, &dqh}, {&out.dkh, &dkh}, {&out.dvh, &dvh}, {&out.dyh, &dyh}})
      *to = t(*from);
    return out;
  }
};

template <class S>
struct LanguageModel<S>::Workspace {
  using Exec = execution_space;
  Exec space;
  detail::ModelViews<S, memory_space> p, dp;
  Activations<S> full, now;                // now: the leading part of full that the current call uses
  Kokkos::View<int*, memory_space> start;  // per byte value, where its rows start in `order`
  // Attention of every block, per number of windows a call has taken (its heads are
  // windows·H); made on first use. With learned downsampling, every block's basis functions
  // as parameters_changed() last handed them on.
  std::map<std::int64_t, std::vector<std::unique_ptr<Attention<S>>>> attention;
  std::map<std::int64_t, std::vector<std::unique_ptr<ShardedAttention<S>>>> sharded;
  std::vector<DownsamplingWeights> basis;

  Workspace(const ModelConfig& c, std::int64_t windows, std::int64_t T, std::int64_t keys, const Vec<S>& params,
            const Vec<S>& grads, const std::vector<ParameterSlot>& slots)
      : p(params, slots, c), dp(grads, slots, c), full(c, windows, T, keys) {
    start = decltype(start)("fmattn::lm::start", vocabulary + 1);
  }
};

template <class S>
LanguageModel<S>::LanguageModel(const ModelConfig& config, std::uint64_t seed, std::int64_t max_windows,
                                MPI_Comm sequence)
    : config_(config), token_end_(config.context), key_end_(config.context), max_windows_(max_windows) {
  if (config.width % config.heads != 0) throw std::invalid_argument("model width must be a multiple of heads");
  if (max_windows < 1) throw std::invalid_argument("LanguageModel: max_windows must be at least 1");
  if (sequence != MPI_COMM_NULL) {
    if (config.attention.method == Method::exact)
      throw InputError("a sequence-sharded model needs FMA or local attention (attention.method: fma or local)");
    int rank = 0, ranks = 1;
    MPI_Comm_rank(sequence, &rank);
    MPI_Comm_size(sequence, &ranks);
    const Shard s = plan_shard(config.geometry(), rank, ranks).shard;
    token_begin_ = s.token_begin(config.geometry());
    token_end_ = s.token_end(config.geometry());
    key_begin_ = s.key_begin;
    key_end_ = s.key_end;
    MPI_Comm_dup(sequence, &sequence_);
  }
  slots_ = config.learned_positions() ? parameter_slots(config, token_begin_, token_end_) : parameter_slots(config);
  const std::int64_t n = parameter_count(slots_);
  params_ = Vector("fmattn::lm::parameters", n);
  grads_ = Vector("fmattn::lm::gradients", n);
  ws_ = std::make_unique<Workspace>(config, max_windows, token_end_ - token_begin_, key_end_ - key_begin_, params_,
                                    grads_, slots_);
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
LanguageModel<S>::~LanguageModel() {
  ws_.reset();  // the sharded attention uses sequence_ until then
  if (sequence_ != MPI_COMM_NULL) MPI_Comm_free(&sequence_);
}

template <class S>
CommStats LanguageModel<S>::communication() const {
  CommStats total;
  for (const auto& [windows, blocks] : ws_->sharded)
    for (const auto& a : blocks) {
      total.seconds += a->stats().seconds;
      total.bytes_sent += a->stats().bytes_sent;
      total.bytes_received += a->stats().bytes_received;
    }
  return total;
}

template <class S>
void LanguageModel<S>::zero_gradients() {
  Kokkos::deep_copy(grads_, S(0));
}

template <class S>
void LanguageModel<S>::parameters_changed() {
  if (!config_.learned_basis()) return;
  const Geometry g = config_.geometry();
  const int d = config_.head_dim();
  ws_->basis.clear();
  for (int b = 0; b < config_.layers; ++b) {
    DownsamplingWeights w = DownsamplingWeights::average(g, d);
    if (g.L > 0) {
      // The block's basis-function slots are contiguous: only they come to the host.
      const ParameterSlot& first = find_slot(slots_, basis_prefix(b, 'k', 1) + "weight");
      const ParameterSlot& last = find_slot(slots_, basis_prefix(b, 'v', g.L) + "bias");
      const auto host = Kokkos::create_mirror_view_and_copy(
          Kokkos::HostSpace(), Kokkos::subview(params_, std::make_pair(first.offset, last.offset + last.size)));
      for_each_basis_slot(slots_, g, d, b, w, [&](const ParameterSlot& slot, double* values) {
        for (std::int64_t i = 0; i < slot.size; ++i) values[i] = double(host(slot.offset - first.offset + i));
      });
    }
    for (auto& [windows, blocks] : ws_->attention) blocks[std::size_t(b)]->set_weights(w);
    for (auto& [windows, blocks] : ws_->sharded) blocks[std::size_t(b)]->local().set_weights(w);
    ws_->basis.push_back(std::move(w));
  }
}

template <class S>
Attention<S>& LanguageModel<S>::attention(int block, std::int64_t windows) {
  auto& blocks = ws_->attention[windows];
  if (blocks.empty())
    for (int b = 0; b < config_.layers; ++b) {
      blocks.push_back(std::make_unique<Attention<S>>(config_.geometry(), config_.attention, config_.head_dim(),
                                                      windows * config_.heads, ws_->space));
      if (config_.learned_basis()) blocks.back()->set_weights(ws_->basis[std::size_t(b)]);
    }
  return *blocks[std::size_t(block)];
}

template <class S>
ShardedAttention<S>& LanguageModel<S>::sharded_attention(int block, std::int64_t windows) {
  auto& blocks = ws_->sharded[windows];
  if (blocks.empty())
    for (int b = 0; b < config_.layers; ++b) {
      blocks.push_back(std::make_unique<ShardedAttention<S>>(config_.geometry(), config_.attention, config_.head_dim(),
                                                             windows * config_.heads, sequence_, ws_->space));
      if (config_.learned_basis()) blocks.back()->local().set_weights(ws_->basis[std::size_t(b)]);
    }
  return *blocks[std::size_t(block)];
}

template <class S>
void LanguageModel<S>::forward(const std::vector<const std::uint8_t*>& windows) {
  ScopedRegion region("fmattn::LanguageModel::forward");
  Workspace& w = *ws_;
  const auto& e = w.space;
  const std::int64_t T = token_end_ - token_begin_, nw = std::int64_t(windows.size()), R = nw * T;
  w.now = w.full.first(R, nw * config_.heads);
  Activations<S>& n = w.now;
  {
    // Inputs and targets by row; `order` lists the rows grouped by byte value, in increasing
    // row order within a group (the embedding gradient's fixed order of summation).
    auto in = Kokkos::create_mirror_view(n.input);
    auto tg = Kokkos::create_mirror_view(n.target);
    auto order = Kokkos::create_mirror_view(n.order);
    auto start = Kokkos::create_mirror_view(w.start);
    std::array<int, vocabulary + 1> count{};
    for (std::int64_t r = 0; r < R; ++r) {
      const std::uint8_t* bytes = windows[std::size_t(r / T)] + token_begin_;
      in(r) = bytes[r % T];
      tg(r) = bytes[r % T + 1];
      ++count[std::size_t(in(r)) + 1];
    }
    for (int v = 0; v < vocabulary; ++v) count[std::size_t(v) + 1] += count[std::size_t(v)];
    for (int v = 0; v <= vocabulary; ++v) start(v) = count[std::size_t(v)];
    for (std::int64_t r = 0; r < R; ++r) order(count[std::size_t(in(r))]++) = int(r);
    Kokkos::deep_copy(e, n.input, in);
    Kokkos::deep_copy(e, n.target, tg);
    Kokkos::deep_copy(e, n.order, order);
    Kokkos::deep_copy(e, w.start, start);
    e.fence();  // the host mirrors go out of scope
  }
  detail::lm::embed(e, n.input, w.p.embedding, w.p.position, n.act[0].x);
  for (int b = 0; b < config_.layers; ++b) {
    BlockActivations<S>& a = n.act[std::size_t(b)];
    const detail::BlockViews<S, memory_space>& p = w.p.blocks[std::size_t(b)];
    const Matrix<S>& x_next = b + 1 < config_.layers ? n.act[std::size_t(b) + 1].x : n.x_final;
    const detail::BlockRows<S, memory_space> rows{a.x, a.a1, n.dq,   n.dk,    n.dv,    n.dy,    a.h,    a.a2,
                                                  a.u, a.g,  x_next, a.mean1, a.rstd1, a.mean2, a.rstd2};
    detail::block_forward(e, p, rows, [&](const auto& q, const auto& k, const auto& v, const auto& y) {
      // Into heads, through the block's Attention, back into rows.
      detail::lm::split_heads(e, q, a.q);
      detail::lm::split_heads(e, k, a.k, token_begin_ - key_begin_);
      detail::lm::split_heads(e, v, a.v, token_begin_ - key_begin_);
      if (sharded())
        sharded_attention(b, nw).forward(a.q, a.k, a.v, a.y, {}, a.lse);
      else
        attention(b, nw).forward(a.q, a.k, a.v, a.y, a.lse);
      detail::lm::merge_heads(e, a.y, y);
    });
  }
  detail::lm::layer_norm(e, n.x_final, w.p.final_gain, w.p.final_bias, n.f, n.mean_f, n.rstd_f);
  detail::dense_gemm(e, 'N', 'T', n.f, w.p.embedding, S(0), n.logits);
}

template <class S>
void LanguageModel<S>::backward() {
  ScopedRegion region("fmattn::LanguageModel::backward");
  Workspace& w = *ws_;
  Activations<S>& n = w.now;
  const auto& e = w.space;
  const Geometry geo = config_.geometry();
  const int d = config_.head_dim();
  const std::int64_t windows = std::int64_t(n.x_final.extent(0)) / (token_end_ - token_begin_);
  // The weight gradients are sums over all rows of the call in row order: the same sums, in
  // the same order, as the windows taken one call at a time.
  // Tied output: dE += dlogitsᵀ·f; df = dlogits·E.
  detail::dense_gemm(e, 'T', 'N', n.dlogits, n.f, S(1), w.dp.embedding);
  detail::dense_gemm(e, 'N', 'N', n.dlogits, w.p.embedding, S(0), n.da);
  Kokkos::deep_copy(e, n.dx, S(0));
  detail::lm::layer_norm_backward(e, n.da, n.x_final, n.mean_f, n.rstd_f, w.p.final_gain, n.dx, w.dp.final_gain,
                                  w.dp.final_bias);
  for (int b = config_.layers - 1; b >= 0; --b) {
    BlockActivations<S>& a = n.act[std::size_t(b)];
    const detail::BlockViews<S, memory_space>& p = w.p.blocks[std::size_t(b)];
    const detail::BlockViews<S, memory_space>& dp = w.dp.blocks[std::size_t(b)];
    // dx is the gradient of the block's output. MLP: dW2 += gᵀ·dx, db2 += Σ dx, dg = dx·W2ᵀ.
    detail::dense_gemm(e, 'T', 'N', a.g, n.dx, S(1), dp.w2);
    detail::lm::add_column_sums(e, n.dx, dp.b2);
    detail::dense_gemm(e, 'N', 'T', n.dx, p.w2, S(0), n.dg);
    detail::lm::gelu_backward(e, a.u, n.dg);
    detail::dense_gemm(e, 'T', 'N', a.a2, n.dg, S(1), dp.w1);
    detail::lm::add_column_sums(e, n.dg, dp.b1);
    detail::dense_gemm(e, 'N', 'T', n.dg, p.w1, S(0), n.da);
    // dh = dx + LN2'(da).
    Kokkos::deep_copy(e, n.dh, n.dx);
    detail::lm::layer_norm_backward(e, n.da, a.h, a.mean2, a.rstd2, p.ln2_gain, n.dh, dp.ln2_gain, dp.ln2_bias);
    // Output projection: dWo += yᵀ·dh, dbo += Σ dh, dy = dh·Woᵀ.
    detail::lm::merge_heads(e, a.y, n.dy);
    detail::dense_gemm(e, 'T', 'N', n.dy, n.dh, S(1), dp.wo);
    detail::lm::add_column_sums(e, n.dh, dp.bo);
    detail::dense_gemm(e, 'N', 'T', n.dh, p.wo, S(0), n.dy);
    detail::lm::split_heads(e, n.dy, n.dyh);
    DownsamplingWeights dbasis;
    DownsamplingWeights* const basis = config_.learned_basis() ? &dbasis : nullptr;
    if (sharded())
      sharded_attention(b, windows).backward(a.q, a.k, a.v, a.y, a.lse, n.dyh, n.dqh, n.dkh, n.dvh, basis);
    else
      attention(b, windows).backward(a.q, a.k, a.v, a.y, a.lse, n.dyh, n.dqh, n.dkh, n.dvh, basis);
    detail::lm::merge_heads(e, n.dqh, n.dq);
    detail::lm::merge_heads(e, n.dkh, n.dk, token_begin_ - key_begin_);
    detail::lm::merge_heads(e, n.dvh, n.dv, token_begin_ - key_begin_);
    // Projections q, k, v in turn: dW += a1ᵀ·d(proj), db += Σ d(proj), da = Σ d(proj)·Wᵀ.
    const std::array<std::tuple<const Matrix<S>*, const Matrix<S>*, const Matrix<S>*, const Vec<S>*>, 3> projections{
        {{&n.dq, &p.wq, &dp.wq, &dp.bq}, {&n.dk, &p.wk, &dp.wk, &dp.bk}, {&n.dv, &p.wv, &dp.wv, &dp.bv}}};
    for (std::size_t i = 0; i < projections.size(); ++i) {
      const auto [grad, weight, dweight, dbias] = projections[i];
      detail::dense_gemm(e, 'T', 'N', a.a1, *grad, S(1), *dweight);
      detail::lm::add_column_sums(e, *grad, *dbias);
      detail::dense_gemm(e, 'N', 'T', *grad, *weight, S(i == 0 ? 0 : 1), n.da);
    }
    // dx(block input) = dh + LN1'(da).
    Kokkos::deep_copy(e, n.dx, n.dh);
    detail::lm::layer_norm_backward(e, n.da, a.x, a.mean1, a.rstd1, p.ln1_gain, n.dx, dp.ln1_gain, dp.ln1_bias);
    if (config_.learned_basis() && geo.L > 0) {
      // The block's basis-function slots are contiguous: only they go through the host. The
      // attention sums them over all windows·heads of the call.
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
  detail::lm::embed_backward(e, n.order, w.start, n.dx, w.dp.embedding, w.dp.position);
}

template <class S>
std::vector<double> LanguageModel<S>::windows(const std::vector<const std::uint8_t*>& windows, double grad_scale,
                                              std::vector<double>* per_token) {
  if (windows.empty() || std::int64_t(windows.size()) > max_windows_)
    throw std::invalid_argument("LanguageModel::windows: 1 to " + std::to_string(max_windows_) +
                                " windows a call, got " + std::to_string(windows.size()));
  Workspace& w = *ws_;
  forward(windows);
  detail::lm::cross_entropy(w.space, w.now.logits, w.now.target, w.now.loss, w.now.dlogits, grad_scale);
  if (grad_scale > 0) backward();
  w.space.fence();
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), w.now.loss);
  const std::size_t T = std::size_t(token_end_ - token_begin_);
  std::vector<double> sums(windows.size(), 0.0);
  for (std::size_t r = 0; r < host.extent(0); ++r) sums[r / T] += host(r);
  if (per_token) per_token->assign(host.data(), host.data() + host.extent(0));
  return sums;
}

template <class S>
double LanguageModel<S>::window(const std::uint8_t* bytes, double grad_scale, std::vector<double>* per_token) {
  return windows({bytes}, grad_scale, per_token)[0];
}

template <class S>
std::vector<double> LanguageModel<S>::logits() const {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), ws_->now.logits);
  return std::vector<double>(host.data(), host.data() + host.span());
}

template <class S>
std::vector<double> LanguageModel<S>::logits(std::int64_t row) const {
  const auto host =
      Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), Kokkos::subview(ws_->now.logits, row, Kokkos::ALL));
  std::vector<double> out(host.extent(0));
  for (std::size_t v = 0; v < out.size(); ++v) out[v] = double(host(v));
  return out;
}

template <class S>
typename Attention<S>::Tensor LanguageModel<S>::keys(int block) const {
  return ws_->now.act.at(std::size_t(block)).k;
}

template <class S>
typename Attention<S>::Tensor LanguageModel<S>::values(int block) const {
  return ws_->now.act.at(std::size_t(block)).v;
}

template <class S>
std::size_t LanguageModel<S>::activation_bytes(const ModelConfig& c, std::int64_t windows, std::int64_t rows) {
  // A sharded window's keys and values (and their gradients) hold a block of halo rows more.
  const std::size_t halo = rows > 0 ? std::size_t(c.block_size) : 0;
  const std::size_t R = std::size_t(windows * (rows > 0 ? rows : c.context)), W = std::size_t(c.width),
                    N = std::size_t(c.layers), K = std::size_t(windows) * halo * W;
  const std::size_t per_block = R * W * (4 + 4 + 8) + 4 * R + std::size_t(c.heads) * R;
  return sizeof(S) * (N * per_block + R * W * (2 + 7 + 4 + 4) + 2 * R * vocabulary + 2 * (N + 1) * K) +
         3 * sizeof(int) * R + sizeof(double) * R;
}

template <class S>
std::size_t LanguageModel<S>::workspace_bytes() const {
  // The attention of a call of max_windows windows (calls of fewer make smaller ones).
  std::size_t attention = 0;
  const auto it = ws_->attention.find(max_windows_);
  if (it != ws_->attention.end())
    for (const auto& a : it->second) attention += a->workspace_bytes() + a->backward_workspace_bytes();
  const auto is = ws_->sharded.find(max_windows_);
  if (is != ws_->sharded.end())
    for (const auto& a : is->second) attention += a->local().workspace_bytes() + a->local().backward_workspace_bytes();
  return activation_bytes(config_, max_windows_, sharded() ? token_end_ - token_begin_ : 0) + attention;
}

template class LanguageModel<float>;
template class LanguageModel<double>;

}  // namespace fmattn
