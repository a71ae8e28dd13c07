#include <fmattn/model/corpus.hpp>

#include <fmattn/util/errors.hpp>
#include "kernels/synthetic.hpp"

#include <filesystem>
#include <fstream>

namespace fmattn {

Corpus::Corpus(const std::string& path, const std::string& key, std::int64_t window) : path_(path) {
  std::error_code ec;
  if (path.empty()) throw InputError(key + ": no corpus file given");
  if (std::filesystem::is_directory(path, ec))
    throw InputError(key + ": " + path + " is a directory, not a corpus file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(key + ": cannot open '" + path + "' (make the corpus with scripts/make-corpus.sh)");
  bytes_.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  if (f.bad()) throw InputError(key + ": error reading '" + path + "'");
  if (size() < window)
    throw InputError(key + ": '" + path + "' holds " + std::to_string(size()) + " bytes, fewer than one window of " +
                     std::to_string(window) + " (model.context + 1)");
}

std::int64_t train_offset(std::uint64_t seed, std::int64_t step, std::int64_t index, std::int64_t size,
                          std::int64_t window) {
  const std::uint64_t h = detail::hash_key(seed, 0x7a11ull, std::uint64_t(step), std::uint64_t(index), 0);
  return std::int64_t(h % std::uint64_t(size - window + 1));
}

std::int64_t validation_offset(std::uint64_t seed, std::int64_t index, std::int64_t size, std::int64_t window) {
  const std::uint64_t h = detail::hash_key(seed, 0xe7a1ull, std::uint64_t(index), 0, 0);
  return std::int64_t(h % std::uint64_t(size - window + 1));
}

}  // namespace fmattn
