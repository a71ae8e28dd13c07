// The byte-level language model (docs/language-model.md) on Kokkos Views: parameters and
// their gradients as flat vectors, the dense products through fmattn's deterministic GEMM
// (kernels/dense_gemm.hpp), attention through fmattn's own forward and backward. A call takes a
// batch of windows of T + 1 bytes together (dense products over windows·T rows, attention over
// windows·heads); the gradients of successive calls accumulate until zero_gradients(). Every
// gradient sum runs over the rows in window order, so windows taken together or one call at a
// time give the same bits (the learned basis functions' gradients, summed by the attention over
// windows·heads, up to rounding).
#pragma once

#include <fmattn/core/attention.hpp>
#include <fmattn/core/weights.hpp>
#include <fmattn/model/config.hpp>
#include <fmattn/model/parameters.hpp>
#include <fmattn/parallel/sequence_parallel.hpp>

#include <mpi.h>
#include <Kokkos_Core.hpp>

#include <cstdint>
#include <memory>
#include <vector>

namespace fmattn {

template <class Scalar>
class LanguageModel {
 public:
  using execution_space = Kokkos::DefaultExecutionSpace;
  using memory_space = execution_space::memory_space;
  using Vector = Kokkos::View<Scalar*, memory_space>;

  // Parameters at their initial values for `seed`; activations for calls of up to
  // `max_windows` windows. With a `sequence` communicator (not MPI_COMM_NULL) the model is this
  // rank's part of a sequence-sharded one (docs/language-model.md): of every window it holds
  // the tokens [token_begin(), token_end()) that ShardPlan gives the rank, and those rows of
  // the position table (every other parameter whole); attention runs through
  // ShardedAttention. Its losses and gradients are then the rank's terms, which the caller
  // sums over the ranks (replicated parameters; each rank keeps its rows of P).
  LanguageModel(const ModelConfig& config, std::uint64_t seed, std::int64_t max_windows = 1,
                MPI_Comm sequence = MPI_COMM_NULL);
  ~LanguageModel();
  LanguageModel(const LanguageModel&) = delete;
  LanguageModel& operator=(const LanguageModel&) = delete;

  const ModelConfig& config() const { return config_; }
  bool sharded() const { return sequence_ != MPI_COMM_NULL; }
  // The positions of a window this model holds: all of them unless sharded.
  std::int64_t token_begin() const { return token_begin_; }
  std::int64_t token_end() const { return token_end_; }
  // Totals of the sharded attention's messages (nothing unless sharded).
  CommStats communication() const;
  std::int64_t max_windows() const { return max_windows_; }
  const std::vector<ParameterSlot>& slots() const { return slots_; }
  Vector parameters() const { return params_; }
  Vector gradients() const { return grads_; }
  void zero_gradients();
  // Replaces the parameters (in parameter_slots order, e.g. a checkpoint's) and hands them on
  // as parameters_changed() does.
  void set_parameters(const std::vector<double>& x);
  // To be called whenever parameters() was written (an optimiser step, a loaded checkpoint):
  // hands the basis functions to the attention of every block.
  void parameters_changed();

  // The T predictions (bytes[t] → bytes[t + 1]) of each of 1 … max_windows() windows (its own
  // positions' when sharded): returns each window's summed loss in nats (double, summed in
  // order) and, when `per_token` is given, writes every loss there, window after window. With grad_scale > 0 adds
  // grad_scale · ∂(summed loss)/∂θ to gradients().
  std::vector<double> windows(const std::vector<const std::uint8_t*>& windows, double grad_scale,
                              std::vector<double>* per_token = nullptr);
  // The same for one window.
  double window(const std::uint8_t* bytes, double grad_scale, std::vector<double>* per_token = nullptr);
  // The logits [windows·T][256] of the last call (for tests and analysis): copied to the host.
  std::vector<double> logits() const;
  // Row r of them (the decoder's prefill needs the prompt's last).
  std::vector<double> logits(std::int64_t row) const;
  // Block b's keys and values of the last call, per window and head [windows·H][T][d]: what
  // the decoder's prefill builds its state from.
  typename Attention<Scalar>::Tensor keys(int block) const;
  typename Attention<Scalar>::Tensor values(int block) const;

  // Bytes of the activations and scratch of a call of max_windows() windows.
  std::size_t workspace_bytes() const;
  // Bytes of the activations of a call of `windows` windows of `rows` positions each (all of
  // the context for 0; a sharded rank's own, with a block of halo keys) (the attention's coarse
  // levels and backward scratch, a few percent more, aside).
  static std::size_t activation_bytes(const ModelConfig& config, std::int64_t windows, std::int64_t rows = 0);

 private:
  struct Workspace;
  void forward(const std::vector<const std::uint8_t*>& windows);
  void backward();
  // Block b's attention for calls of `windows` windows (sharded or not).
  Attention<Scalar>& attention(int block, std::int64_t windows);
  ShardedAttention<Scalar>& sharded_attention(int block, std::int64_t windows);

  ModelConfig config_;
  MPI_Comm sequence_ = MPI_COMM_NULL;  // a duplicate of the caller's, for the attention's messages
  std::int64_t token_begin_ = 0, token_end_ = 0, key_begin_ = 0, key_end_ = 0;
  std::vector<ParameterSlot> slots_;
  std::int64_t max_windows_ = 1;
  Vector params_, grads_;
  std::unique_ptr<Workspace> ws_;
};

}  // namespace fmattn
