// Thin RAII layer over the HDF5 C API: files written under a temporary name and renamed into
// place when complete, typed attributes and datasets, and shape/type checks that turn every
// mismatch into an InputError naming the file and the dataset.
#pragma once

#include <hdf5.h>
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace fmattn::h5 {

// An owned HDF5 identifier, closed with the matching H5*close on destruction.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  void reset();
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// A file being written: created as `<path>.tmp-<pid>`, renamed to `path` by commit(); removed
// if destroyed uncommitted (an exception, a failed run), so no truncated file appears under
// the final name.
//
// With a communicator of more than one rank the file is opened with MPI-IO: every rank must
// make the same calls (collective metadata); row slabs are written collectively.
class NewFile {
 public:
  explicit NewFile(const std::string& path, MPI_Comm comm = MPI_COMM_SELF);
  ~NewFile();
  NewFile(const NewFile&) = delete;
  NewFile& operator=(const NewFile&) = delete;
  hid_t id() const { return file_; }
  const std::string& path() const { return path_; }
  void commit();

 private:
  std::string path_, tmp_;
  MPI_Comm comm_;
  Handle file_;
  bool committed_ = false;
};

// Opens an existing file read-only (with MPI-IO when comm has several ranks); InputError naming
// the file when it is missing or not HDF5.
Handle open_read(const std::string& path, MPI_Comm comm = MPI_COMM_SELF);

Handle create_group(hid_t loc, const std::string& name);
Handle open_group(hid_t loc, const std::string& name, const std::string& file);
bool exists(hid_t loc, const std::string& path);

void write_attr(hid_t obj, const std::string& name, const std::string& value);
void write_attr(hid_t obj, const std::string& name, double value);
void write_attr(hid_t obj, const std::string& name, std::int64_t value);
double read_attr_double(hid_t obj, const std::string& name, const std::string& where);
std::int64_t read_attr_int(hid_t obj, const std::string& name, const std::string& where);
std::string read_attr_string(hid_t obj, const std::string& name, const std::string& where);

// The HDF5 memory type of a C++ scalar.
template <class T>
hid_t native_type();

// Dataset shape and whether its element type is a float of 4 or 8 bytes.
struct DatasetInfo {
  std::vector<std::int64_t> shape;
  bool is_float = false;
  std::size_t bytes = 0;
};
DatasetInfo dataset_info(hid_t loc, const std::string& name, const std::string& file);

// Creates and writes a whole dataset. Under MPI every rank calls it; only ranks with
// `participate` write data (the others select nothing).
template <class T>
void write_dataset(hid_t loc, const std::string& name, const std::vector<std::int64_t>& shape, const T* data,
                   bool participate = true);

// Tokens [first, first + count) of the third dimension of a [batch][heads][n][...] dataset;
// count < 0: all of them.
struct TokenRange {
  std::int64_t first = 0, count = -1;
};

// Datasets shaped [batch][heads][...] accessed by a range [first, last) of flattened batch·head
// rows (and optionally of tokens), contiguous in `data` as [rows][tokens][...]: each MPI rank
// reads or writes the heads, or the run of tokens of all heads, it owns.
template <class T>
void write_rows(hid_t loc, const std::string& name, const std::vector<std::int64_t>& shape, std::int64_t first,
                std::int64_t last, const T* data, bool collective, const TokenRange& tokens = {});

// Reads a whole float dataset, converting to T; InputError when missing, not floating point,
// of another shape than `expect`, or containing NaN/Inf.
template <class T>
void read_float_dataset(hid_t loc, const std::string& name, const std::vector<std::int64_t>& expect, T* data,
                        const std::string& file);
// The same for rows [first, last) (and tokens) of a [batch][heads][...] dataset, and values of
// magnitude above `max_magnitude` are refused too.
template <class T>
void read_float_rows(hid_t loc, const std::string& name, const std::vector<std::int64_t>& expect, std::int64_t first,
                     std::int64_t last, T* data, const std::string& file, const TokenRange& tokens = {},
                     double max_magnitude = HUGE_VAL);

// Rows [first, first + count) of the first dimension of a dataset of any rank (a sharded
// model's rows of its position table), contiguous in `data`. write_leading_rows creates the
// dataset with its whole shape; under MPI every rank calls it with its own rows (count 0: none)
// and the write is collective. read_float_leading_rows checks the type, the whole shape and
// that the values are finite, as read_float_dataset does.
template <class T>
void write_leading_rows(hid_t loc, const std::string& name, const std::vector<std::int64_t>& shape, std::int64_t first,
                        std::int64_t count, const T* data, bool collective);
template <class T>
void read_float_leading_rows(hid_t loc, const std::string& name, const std::vector<std::int64_t>& expect,
                             std::int64_t first, std::int64_t count, T* data, const std::string& file);

std::string shape_string(const std::vector<std::int64_t>& shape);

}  // namespace fmattn::h5
