#include <fmattn/core/attention.hpp>

#include <fmattn/util/errors.hpp>
#include <fmattn/util/profiling.hpp>
#include "kernels/allocation.hpp"
#include "kernels/attention_backward.hpp"
#include "kernels/attention_forward.hpp"
#include "kernels/coarse_levels.hpp"
#include "kernels/move_rows.hpp"
#include "kernels/reference_rows.hpp"

namespace fmattn {

template <class Scalar, class ExecSpace>
Attention<Scalar, ExecSpace>::Attention(const Geometry& g, const AttentionOptions& opt, int head_dim,
                                        std::int64_t heads, const ExecSpace& space)
    : Attention(g, whole_sequence(g), opt, head_dim, heads, space) {}

template <class Scalar, class ExecSpace>
Attention<Scalar, ExecSpace>::Attention(const Geometry& g, const Shard& shard, const AttentionOptions& opt,
                                        int head_dim, std::int64_t heads, const ExecSpace& space)
    : space_(space),
      g_(g),
      shard_(shard),
      shard_levels_(detail::shard_levels<memory_space>(g, shard)),
      opt_(opt),
      d_(head_dim),
      heads_(heads) {
  const Shard whole = whole_sequence(g);
  whole_ = shard.block_begin == whole.block_begin && shard.block_end == whole.block_end &&
           shard.coarse_tokens(g) == whole.coarse_tokens(g);
  if (!whole_ && (opt.coarse_queries || opt.method == Method::exact))
    throw InputError(
        std::string("a sharded sequence supports the O(n log n) FMA and its near field (local) only, not ") +
        (opt.coarse_queries ? "the linear variant (attention.queries: coarse)" : "exact attention"));
  if (opt.method == Method::fma) {
    const std::int64_t T = shard.coarse_tokens(g);
    kc_ = detail::allocate<Tensor>(space_, "fmattn::coarse_keys", heads, T, head_dim);
    vc_ = detail::allocate<Tensor>(space_, "fmattn::coarse_values", heads, T, head_dim);
    if (opt.coarse_queries) {
      qc_ = detail::allocate<Tensor>(space_, "fmattn::coarse_queries", heads, T, head_dim);
      part_max_ = detail::allocate_zeroed<decltype(part_max_)>(space_, "fmattn::partial_max", heads, T);
      part_den_ = detail::allocate_zeroed<decltype(part_den_)>(space_, "fmattn::partial_den", heads, T);
      part_num_ = detail::allocate_zeroed<Tensor>(space_, "fmattn::partial_num", heads, T, head_dim);
    }
    if (opt.downsampling == Downsampling::learned) set_weights(DownsamplingWeights::average(g, head_dim));
  }
}

template <class Scalar, class ExecSpace>
void Attention<Scalar, ExecSpace>::set_weights(const DownsamplingWeights& w) {
  if (w.geometry.N != g_.N || w.geometry.m != g_.m || w.geometry.p != g_.p || w.head_dim != d_)
    throw InputError("downsampling weights do not match the attention geometry");
  auto upload = [this](const std::vector<double>& src, const char* label) {
    Kokkos::View<Scalar*, memory_space> dst(Kokkos::view_alloc(space_, std::string(label)), src.size());
    auto host = Kokkos::create_mirror_view(dst);
    for (std::size_t i = 0; i < src.size(); ++i) host(i) = Scalar(src[i]);
    Kokkos::deep_copy(space_, dst, host);
    space_.fence();  // host goes out of scope
    return dst;
  };
  qw_ = upload(w.q_weight, "fmattn::q_weight");
  qb_ = upload(w.q_bias, "fmattn::q_bias");
  kw_ = upload(w.k_weight, "fmattn::k_weight");
  kb_ = upload(w.k_bias, "fmattn::k_bias");
  vw_ = upload(w.v_weight, "fmattn::v_weight");
  vb_ = upload(w.v_bias, "fmattn::v_bias");
}

template <class Scalar, class ExecSpace>
void Attention<Scalar, ExecSpace>::build_coarse(ConstTensor q, ConstTensor k, ConstTensor v) {
  ScopedRegion region("fmattn::Attention::build_coarse");
  if (opt_.method != Method::fma || g_.L == 0) return;
  if (opt_.coarse_queries)
    detail::build_coarse_levels<ExecSpace, Scalar>(space_, g_, shard_, shard_levels_, opt_.downsampling, q, qc_,
                                                   {qw_, qb_});
  detail::build_coarse_levels<ExecSpace, Scalar>(space_, g_, shard_, shard_levels_, opt_.downsampling, k, kc_,
                                                 {kw_, kb_});
  detail::build_coarse_levels<ExecSpace, Scalar>(space_, g_, shard_, shard_levels_, opt_.downsampling, v, vc_,
                                                 {vw_, vb_});
}

template <class Scalar, class ExecSpace>
void Attention<Scalar, ExecSpace>::coarse_sums(int level, ConstTensor k, ConstTensor v) {
  ScopedRegion region("fmattn::Attention::coarse_sums");
  if (opt_.method != Method::fma || level < 1 || level > g_.L) return;
  detail::coarse_partial_sums<ExecSpace, Scalar>(space_, g_, shard_, shard_levels_, opt_.downsampling, level, k, kc_,
                                                 {kw_, kb_});
  detail::coarse_partial_sums<ExecSpace, Scalar>(space_, g_, shard_, shard_levels_, opt_.downsampling, level, v, vc_,
                                                 {vw_, vb_});
}

template <class Scalar, class ExecSpace>
void Attention<Scalar, ExecSpace>::finish_coarse() {
  ScopedRegion region("fmattn::Attention::finish_coarse");
  if (opt_.method != Method::fma || g_.L == 0) return;
  fmattn::detail::finish_coarse<ExecSpace, Scalar>(space_, g_, shard_, shard_levels_, opt_.downsampling, kc_,
                                                   {kw_, kb_});
  fmattn::detail::finish_coarse<ExecSpace, Scalar>(space_, g_, shard_, shard_levels_, opt_.downsampling, vc_,
                                                   {vw_, vb_});
}

template <class Scalar, class ExecSpace>
void Attention<Scalar, ExecSpace>::check_shapes(ConstTensor q, ConstTensor k, ConstTensor v, ConstTensor out) const {
  const std::size_t H = std::size_t(heads_), own = std::size_t(shard_.token_end(g_) - shard_.token_begin(g_)),
                    keys = std::size_t(shard_.key_end - shard_.key_begin), d = std::size_t(d_);
  auto is = [](const auto& t, std::size_t a, std::size_t b, std::size_t c) {
    return t.extent(0) == a && t.extent(1) == b && t.extent(2) == c;
  };
  if (!is(q, H, own, d) || !is(out, H, own, d) || !is(k, H, keys, d) || !is(v, H, keys, d))
    throw InputError(
        "attention: q and out must be [heads][own rows][head_dim], k and v [heads][stored rows][head_dim]" +
        std::string(whole_ ? " (all [heads][n][head_dim] for a whole sequence)" : ""));
}

template <class Scalar, class ExecSpace>
void Attention<Scalar, ExecSpace>::evaluate(ConstTensor q, ConstTensor k, ConstTensor v, Tensor out,
                                            const std::function<void(double)>& progress, RowValues lse) {
  ScopedRegion region("fmattn::Attention::evaluate");
  check_shapes(q, k, v, out);
  if (lse.extent(0) != 0 && (lse.extent(0) != std::size_t(heads_) || lse.extent(1) != out.extent(1)))
    throw InputError("attention: lse must be [heads][own rows]");
  if (lse.extent(0) != 0 && opt_.coarse_queries)
    throw InputError("attention: the linear variant (attention.queries: coarse) keeps no lse: it has no backward");
  detail::evaluate_attention<ExecSpace, Scalar>(space_, g_, shard_, shard_levels_, opt_, q, k, v, qc_, kc_, vc_,
                                                {part_max_, part_den_, part_num_}, out, progress, lse);
}

template <class Scalar, class ExecSpace>
void Attention<Scalar, ExecSpace>::forward(ConstTensor q, ConstTensor k, ConstTensor v, Tensor out) {
  forward(q, k, v, out, RowValues());
}

template <class Scalar, class ExecSpace>
void Attention<Scalar, ExecSpace>::forward(ConstTensor q, ConstTensor k, ConstTensor v, Tensor out, RowValues lse) {
  ScopedRegion region("fmattn::Attention::forward");
  check_shapes(q, k, v, out);
  if (!whole_)
    throw InputError("attention: forward() needs the whole sequence; a shard completes its coarse levels over MPI");
  if (lse.extent(0) != 0 && (lse.extent(0) != std::size_t(heads_) || lse.extent(1) != std::size_t(g_.n)))
    throw InputError("attention: lse must be [heads][n]");
  if (lse.extent(0) != 0 && opt_.coarse_queries)
    throw InputError("attention: the linear variant (attention.queries: coarse) keeps no lse: it has no backward");
  build_coarse(q, k, v);
  detail::evaluate_attention<ExecSpace, Scalar>(space_, g_, shard_, shard_levels_, opt_, q, k, v, qc_, kc_, vc_,
                                                {part_max_, part_den_, part_num_}, out, {}, lse);
}

template <class Scalar, class ExecSpace>
void Attention<Scalar, ExecSpace>::backward(ConstTensor q, ConstTensor k, ConstTensor v, ConstTensor dout, Tensor dq,
                                            Tensor dk, Tensor dv, DownsamplingWeights* dweights) {
  if (opt_.coarse_queries)
    throw InputError("attention backward: not available for the linear variant (attention.queries: coarse)");
  if (!whole_) throw InputError("attention backward: needs the whole sequence, not a shard");
  if (own_out_.extent(0) == 0) {
    own_out_ = detail::allocate<Tensor>(space_, "fmattn::backward_out", heads_, g_.n, d_);
    own_lse_ = detail::allocate<RowValues>(space_, "fmattn::backward_lse", heads_, g_.n);
  }
  forward(q, k, v, own_out_, own_lse_);
  backward(q, k, v, own_out_, own_lse_, dout, dq, dk, dv, dweights);
}

template <class Scalar, class ExecSpace>
void Attention<Scalar, ExecSpace>::backward(ConstTensor q, ConstTensor k, ConstTensor v, ConstTensor out,
                                            ConstRowValues lse, ConstTensor dout, Tensor dq, Tensor dk, Tensor dv,
                                            DownsamplingWeights* dweights, const std::function<void()>& coarse_formed) {
  ScopedRegion region("fmattn::Attention::backward");
  const std::size_t own = std::size_t(shard_.token_end(g_) - shard_.token_begin(g_)),
                    keys = std::size_t(shard_.key_end - shard_.key_begin);
  auto fits = [&](const auto& t, std::size_t rows) {
    return t.extent(0) == std::size_t(heads_) && t.extent(1) == rows && t.extent(2) == std::size_t(d_);
  };
  auto fits_or_empty = [&](const Tensor& t, std::size_t rows) { return t.extent(0) == 0 || fits(t, rows); };
  if (!fits(q, own) || !fits(k, keys) || !fits(v, keys) || !fits(out, own) || !fits(dout, own) ||
      !fits_or_empty(dq, own) || !fits_or_empty(dk, keys) || !fits_or_empty(dv, keys) ||
      (dk.extent(0) == 0) != (dv.extent(0) == 0))
    throw InputError(
        "attention backward: q, out, dout (and dq unless empty) must be [heads][own rows][head_dim], k, v (and dk, "
        "dv unless empty) [heads][stored rows][head_dim] (all [heads][n][head_dim] for a whole sequence)");
  if (lse.extent(0) != std::size_t(heads_) || lse.extent(1) != own)
    throw InputError("attention backward: lse must be [heads][own rows], from the forward");
  if (opt_.coarse_queries)
    throw InputError("attention backward: not available for the linear variant (attention.queries: coarse)");
  const bool learned = opt_.method == Method::fma && opt_.downsampling == Downsampling::learned;
  if (dweights && !learned) throw InputError("attention backward: weight gradients need FMA with learned downsampling");
  using K = detail::AttentionBackward<ExecSpace, Scalar>;
  if (delta_.extent(0) == 0) {
    delta_ = detail::allocate<RowValues>(space_, "fmattn::backward_delta", heads_, std::int64_t(own));
    if (opt_.method == Method::fma) {
      const std::int64_t T = shard_.coarse_tokens(g_);
      dkc_ = detail::allocate<Tensor>(space_, "fmattn::coarse_key_grad", heads_, T, d_);
      dvc_ = detail::allocate<Tensor>(space_, "fmattn::coarse_value_grad", heads_, T, d_);
    }
  }
  K f;
  f.g = g_;
  f.s = detail::shard_view(shard_, shard_levels_);
  f.opt = opt_;
  f.q = q;
  f.k = k;
  f.v = v;
  f.kc = kc_;
  f.vc = vc_;
  f.d = d_;
  f.dp = K::Tiles::padded_dim(d_);
  f.out = out;
  f.dout = dout;
  f.kw = {kw_, kb_};
  f.vw = {vw_, vb_};
  f.forward_lse = lse;
  f.delta = delta_;
  f.dq = dq;
  f.dk = dk;
  f.dv = dv;
  f.dkc = dkc_;
  f.dvc = dvc_;
  f.windows = backward_windows_;
  const std::int64_t window_rows = detail::plan_backward(f);
  backward_windows_ = f.windows;
  if (opt_.method == Method::fma && std::int64_t(pk_.extent(1)) != window_rows) {
    pk_ = detail::allocate<Tensor>(space_, "fmattn::backward_coarse_key_terms", heads_, window_rows, d_);
    pv_ = detail::allocate<Tensor>(space_, "fmattn::backward_coarse_value_terms", heads_, window_rows, d_);
  }
  f.pk = pk_;
  f.pv = pv_;
  if (dweights) {
    const std::int64_t W = g_.total_weights(d_), b = std::int64_t(g_.L) * g_.p * d_;
    f.dkw = Kokkos::View<double*, memory_space>(Kokkos::view_alloc(space_, std::string("fmattn::k_weight_grad")), W);
    f.dvw = Kokkos::View<double*, memory_space>(Kokkos::view_alloc(space_, std::string("fmattn::v_weight_grad")), W);
    f.dkb = Kokkos::View<double*, memory_space>(Kokkos::view_alloc(space_, std::string("fmattn::k_bias_grad")), b);
    f.dvb = Kokkos::View<double*, memory_space>(Kokkos::view_alloc(space_, std::string("fmattn::v_bias_grad")), b);
  }
  if (!whole_ && dk.extent(0) != 0) {
    // Halo rows get only the terms of the pairs across the shard's edge: they start cleared.
    const std::int64_t left = shard_.token_begin(g_) - shard_.key_begin, right = left + std::int64_t(own);
    detail::clear_rows(space_, dk, dv, 0, left);
    detail::clear_rows(space_, dk, dv, right, std::int64_t(keys));
  }
  detail::run_attention_backward<ExecSpace, Scalar>(space_, f, coarse_formed);
  if (!dweights) return;
  auto download = [](const Kokkos::View<double*, memory_space>& src) {
    auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), src);
    return std::vector<double>(host.data(), host.data() + host.extent(0));
  };
  dweights->geometry = g_;
  dweights->head_dim = d_;
  dweights->q_weight.clear();
  dweights->q_bias.clear();
  dweights->k_weight = download(f.dkw);
  dweights->k_bias = download(f.dkb);
  dweights->v_weight = download(f.dvw);
  dweights->v_bias = download(f.dvb);
}

template <class Scalar, class ExecSpace>
std::size_t Attention<Scalar, ExecSpace>::workspace_bytes() const {
  return (qc_.span() + kc_.span() + vc_.span() + qw_.span() + qb_.span() + kw_.span() + kb_.span() + vw_.span() +
          vb_.span() + part_max_.span() + part_den_.span() + part_num_.span()) *
         sizeof(Scalar);
}

template <class Scalar, class ExecSpace>
std::size_t Attention<Scalar, ExecSpace>::backward_workspace_bytes() const {
  return (delta_.span() + own_lse_.span() + dkc_.span() + dvc_.span() + pk_.span() + pv_.span() + own_out_.span()) *
         sizeof(Scalar);
}

template <class Scalar, class ExecSpace>
void reference_rows(Variant variant, double scale,
                    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> q,
                    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> k,
                    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> v,
                    Kokkos::View<const std::int64_t**, Kokkos::LayoutRight, typename ExecSpace::memory_space> rows,
                    Kokkos::View<double***, Kokkos::LayoutRight, typename ExecSpace::memory_space> ref,
                    const ExecSpace& space) {
  ScopedRegion region("fmattn::reference_rows");
  detail::for_each_sampled_row(space, "fmattn::reference::rows", std::int64_t(rows.extent(0)),
                               std::int64_t(rows.extent(1)),
                               detail::ReferenceRows<ExecSpace, Scalar>{q, k, v, rows, ref, variant, scale});
}

#define FMATTN_INSTANTIATE(S, E)                                                                                      \
  template class Attention<S, E>;                                                                                     \
  template void reference_rows<S, E>(Variant, double, Kokkos::View<const S***, Kokkos::LayoutRight, E::memory_space>, \
                                     Kokkos::View<const S***, Kokkos::LayoutRight, E::memory_space>,                  \
                                     Kokkos::View<const S***, Kokkos::LayoutRight, E::memory_space>,                  \
                                     Kokkos::View<const std::int64_t**, Kokkos::LayoutRight, E::memory_space>,        \
                                     Kokkos::View<double***, Kokkos::LayoutRight, E::memory_space>, const E&);
#define FMATTN_INSTANTIATE_BACKEND(E) FMATTN_INSTANTIATE(float, E) FMATTN_INSTANTIATE(double, E)
FMATTN_FOR_EACH_BACKEND(FMATTN_INSTANTIATE_BACKEND)
#undef FMATTN_INSTANTIATE_BACKEND
#undef FMATTN_INSTANTIATE

}  // namespace fmattn
