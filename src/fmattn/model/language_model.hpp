// The byte-level language model (docs/language-model.md) on Kokkos Views: parameters and
// their gradients as flat vectors, the dense products through fmattn's deterministic GEMM
// (kernels/dense_gemm.hpp), attention through fmattn's own forward and backward. One window of
// T + 1 bytes at a time; the gradients of successive windows accumulate until zero_gradients().
#pragma once

#include <fmattn/model/config.hpp>
#include <fmattn/model/parameters.hpp>

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

  // Parameters at their initial values for `seed`.
  LanguageModel(const ModelConfig& config, std::uint64_t seed);
  ~LanguageModel();
  LanguageModel(const LanguageModel&) = delete;
  LanguageModel& operator=(const LanguageModel&) = delete;

  const ModelConfig& config() const { return config_; }
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

  // The window's T predictions (bytes[t] → bytes[t + 1]): returns their summed loss in nats
  // (double, summed in order) and, when `per_token` is given, writes each loss there. With
  // grad_scale > 0 adds grad_scale · ∂(summed loss)/∂θ to gradients().
  double window(const std::uint8_t* bytes, double grad_scale, std::vector<double>* per_token = nullptr);
  // The window's logits [T][256] (after window(), for tests and analysis): copied to the host.
  std::vector<double> logits() const;

  // Bytes of the activations and scratch one window holds.
  std::size_t workspace_bytes() const;

 private:
  struct Workspace;
  void forward(const std::uint8_t* bytes);
  void backward();

  ModelConfig config_;
  std::vector<ParameterSlot> slots_;
  Vector params_, grads_;
  std::unique_ptr<Workspace> ws_;
};

}  // namespace fmattn
