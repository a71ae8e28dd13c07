// Stop requests: SIGINT (Ctrl-C) and SIGTERM (what Slurm sends at the time limit or on requeue).
//
// By default a stop ends the process at once, after removing the temporaries of files being
// written (an output file is written whole or not at all) and saying so on stderr; the exit
// status is 128 + the signal number. Inside a `Deferred` scope (fit's step loop) a stop is only
// recorded: the loop finishes its step, writes a checkpoint and ends with `Interrupted`.
#pragma once

#include <stdexcept>
#include <string>

namespace fmattn {

// Thrown when a deferred stop has been honoured (checkpoint written). The CLI exits with
// `exit_code` so that a job script can tell "stopped, resumable" from success and failure.
class Interrupted : public std::runtime_error {
 public:
  static constexpr int exit_code = 3;
  explicit Interrupted(const std::string& what) : std::runtime_error(what) {}
};

namespace interrupt {

// Installs the handlers (the CLI does, once, after MPI_Init).
void install();

// The signal that asked to stop, 0 if none.
int requested();
const char* signal_name(int signal);

// A file that must not outlive an interrupted process; NewFile registers its temporary.
void track(const std::string& path);
void untrack(const std::string& path);

// While an instance lives, stops are recorded instead of acted on.
class Deferred {
 public:
  Deferred();
  ~Deferred();
  Deferred(const Deferred&) = delete;
  Deferred& operator=(const Deferred&) = delete;
};

}  // namespace interrupt
}  // namespace fmattn
