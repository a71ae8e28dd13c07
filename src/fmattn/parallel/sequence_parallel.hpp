// FMA on a sequence sharded across the ranks of a communicator (ShardPlan): every rank holds a
// contiguous run of fine blocks of all heads. Near-field halo blocks travel between neighbours
// while the coarse sums are formed; cells shared by several ranks are completed along the
// plan's reduction trees (level by level for average downsampling, so that every sum is formed
// from the same halves as on one rank), and completed cells reach the ranks whose far fields
// need them along the delivery trees. Then each rank evaluates its own query tiles.
#pragma once

#include <fmattn/core/attention.hpp>
#include <fmattn/parallel/shard_plan.hpp>

#include <mpi.h>

#include <cstdint>

namespace fmattn {

struct CommStats {
  double seconds = 0;  // waiting for messages and packing them
  std::int64_t bytes_sent = 0, bytes_received = 0;
};

template <class Scalar>
class ShardedAttention {
 public:
  using Tensor = typename Attention<Scalar>::Tensor;
  using ConstTensor = typename Attention<Scalar>::ConstTensor;
  using ExecSpace = typename Attention<Scalar>::execution_space;

  // InputError when the sequence has fewer fine blocks than `comm` has ranks, or the options
  // need the whole sequence (exact attention, the linear variant). Kernels, packing and
  // allocations run on `space`.
  ShardedAttention(const Geometry& g, const AttentionOptions& opt, int head_dim, std::int64_t heads, MPI_Comm comm,
                   const ExecSpace& space = ExecSpace());

  const ShardPlan& plan() const { return plan_; }
  const Shard& shard() const { return plan_.shard; }
  Attention<Scalar>& local() { return att_; }
  // Totals of all forward() calls so far on this rank.
  const CommStats& stats() const { return stats_; }

  using RowValues = typename Attention<Scalar>::RowValues;
  using ConstRowValues = typename Attention<Scalar>::ConstRowValues;

  // q and out: the shard's own rows; k and v: its stored rows with the own rows filled in (the
  // halo rows are received here). With `lse` ([heads][own rows]) each row's log-sum-exp, for
  // backward().
  void forward(ConstTensor q, Tensor k, Tensor v, Tensor out, const std::function<void(double)>& progress = {},
               RowValues lse = {});

  // The gradients of sum(dout · forward(q, k, v)) with the rows of forward() and that forward's
  // out and lse (no other forward in between): dq of the own rows; dk, dv of the own rows with
  // every rank's terms (the halo rows are scratch); with `dweights`, this rank's terms of the
  // learned basis functions' gradients (its own tokens and the cells it owns: the caller sums
  // them over the ranks). The forward's exchanges run backwards: each coarse cell's gradient is
  // summed up its delivery tree to its owner and handed down its reduction tree to every rank
  // holding some of its tokens; the gradients of halo rows go back to their owners.
  void backward(ConstTensor q, ConstTensor k, ConstTensor v, ConstTensor out, ConstRowValues lse, ConstTensor dout,
                Tensor dq, Tensor dk, Tensor dv, DownsamplingWeights* dweights = nullptr);

 private:
  void reduce(int level);  // level 0: all levels at once
  // Cells down their trees from the root: the forward's completed cells along the delivery
  // trees, the backward's completed gradients along the reduction trees.
  void pass_down(const std::vector<ShardPlan::Node>& nodes, const std::vector<std::vector<int>>& child_tags, Tensor k,
                 Tensor v);
  void gather_coarse_gradients();  // delivery trees, leaves to owner
  void return_halo_gradients(Tensor dk, Tensor dv);

  Geometry g_;
  AttentionOptions opt_;
  int d_;
  std::int64_t heads_;
  MPI_Comm comm_;
  ShardPlan plan_;
  Attention<Scalar> att_;
  CommStats stats_;
};

}  // namespace fmattn
