// Small language-model decks and a corpus with structure (a model can learn it in a few steps)
// for the train tests.
#pragma once

#include <fmattn/io/deck.hpp>

#include <cstdint>
#include <fstream>
#include <string>

namespace testing_train {

// Words from a small vocabulary in a pattern with long-range repeats: `bytes` bytes.
inline void write_corpus(const std::string& path, std::int64_t bytes) {
  static const char* words[] = {"alpha ", "beta ", "gamma ", "delta ", "kokkos ", "multipole ", "attention\n"};
  std::string s;
  std::uint64_t x = 12345;
  while (std::int64_t(s.size()) < bytes) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    s += words[(x >> 33) % 7];
    if ((x >> 20) % 5 == 0) s += "fast multipole attention\n";
  }
  s.resize(std::size_t(bytes));
  std::ofstream(path, std::ios::binary) << s;
}

// A two-block FMA model with learned basis functions: context 64, block 8, two coarse levels.
inline std::string deck_text(const std::string& train, const std::string& val, const std::string& checkpoint,
                             const std::string& dtype, std::int64_t steps) {
  return "run: {name: t, seed: 42, progress_seconds: 0}\n"
         "model: {layers: 2, width: 16, heads: 2, context: 64, dtype: " +
         dtype +
         "}\n"
         "attention: {method: fma, block_size: 8, rank: 2, downsampling: learned}\n"
         "data: {train: '" +
         train + "', val: '" + val +
         "'}\n"
         "train: {steps: " +
         std::to_string(steps) +
         ", batch: 4, learning_rate: 0.003, min_learning_rate: 0.0003, warmup_steps: 4, eval_every: 5, "
         "eval_windows: 4, checkpoint_every: 5, checkpoint_file: '" +
         checkpoint + "'}\n";
}

inline fmattn::Deck deck(const std::string& train, const std::string& val, const std::string& checkpoint,
                         const std::string& dtype = "float64", std::int64_t steps = 20,
                         const std::vector<std::string>& overrides = {}) {
  return fmattn::parse_deck(deck_text(train, val, checkpoint, dtype, steps), "test", overrides);
}

}  // namespace testing_train
