// The files of a run (README, "Running": exit codes): every input a regular file, every output
// writable and none of the run's inputs, all checked before any work is done; paths in messages
// shortened so that a message stays readable whatever the path.
#pragma once

#include <fmattn/io/deck.hpp>

#include <mpi.h>

#include <string>
#include <vector>

namespace fmattn {

// `path` as a message shows it: its middle elided beyond a couple of hundred characters.
std::string shown_path(const std::string& path);

// Why `path` can never name a file (a NUL byte, longer than PATH_MAX, a component longer than
// NAME_MAX), or "" when it can.
std::string path_problem(const std::string& path);

// InputError "<label>: cannot open '<path>': ..." unless `path` is an existing regular file
// (stat before open: a FIFO or a device would block or never end).
void check_input_file(const std::string& path, const std::string& label);

// InputError "<label>: ..." unless a file can be created at `path`: not a directory, not an
// existing non-regular file, its nearest existing folder writable (tried with a probe file
// that is removed at once). Creates nothing.
void check_output_file(const std::string& path, const std::string& label);

// True when `a` and `b` are the same file: the same device and inode where both exist, else
// the same absolute path once symbolic links and '..' are resolved.
bool same_file(const std::string& a, const std::string& b);

// A file a verb reads or writes, by the deck key that names it.
struct FileUse {
  std::string key, path;
  bool output = false;
  bool hdf5 = false;     // an input that must be an HDF5 file
  std::string replaces;  // an output that may be the input of this key (train.restart_from)
};

// The files `verb` (run, fit, train, eval) reads and writes for `deck`, the deck itself first.
std::vector<FileUse> files_of(const Deck& deck, const std::string& verb, const std::string& deck_path);

// The files `fmattn generate` writes, stream by stream: <generate.output>.txt for one stream,
// <generate.output>-<s>.txt for several; none for "-" (standard output).
std::vector<std::string> generated_files(const Deck& deck);

// Checks them on rank 0 of `comm` before any work; InputError alike on every rank naming the
// key (and where the deck gives it): inputs regular files, corpora no larger than this node's
// memory, outputs writable, and no output one of the inputs.
void check_files(const Deck& deck, const std::vector<FileUse>& files, MPI_Comm comm = MPI_COMM_WORLD);

}  // namespace fmattn
