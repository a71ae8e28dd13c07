// The library's model as the independent reference of reference_lm.hpp reads it: its shape
// and its flat parameters as named arrays; and the windows and parameters the model tests use.
#pragma once

#include <fmattn/model/config.hpp>
#include <fmattn/model/language_model.hpp>
#include <fmattn/model/parameters.hpp>
#include "reference_lm.hpp"

#include <Kokkos_Core.hpp>

#include <random>
#include <string>
#include <vector>

namespace testing_lm {

inline ref_lm::Config reference_of(const fmattn::ModelConfig& m) {
  ref_lm::Config r;
  r.layers = m.layers;
  r.width = m.width;
  r.heads = m.heads;
  r.context = m.context;
  r.block_size = m.block_size;
  r.rank = m.rank;
  r.method = m.attention.method == fmattn::Method::exact ? ref_lm::Method::exact
             : m.attention.method == fmattn::Method::fma ? ref_lm::Method::fma
                                                         : ref_lm::Method::local;
  r.learned = m.learned_basis();
  r.positions = m.learned_positions();
  r.count_weighting = m.attention.count_weighting;
  r.scale = m.attention.scale;
  return r;
}

// The flat parameters as the reference's named arrays: basis functions of all levels
// concatenated per operator, as the reference reads them.
inline ref_lm::Params named(const std::vector<fmattn::ParameterSlot>& slots, const std::vector<double>& x) {
  ref_lm::Params p;
  for (const auto& s : slots) {
    const auto level = s.name.find("/level_");
    std::string name = s.name;
    if (level != std::string::npos) name = s.name.substr(0, level) + s.name.substr(s.name.rfind('/'));
    auto& v = p[name];
    v.insert(v.end(), x.begin() + s.offset, x.begin() + s.offset + s.size);
  }
  return p;
}

// n + 1 bytes of a small alphabet (repeats: tokens share embedding rows).
inline std::vector<unsigned char> window_bytes(int n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<unsigned char> w(std::size_t(n) + 1);
  for (auto& b : w) b = static_cast<unsigned char>('a' + rng() % 8);
  return w;
}

// A model's initial parameters plus seeded noise (the basis functions' scaled to their
// learning rate), so that gains, biases and basis functions are away from their special
// initial values.
inline std::vector<double> noisy_parameters(const fmattn::LanguageModel<double>& model) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.parameters());
  std::mt19937_64 rng(5);
  std::normal_distribution<double> noise(0.0, 1.0);
  for (const auto& s : model.slots()) {
    const bool basis = s.name.find("downsampling") != std::string::npos;
    for (std::int64_t i = s.offset; i < s.offset + s.size; ++i)
      h(i) += basis ? 0.2 * s.lr_scale * noise(rng) : 0.1 * noise(rng);
  }
  return std::vector<double>(h.data(), h.data() + h.extent(0));
}

}  // namespace testing_lm
