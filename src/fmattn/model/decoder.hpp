// Autoregressive decoding of a language model through a hierarchical KV cache
// (docs/language-model.md, "Generating"). Streams are independent continuations of one prompt,
// advanced together: the dense products run over the streams' rows, attention per stream and
// head against a state that, for FMA, holds the near field's fine keys and values and per
// coarse level the last completed cells' coarse keys and values and the running sums of the
// current cell, so that a step's work and the state do not grow with the position. `exact`
// keeps every key (a plain KV cache), `local` the near field alone.
#pragma once

#include <fmattn/model/language_model.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <memory>
#include <vector>

namespace fmattn {

template <class Scalar>
class Decoder {
 public:
  using execution_space = typename LanguageModel<Scalar>::execution_space;
  using memory_space = typename LanguageModel<Scalar>::memory_space;

  // `streams` continuations of `model` with room for positions 0 .. capacity − 1 (the prompt
  // and the bytes to generate). The model's parameters are read as they are now (the basis
  // functions are copied): keep them unchanged while decoding. std::invalid_argument when the
  // capacity exceeds positions_limit(model.config()).
  Decoder(LanguageModel<Scalar>& model, std::int64_t streams, std::int64_t capacity);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // The most positions a model can decode: its context T with learned positions or the
  // zero_sink boundary (tied to the window's levels), otherwise unlimited.
  static std::int64_t positions_limit(const ModelConfig& c);

  // Puts `prompt` (at least one byte) through the model's batched forward and builds every
  // stream's state from its keys and values; logits() then predicts position prompt.size().
  // Beyond the context (positions none) the forward takes as much of the prompt as fits in
  // `forward_budget` bytes of activations (at least the context), and the decoder steps
  // through the rest.
  void prefill(const std::vector<std::uint8_t>& prompt, std::size_t forward_budget = std::size_t(4) << 30);
  // Appends bytes[s] to stream s at position() and computes the logits that predict the next.
  void step(const std::vector<std::uint8_t>& bytes);

  std::int64_t streams() const { return streams_; }
  std::int64_t capacity() const { return capacity_; }
  // Bytes taken so far (prompt and steps): the position of the next byte.
  std::int64_t position() const { return position_; }
  // Logits of the last position taken, per stream [streams][256], on the host.
  const std::vector<double>& logits() const { return logits_; }
  // Bytes of one stream's state (all layers and heads), sized for the capacity.
  std::size_t state_bytes_per_stream() const;
  // The same for a decoder of model c with room for `capacity` positions, before making one.
  static std::size_t state_bytes(const ModelConfig& c, std::int64_t capacity);

 private:
  struct Impl;
  // The state after the first n bytes of `prompt`, from `model`'s forward over them.
  void prefill_forward(LanguageModel<Scalar>& model, const std::vector<std::uint8_t>& prompt, std::int64_t n);
  LanguageModel<Scalar>& model_;
  std::int64_t streams_ = 1, capacity_ = 1, position_ = 0;
  std::vector<double> logits_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fmattn
