#include <fmattn/io/hdf5_io.hpp>

#include <fmattn/util/errors.hpp>
#include <fmattn/util/interrupt.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <type_traits>

namespace fmattn::h5 {

namespace {

// HDF5 prints its error stack by default; we report errors ourselves.
struct SilenceHdf5 {
  SilenceHdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
};
const SilenceHdf5 silence;

hid_t check(hid_t id, const std::string& what) {
  if (id < 0) throw std::runtime_error("HDF5: " + what);
  return id;
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = -1;
  }
  return *this;
}

void Handle::reset() {
  if (id_ >= 0 && close_) close_(id_);
  id_ = -1;
}

namespace {
int comm_size(MPI_Comm comm) {
  int size = 1;
  MPI_Comm_size(comm, &size);
  return size;
}
int comm_rank(MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  return rank;
}
Handle access_plist(MPI_Comm comm) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // Closing the file closes what is still open in it, so commit() never renames a file that
  // is still being written (MPI-IO otherwise refuses to close and defers it to exit).
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
#ifdef H5_HAVE_PARALLEL
  if (comm_size(comm) > 1) H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
#else
  if (comm_size(comm) > 1) throw std::runtime_error("HDF5 was built without MPI-IO; cannot write from several ranks");
#endif
  return fapl;
}
}  // namespace

NewFile::NewFile(const std::string& path, MPI_Comm comm) : path_(path), comm_(comm) {
  const auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty() && comm_rank(comm) == 0) std::filesystem::create_directories(parent, ec);
  // One temporary name for all ranks: rank 0's process id.
  long pid = long(::getpid());
  MPI_Bcast(&pid, 1, MPI_LONG, 0, comm);
  tmp_ = path + ".tmp-" + std::to_string(pid);
  // Tracked before it exists: a stop at any moment from here on removes it.
  if (comm_rank(comm) == 0) interrupt::track(tmp_);
  Handle fapl = access_plist(comm);
  const hid_t id = H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  int ok = id >= 0, all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
  if (!all_ok) {
    if (id >= 0) H5Fclose(id);
    if (comm_rank(comm) == 0) std::remove(tmp_.c_str());
    interrupt::untrack(tmp_);
    throw InputError(path + ": cannot create the output file (is its directory writable?)");
  }
  file_ = Handle(id, H5Fclose);
}

NewFile::~NewFile() {
  if (!committed_) {
    file_.reset();
    if (comm_rank(comm_) == 0) std::remove(tmp_.c_str());
  }
  interrupt::untrack(tmp_);
}

void NewFile::commit() {
  check(H5Fflush(file_, H5F_SCOPE_GLOBAL), "flush " + tmp_);
  file_.reset();
  MPI_Barrier(comm_);
  int ok = 1;
  if (comm_rank(comm_) == 0) ok = std::rename(tmp_.c_str(), path_.c_str()) == 0;
  interrupt::untrack(tmp_);
  MPI_Bcast(&ok, 1, MPI_INT, 0, comm_);
  if (!ok) throw std::runtime_error("cannot rename " + tmp_ + " to " + path_);
  committed_ = true;
}

Handle open_read(const std::string& path, MPI_Comm comm) {
  if (!std::filesystem::exists(path)) throw InputError(path + ": no such file");
  if (H5Fis_hdf5(path.c_str()) <= 0) throw InputError(path + ": not an HDF5 file");
  Handle fapl = access_plist(comm);
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl);
  if (id < 0) throw InputError(path + ": cannot open as HDF5");
  return Handle(id, H5Fclose);
}

Handle create_group(hid_t loc, const std::string& name) {
  return Handle(check(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "create group " + name),
                H5Gclose);
}

bool exists(hid_t loc, const std::string& path) {
  // H5Lexists needs every intermediate link to exist, so walk the path.
  std::string partial;
  std::size_t start = 0;
  while (start <= path.size()) {
    const auto slash = path.find('/', start);
    partial = path.substr(0, slash);
    if (H5Lexists(loc, partial.c_str(), H5P_DEFAULT) <= 0) return false;
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return true;
}

Handle open_group(hid_t loc, const std::string& name, const std::string& file) {
  if (!exists(loc, name)) throw InputError(file + ": missing group '" + name + "'");
  return Handle(check(H5Gopen2(loc, name.c_str(), H5P_DEFAULT), "open group " + name), H5Gclose);
}

void write_attr(hid_t obj, const std::string& name, const std::string& value) {
  Handle type(check(H5Tcopy(H5T_C_S1), "string type"), H5Tclose);
  H5Tset_size(type, value.empty() ? 1 : value.size());
  H5Tset_cset(type, H5T_CSET_UTF8);
  Handle space(check(H5Screate(H5S_SCALAR), "scalar space"), H5Sclose);
  Handle attr(check(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), "attribute " + name),
              H5Aclose);
  check(H5Awrite(attr, type, value.empty() ? "" : value.data()), "write attribute " + name);
}

namespace {
template <class T>
void write_scalar_attr(hid_t obj, const std::string& name, T value) {
  Handle space(check(H5Screate(H5S_SCALAR), "scalar space"), H5Sclose);
  Handle attr(
      check(H5Acreate2(obj, name.c_str(), native_type<T>(), space, H5P_DEFAULT, H5P_DEFAULT), "attribute " + name),
      H5Aclose);
  check(H5Awrite(attr, native_type<T>(), &value), "write attribute " + name);
}

template <class T>
T read_scalar_attr(hid_t obj, const std::string& name, const std::string& where) {
  if (H5Aexists(obj, name.c_str()) <= 0) throw InputError(where + ": missing attribute '" + name + "'");
  Handle attr(check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "open attribute " + name), H5Aclose);
  Handle space(H5Aget_space(attr), H5Sclose);
  if (H5Sget_simple_extent_npoints(space) != 1) throw InputError(where + ": attribute '" + name + "' is not a scalar");
  if (std::is_integral<T>::value) {
    // HDF5 converts 2.5 to 2 without a word: an integer attribute must be stored as one.
    Handle type(H5Aget_type(attr), H5Tclose);
    if (H5Tget_class(type) != H5T_INTEGER) throw InputError(where + ": attribute '" + name + "' is not an integer");
  }
  T value{};
  if (H5Aread(attr, native_type<T>(), &value) < 0)
    throw InputError(where + ": attribute '" + name + "' is not numeric");
  return value;
}
}  // namespace

void write_attr(hid_t obj, const std::string& name, double value) { write_scalar_attr(obj, name, value); }
void write_attr(hid_t obj, const std::string& name, std::int64_t value) { write_scalar_attr(obj, name, value); }
double read_attr_double(hid_t obj, const std::string& name, const std::string& where) {
  return read_scalar_attr<double>(obj, name, where);
}
std::int64_t read_attr_int(hid_t obj, const std::string& name, const std::string& where) {
  return read_scalar_attr<std::int64_t>(obj, name, where);
}

std::string read_attr_string(hid_t obj, const std::string& name, const std::string& where) {
  if (H5Aexists(obj, name.c_str()) <= 0) throw InputError(where + ": missing attribute '" + name + "'");
  Handle attr(check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "open attribute " + name), H5Aclose);
  Handle type(H5Aget_type(attr), H5Tclose);
  Handle space(H5Aget_space(attr), H5Sclose);
  if (H5Tget_class(type) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1)
    throw InputError(where + ": attribute '" + name + "' is not a string");
  if (H5Tis_variable_str(type) > 0) {
    // The memory type must carry the file's character set (h5py writes UTF-8): HDF5 does not
    // convert between ASCII and UTF-8.
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem, H5T_VARIABLE);
    H5Tset_cset(mem, H5Tget_cset(type));
    char* s = nullptr;
    if (H5Aread(attr, mem, &s) < 0) throw InputError(where + ": cannot read string attribute '" + name + "'");
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  std::string out(H5Tget_size(type), '\0');
  if (H5Aread(attr, type, out.data()) < 0) throw InputError(where + ": cannot read string attribute '" + name + "'");
  return out.substr(0, out.find('\0'));
}

template <>
hid_t native_type<float>() {
  return H5T_NATIVE_FLOAT;
}
template <>
hid_t native_type<double>() {
  return H5T_NATIVE_DOUBLE;
}
template <>
hid_t native_type<std::int64_t>() {
  return H5T_NATIVE_INT64;
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? "][" : "") + std::to_string(shape[i]);
  return s + "]";
}

DatasetInfo dataset_info(hid_t loc, const std::string& name, const std::string& file) {
  if (!exists(loc, name)) throw InputError(file + ": missing dataset '" + name + "'");
  Handle ds(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (ds.get() < 0) throw InputError(file + ": '" + name + "' is not a dataset");
  Handle space(H5Dget_space(ds), H5Sclose);
  Handle type(H5Dget_type(ds), H5Tclose);
  DatasetInfo info;
  const int rank = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(rank > 0 ? rank : 0);
  if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  for (hsize_t x : dims) info.shape.push_back(std::int64_t(x));
  info.bytes = H5Tget_size(type);
  info.is_float = H5Tget_class(type) == H5T_FLOAT && (info.bytes == 4 || info.bytes == 8);
  return info;
}

namespace {
// A dataspace of `shape`, and a new dataset of T over it (contiguous, default properties).
Handle dataspace(const std::vector<std::int64_t>& shape, const std::string& name) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  return Handle(check(H5Screate_simple(int(dims.size()), dims.data(), nullptr), "dataspace " + name), H5Sclose);
}
template <class T>
Handle create_dataset(hid_t loc, const std::string& name, hid_t space) {
  return Handle(check(H5Dcreate2(loc, name.c_str(), native_type<T>(), space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                      "create dataset " + name),
                H5Dclose);
}
}  // namespace

template <class T>
void write_dataset(hid_t loc, const std::string& name, const std::vector<std::int64_t>& shape, const T* data,
                   bool participate) {
  Handle space = dataspace(shape, name);
  Handle ds = create_dataset<T>(loc, name, space);
  if (!participate) H5Sselect_none(space);
  Handle mem(H5Scopy(space), H5Sclose);
  check(H5Dwrite(ds, native_type<T>(), mem, space, H5P_DEFAULT, data), "write dataset " + name);
}

namespace {
// Selects flattened batch·head rows [first, last) of a [batch][heads][...] dataspace, and of
// each the tokens t (third dimension) of `tokens`.
void select_rows(hid_t space, const std::vector<std::int64_t>& shape, std::int64_t first, std::int64_t last,
                 const TokenRange& tokens) {
  H5Sselect_none(space);
  std::vector<hsize_t> start(shape.size(), 0), count(shape.begin(), shape.end());
  count[0] = count[1] = 1;
  if (tokens.count >= 0 && shape.size() > 2) {
    start[2] = hsize_t(tokens.first);
    count[2] = hsize_t(tokens.count);
    if (tokens.count == 0) return;
  }
  for (std::int64_t r = first; r < last; ++r) {
    start[0] = hsize_t(r / shape[1]);
    start[1] = hsize_t(r % shape[1]);
    check(H5Sselect_hyperslab(space, H5S_SELECT_OR, start.data(), nullptr, count.data(), nullptr), "select rows");
  }
}

// Elements of one selected row: its tokens times the remaining dimensions.
std::int64_t row_elements(const std::vector<std::int64_t>& shape, const TokenRange& tokens = {}) {
  std::int64_t e = 1;
  for (std::size_t i = 2; i < shape.size(); ++i) e *= (i == 2 && tokens.count >= 0) ? tokens.count : shape[i];
  return e;
}

Handle transfer_plist(bool collective) {
  Handle dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
#ifdef H5_HAVE_PARALLEL
  if (collective) H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
#endif
  return dxpl;
}
}  // namespace

template <class T>
void write_rows(hid_t loc, const std::string& name, const std::vector<std::int64_t>& shape, std::int64_t first,
                std::int64_t last, const T* data, bool collective, const TokenRange& tokens) {
  Handle space = dataspace(shape, name);
  Handle ds = create_dataset<T>(loc, name, space);
  // A dataset with no elements (validation off: [batch][heads][0]) is complete once created;
  // a collective MPI-IO write of nothing fails.
  if (H5Sget_simple_extent_npoints(space) == 0) return;
  select_rows(space, shape, first, last, tokens);
  const hsize_t n = hsize_t(last - first) * hsize_t(row_elements(shape, tokens));
  Handle mem(H5Screate_simple(1, &n, nullptr), H5Sclose);
  if (n == 0) H5Sselect_none(mem);
  Handle dxpl = transfer_plist(collective);
  check(H5Dwrite(ds, native_type<T>(), mem, space, dxpl, data), "write dataset " + name);
}
namespace {
// The shape and type were checked before reading, so a failing read is the file's content: a
// damaged chunk, a filter this HDF5 lacks.
InputError unreadable(const std::string& file, const std::string& name) {
  return InputError(file + ": cannot read dataset '" + name +
                    "' (damaged file, or compressed with a filter this HDF5 does not have)");
}

template <class T>
void check_finite(const T* data, std::int64_t count, std::int64_t first_row, const std::vector<std::int64_t>& shape,
                  const std::string& name, const std::string& file, const TokenRange& tokens = {},
                  double max_magnitude = HUGE_VAL) {
  for (std::int64_t i = 0; i < count; ++i) {
    // Quiet comparisons: the tests trap FE_INVALID, which an ordered compare with NaN raises.
    if (!std::isfinite(data[i]) || std::isgreater(std::abs(double(data[i])), max_magnitude)) {
      // Position in the dataset of element i of the selection [rows][tokens][...].
      std::vector<std::int64_t> at(shape.size());
      const std::int64_t per_row = row_elements(shape, tokens);
      std::int64_t rest = i % per_row;
      for (std::size_t k = shape.size(); k-- > 2;) {
        const std::int64_t extent = (k == 2 && tokens.count >= 0) ? tokens.count : shape[k];
        at[k] = rest % extent + (k == 2 && tokens.count >= 0 ? tokens.first : 0);
        rest /= extent;
      }
      const std::int64_t row = first_row + i / per_row;
      if (shape.size() >= 2) {
        at[0] = row / shape[1];
        at[1] = row % shape[1];
      } else if (!shape.empty()) {
        at[0] = row;
      }
      if (!std::isnan(data[i]) && !std::isinf(data[i])) {
        char value[64];
        std::snprintf(value, sizeof value, "%.3g at %s; |x| <= %.3g is accepted", double(data[i]),
                      shape_string(at).c_str(), max_magnitude);
        throw InputError(file + ": dataset '" + name + "' holds " + value + " in " +
                         (sizeof(T) == 4 ? "float32" : "float64") +
                         " (larger values overflow the sums of attention: scale the input down)");
      }
      throw InputError(file + ": dataset '" + name + "' holds " + (std::isnan(data[i]) ? "NaN" : "Inf") + " at " +
                       shape_string(at));
    }
  }
}
}  // namespace

template <class T>
void read_float_rows(hid_t loc, const std::string& name, const std::vector<std::int64_t>& expect, std::int64_t first,
                     std::int64_t last, T* data, const std::string& file, const TokenRange& tokens,
                     double max_magnitude) {
  const DatasetInfo info = dataset_info(loc, name, file);
  if (!info.is_float) throw InputError(file + ": dataset '" + name + "' must be float32 or float64");
  if (info.shape != expect)
    throw InputError(file + ": dataset '" + name + "' has shape " + shape_string(info.shape) + ", expected " +
                     shape_string(expect) + " ([batch][heads][length][head_dim] from the deck)");
  Handle ds(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose);
  Handle space(H5Dget_space(ds), H5Sclose);
  select_rows(space, expect, first, last, tokens);
  const hsize_t n = hsize_t(last - first) * hsize_t(row_elements(expect, tokens));
  Handle mem(H5Screate_simple(1, &n, nullptr), H5Sclose);
  if (n == 0) H5Sselect_none(mem);
  if (H5Dread(ds, native_type<T>(), mem, space, H5P_DEFAULT, data) < 0) throw unreadable(file, name);
  check_finite(data, std::int64_t(n), first, expect, name, file, tokens, max_magnitude);
}

namespace {
// Selects rows [first, first + count) of the first dimension; returns the elements selected.
hsize_t select_leading_rows(hid_t space, const std::vector<std::int64_t>& shape, std::int64_t first,
                            std::int64_t count) {
  std::vector<hsize_t> start(shape.size(), 0), extent(shape.begin(), shape.end());
  start[0] = hsize_t(first);
  extent[0] = hsize_t(count);
  if (count == 0) {
    H5Sselect_none(space);
    return 0;
  }
  check(H5Sselect_hyperslab(space, H5S_SELECT_SET, start.data(), nullptr, extent.data(), nullptr), "select rows");
  hsize_t n = 1;
  for (const hsize_t e : extent) n *= e;
  return n;
}
}  // namespace

template <class T>
void write_leading_rows(hid_t loc, const std::string& name, const std::vector<std::int64_t>& shape, std::int64_t first,
                        std::int64_t count, const T* data, bool collective) {
  Handle space = dataspace(shape, name);
  Handle ds = create_dataset<T>(loc, name, space);
  if (H5Sget_simple_extent_npoints(space) == 0) return;
  const hsize_t n = select_leading_rows(space, shape, first, count), one = 1;
  Handle mem(H5Screate_simple(1, n > 0 ? &n : &one, nullptr), H5Sclose);
  if (n == 0) H5Sselect_none(mem);
  Handle dxpl = transfer_plist(collective);
  check(H5Dwrite(ds, native_type<T>(), mem, space, dxpl, data), "write dataset " + name);
}

template <class T>
void read_float_leading_rows(hid_t loc, const std::string& name, const std::vector<std::int64_t>& expect,
                             std::int64_t first, std::int64_t count, T* data, const std::string& file) {
  const DatasetInfo info = dataset_info(loc, name, file);
  if (!info.is_float) throw InputError(file + ": dataset '" + name + "' must be float32 or float64");
  if (info.shape != expect)
    throw InputError(file + ": dataset '" + name + "' has shape " + shape_string(info.shape) + ", expected " +
                     shape_string(expect));
  Handle ds(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose);
  Handle space(H5Dget_space(ds), H5Sclose);
  hsize_t n = select_leading_rows(space, expect, first, count);
  if (n == 0) return;
  Handle mem(H5Screate_simple(1, &n, nullptr), H5Sclose);
  if (H5Dread(ds, native_type<T>(), mem, space, H5P_DEFAULT, data) < 0) throw unreadable(file, name);
  // Positions in an error are the dataset's: rows of the first two dimensions count from first.
  std::vector<std::int64_t> rows = expect;
  rows[0] = first + count;
  check_finite(data, std::int64_t(n), expect.size() >= 2 ? first * expect[1] : first, rows, name, file);
}

template <class T>
void read_float_dataset(hid_t loc, const std::string& name, const std::vector<std::int64_t>& expect, T* data,
                        const std::string& file) {
  const DatasetInfo info = dataset_info(loc, name, file);
  if (!info.is_float) throw InputError(file + ": dataset '" + name + "' must be float32 or float64");
  if (info.shape != expect)
    throw InputError(file + ": dataset '" + name + "' has shape " + shape_string(info.shape) + ", expected " +
                     shape_string(expect) + " ([batch][heads][length][head_dim] from the deck)");
  Handle ds(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (H5Dread(ds, native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) throw unreadable(file, name);
  std::int64_t count = 1;
  for (auto x : expect) count *= x;
  check_finite(data, count, 0, expect, name, file);
}

#define FMATTN_H5_WRITE(T)                                                                                             \
  template void write_dataset<T>(hid_t, const std::string&, const std::vector<std::int64_t>&, const T*, bool);         \
  template void write_rows<T>(hid_t, const std::string&, const std::vector<std::int64_t>&, std::int64_t, std::int64_t, \
                              const T*, bool, const TokenRange&);
FMATTN_H5_WRITE(float)
FMATTN_H5_WRITE(double)
FMATTN_H5_WRITE(std::int64_t)
#undef FMATTN_H5_WRITE
template void write_leading_rows<float>(hid_t, const std::string&, const std::vector<std::int64_t>&, std::int64_t,
                                        std::int64_t, const float*, bool);
template void write_leading_rows<double>(hid_t, const std::string&, const std::vector<std::int64_t>&, std::int64_t,
                                         std::int64_t, const double*, bool);
template void read_float_leading_rows<float>(hid_t, const std::string&, const std::vector<std::int64_t>&, std::int64_t,
                                             std::int64_t, float*, const std::string&);
template void read_float_leading_rows<double>(hid_t, const std::string&, const std::vector<std::int64_t>&, std::int64_t,
                                              std::int64_t, double*, const std::string&);
template void read_float_rows<float>(hid_t, const std::string&, const std::vector<std::int64_t>&, std::int64_t,
                                     std::int64_t, float*, const std::string&, const TokenRange&, double);
template void read_float_rows<double>(hid_t, const std::string&, const std::vector<std::int64_t>&, std::int64_t,
                                      std::int64_t, double*, const std::string&, const TokenRange&, double);
template void read_float_dataset<float>(hid_t, const std::string&, const std::vector<std::int64_t>&, float*,
                                        const std::string&);
template void read_float_dataset<double>(hid_t, const std::string&, const std::vector<std::int64_t>&, double*,
                                         const std::string&);

}  // namespace fmattn::h5
