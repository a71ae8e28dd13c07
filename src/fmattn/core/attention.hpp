// The public attention API: Fast Multipole Attention (spec §1–5) and the exact baseline on
// Kokkos Views [batch·head][n][d]. The object owns the token tree (coarse K and V of every
// level, one View each, with Geometry's level offsets) and the learned weights on the device.
#pragma once

#include <fmattn/core/backends.hpp>
#include <fmattn/core/geometry.hpp>
#include <fmattn/core/options.hpp>
#include <fmattn/core/shard.hpp>
#include <fmattn/core/weights.hpp>
#include <fmattn/util/errors.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <functional>

namespace fmattn {

// Compiled for float and double on every execution space of the Kokkos build
// (FMATTN_FOR_EACH_BACKEND in <fmattn/core/backends.hpp>): Attention<float, Kokkos::Serial>
// works next to the default space's.
template <class Scalar, class ExecSpace = Kokkos::DefaultExecutionSpace>
class Attention {
 public:
  using execution_space = ExecSpace;
  using memory_space = typename ExecSpace::memory_space;
  using Tensor = Kokkos::View<Scalar***, Kokkos::LayoutRight, memory_space>;
  using ConstTensor = Kokkos::View<const Scalar***, Kokkos::LayoutRight, memory_space>;
  using RowValues = Kokkos::View<Scalar**, Kokkos::LayoutRight, memory_space>;  // [heads][n]
  using ConstRowValues = Kokkos::View<const Scalar**, Kokkos::LayoutRight, memory_space>;

  // `heads` is batch·heads, the first extent of every tensor. For learned downsampling the
  // weights start at the average operator until set_weights() is called. With a shard of a
  // sharded sequence (sequence_parallel.hpp), q and out hold the shard's own rows, k and v its
  // stored rows, and the coarse levels its window of cells; the whole sequence otherwise.
  // Every kernel launch and allocation of the object runs on `space` (a CUDA or HIP stream,
  // say, so that several objects can work concurrently). Launches may return before the work
  // is done (GPU backends): fence `space` before reading the results on the host.
  Attention(const Geometry& g, const AttentionOptions& opt, int head_dim, std::int64_t heads,
            const ExecSpace& space = ExecSpace());
  Attention(const Geometry& g, const Shard& shard, const AttentionOptions& opt, int head_dim, std::int64_t heads,
            const ExecSpace& space = ExecSpace());

  void set_weights(const DownsamplingWeights& w);

  // out = attention(q, k, v). Builds the coarse levels (FMA) and evaluates all query tiles.
  void forward(ConstTensor q, ConstTensor k, ConstTensor v, Tensor out);
  // The same, keeping in lse(h, i) the log of row i's softmax denominator (the log-sum-exp of
  // its weighted scores): what backward() needs of the forward besides out.
  void forward(ConstTensor q, ConstTensor k, ConstTensor v, Tensor out, RowValues lse);
  // The upward pass alone (forward() calls it); q is down-sampled only for the linear variant.
  void build_coarse(ConstTensor q, ConstTensor k, ConstTensor v);
  // The pieces of forward() that a sharded sequence runs with communication in between: one
  // level's sums of the coarse K and V over the shard's own tokens (average: from the completed
  // level below), completion of sums into coarse tokens, and the evaluation of the shard's
  // query tiles.
  void coarse_sums(int level, ConstTensor k, ConstTensor v);
  void finish_coarse();
  // `progress`, when given, is called with the fraction of query tiles done, from time to time.
  // With `lse` (not empty, [heads][own rows]) each row's log-sum-exp, as forward() keeps it.
  void evaluate(ConstTensor q, ConstTensor k, ConstTensor v, Tensor out,
                const std::function<void(double)>& progress = {}, RowValues lse = {});
  // The coarse K and V arrays [heads][shard coarse tokens][d], for packing messages; and their
  // gradients, once a backward has run.
  Tensor coarse_keys_mutable() const { return kc_; }
  Tensor coarse_values_mutable() const { return vc_; }
  Tensor coarse_key_gradients() const { return dkc_; }
  Tensor coarse_value_gradients() const { return dvc_; }

  // Gradients of the loss sum(dout · forward(q, k, v)): dq, dk, dv (each may be an empty View
  // when not wanted) and, when `dweights` is given (learned downsampling), the gradients of
  // the K and V weights and biases of every level summed over heads, in the layout of
  // DownsamplingWeights (its q members left empty). Scores are recomputed (memory O(n·d));
  // the result is bit-identical from run to run. Not available for the linear variant.
  void backward(ConstTensor q, ConstTensor k, ConstTensor v, ConstTensor dout, Tensor dq, Tensor dk, Tensor dv,
                DownsamplingWeights* dweights = nullptr);
  // The same from the output and lse of forward(q, k, v, out, lse) on these inputs, as training
  // has them: no forward is repeated. The coarse levels that forward built are used, so no
  // other forward may come in between.
  // On a shard (sequence_parallel.hpp) the rows are those of evaluate(), and dk, dv, the
  // coarse gradients and the weight gradients are this shard's terms alone: its queries' terms,
  // until `coarse_formed` (called once the coarse gradients of the shard's queries are formed,
  // before anything reads them) completes the coarse gradients of its window; the weight
  // gradients sum over its own tokens and the cells it owns.
  void backward(ConstTensor q, ConstTensor k, ConstTensor v, ConstTensor out, ConstRowValues lse, ConstTensor dout,
                Tensor dq, Tensor dk, Tensor dv, DownsamplingWeights* dweights = nullptr,
                const std::function<void()>& coarse_formed = {});

  const ExecSpace& execution_space_instance() const { return space_; }
  const Geometry& geometry() const { return g_; }
  const Shard& shard() const { return shard_; }
  const AttentionOptions& options() const { return opt_; }
  ConstTensor coarse_queries() const { return qc_; }
  ConstTensor coarse_keys() const { return kc_; }
  ConstTensor coarse_values() const { return vc_; }
  // Bytes held on the device by the token tree and the weights.
  std::size_t workspace_bytes() const;
  // Bytes the backward passes hold besides the gradients themselves (allocated by the first
  // backward()): per-row delta, the coarse gradients and the far pass's windows, and
  // for the backward without the caller's forward, that forward's output and lse.
  std::size_t backward_workspace_bytes() const;

 private:
  void check_shapes(ConstTensor q, ConstTensor k, ConstTensor v, ConstTensor out) const;

  ExecSpace space_;
  Geometry g_;
  Shard shard_;
  // shard_'s level tables in memory_space, captured by the kernels (detail::ShardView).
  Kokkos::View<const std::int64_t* [3], Kokkos::LayoutRight, memory_space> shard_levels_;
  // The backward's per-level window table in memory_space, built by its first call.
  Kokkos::View<const std::int64_t* [2], Kokkos::LayoutRight, memory_space> backward_windows_;
  bool whole_ = true;  // shard_ is the whole sequence
  AttentionOptions opt_;
  int d_ = 0;
  std::int64_t heads_ = 0;
  Tensor qc_, kc_, vc_;
  Kokkos::View<Scalar*, memory_space> qw_, qb_, kw_, kb_, vw_, vb_;
  // Linear variant: per coarse query, the partial softmax sums of its level's far field.
  Kokkos::View<Scalar**, Kokkos::LayoutRight, memory_space> part_max_, part_den_;
  Tensor part_num_;
  // Backward workspace, allocated by the first backward(): per-row dO·out, the gradients of the
  // coarse keys and values and the far-field teams' terms of them; for the backward without a
  // forward of the caller's, that forward's output and lse.
  RowValues delta_, own_lse_;
  Tensor dkc_, dvc_, pk_, pv_, own_out_;
};

// Exact attention for sampled query rows (positions rows(bh, s)), accumulated in double:
// ref(bh, s, :), computed on `space`. Used to validate runs and by the tests.
template <class Scalar, class ExecSpace = Kokkos::DefaultExecutionSpace>
void reference_rows(Variant variant, double scale,
                    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> q,
                    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> k,
                    Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename ExecSpace::memory_space> v,
                    Kokkos::View<const std::int64_t**, Kokkos::LayoutRight, typename ExecSpace::memory_space> rows,
                    Kokkos::View<double***, Kokkos::LayoutRight, typename ExecSpace::memory_space> ref,
                    const ExecSpace& space = ExecSpace());

}  // namespace fmattn
