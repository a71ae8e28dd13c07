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

  // q and out: the shard's own rows; k and v: its stored rows with the own rows filled in (the
  // halo rows are received here).
  void forward(ConstTensor q, Tensor k, Tensor v, Tensor out, const std::function<void(double)>& progress = {});

 private:
  void reduce(int level);  // level 0: all levels at once
  void deliver();

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
