// A model's parameters (or their gradients) as Kokkos views into its flat vector, by layer:
// what the training model and the decoder read the weights through.
#pragma once

#include <fmattn/model/parameters.hpp>

#include <Kokkos_Core.hpp>

#include <string>
#include <vector>

namespace fmattn::detail {

template <class S, class Memory>
using ModelMatrix = Kokkos::View<S**, Kokkos::LayoutRight, Memory>;
template <class S, class Memory>
using ModelVector = Kokkos::View<S*, Memory>;

// One block's parameters (or gradients) as views into a flat vector.
template <class S, class Memory>
struct BlockViews {
  ModelVector<S, Memory> ln1_gain, ln1_bias, bq, bk, bv, bo, ln2_gain, ln2_bias, b1, b2;
  ModelMatrix<S, Memory> wq, wk, wv, wo, w1, w2;
};

template <class S, class Memory>
struct ModelViews {
  ModelMatrix<S, Memory> embedding, position;  // position: empty with positions none
  std::vector<BlockViews<S, Memory>> blocks;
  ModelVector<S, Memory> final_gain, final_bias;

  ModelViews(const ModelVector<S, Memory>& flat, const std::vector<ParameterSlot>& slots, const ModelConfig& c) {
    auto m = [&](const std::string& name) {
      const ParameterSlot& s = find_slot(slots, name);
      return ModelMatrix<S, Memory>(flat.data() + s.offset, s.shape[0], s.shape[1]);
    };
    auto v = [&](const std::string& name) {
      const ParameterSlot& s = find_slot(slots, name);
      return ModelVector<S, Memory>(flat.data() + s.offset, s.size);
    };
    embedding = m("embedding");
    if (c.learned_positions()) position = m("position");
    for (int b = 0; b < c.layers; ++b) {
      const std::string p = block_prefix(b);
      blocks.push_back({v(p + "ln1_gain"), v(p + "ln1_bias"), v(p + "bq"), v(p + "bk"), v(p + "bv"), v(p + "bo"),
                        v(p + "ln2_gain"), v(p + "ln2_bias"), v(p + "b1"), v(p + "b2"), m(p + "wq"), m(p + "wk"),
                        m(p + "wv"), m(p + "wo"), m(p + "w1"), m(p + "w2")});
    }
    final_gain = v("final_norm/gain");
    final_bias = v("final_norm/bias");
  }
};

}  // namespace fmattn::detail
