// For tests that make non-finite values on purpose: the test main traps FE_INVALID,
// FE_DIVBYZERO and FE_OVERFLOW so that a NaN fails a test where it is born; this scope lifts
// the traps (on the calling thread, the one that has them) and restores them on exit.
#pragma once

#include <cfenv>

namespace testing_fp {

class NoTraps {
 public:
  NoTraps() : traps_(fegetexcept()) { fedisableexcept(FE_ALL_EXCEPT); }
  ~NoTraps() {
    feclearexcept(FE_ALL_EXCEPT);
    feenableexcept(traps_);
  }
  NoTraps(const NoTraps&) = delete;
  NoTraps& operator=(const NoTraps&) = delete;

 private:
  int traps_;
};

}  // namespace testing_fp
