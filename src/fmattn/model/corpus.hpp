// A byte corpus and the windows a step reads from it. Window offsets come from a counter-based
// hash of (seed, step, window index), so which bytes a step sees does not depend on the number
// of ranks or threads, and a restart at step t reads what the uninterrupted run read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fmattn {

class Corpus {
 public:
  // Reads the whole file; InputError naming `key` and the file when it cannot be read or holds
  // fewer than `window` bytes.
  Corpus(const std::string& path, const std::string& key, std::int64_t window);
  std::int64_t size() const { return std::int64_t(bytes_.size()); }
  const std::string& path() const { return path_; }
  const std::uint8_t* at(std::int64_t offset) const { return bytes_.data() + offset; }

 private:
  std::string path_;
  std::vector<std::uint8_t> bytes_;
};

// Start of training window `index` of step `step` (windows of `window` bytes).
std::int64_t train_offset(std::uint64_t seed, std::int64_t step, std::int64_t index, std::int64_t size,
                          std::int64_t window);
// Start of validation window `index`: the same set at every evaluation.
std::int64_t validation_offset(std::uint64_t seed, std::int64_t index, std::int64_t size, std::int64_t window);

}  // namespace fmattn
