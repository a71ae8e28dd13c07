// Errors that reach the user. Library code throws; only the CLI prints and chooses exit codes.
#pragma once

#include <stdexcept>
#include <string>

namespace fmattn {

// Bad input: a deck, an option, a file or the data in it. The CLI exits with code 2.
class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace fmattn
