// The library's model as the independent reference of reference_lm.hpp reads it: its shape
// and its flat parameters as named arrays.
#pragma once

#include <fmattn/model/config.hpp>
#include <fmattn/model/parameters.hpp>
#include "reference_lm.hpp"

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

}  // namespace testing_lm
