// HDF5 files (README, "Output files"): datasets and row slabs round-trip, files appear under their
// final name only when complete, every bad input file is an InputError naming the file and the
// dataset or attribute, and results files carry the documented layout (checked with the raw C
// API, not with the library's own readers).
#include <fmattn/core/geometry.hpp>
#include <fmattn/core/weights.hpp>
#include <fmattn/io/deck.hpp>
#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/io/inputs.hpp>
#include <fmattn/io/output_file.hpp>
#include <fmattn/io/weights_file.hpp>
#include <fmattn/util/errors.hpp>
#include <fmattn/version.hpp>
#include "temp_path.hpp"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>
#include <Kokkos_Core.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>
#include <string>
#include <vector>

namespace {

// Test suites are named hdf5* so that `ctest -R hdf5` selects them.
namespace h5 = fmattn::h5;
using fmattn::InputError;

using testing_files::TempPath;
using testing_files::unique_name;

bool file_exists(const std::string& path) { return std::filesystem::exists(path); }

// Files in the working directory whose name starts with `prefix` (left-over temporaries).
std::vector<std::string> files_starting_with(const std::string& prefix) {
  std::vector<std::string> found;
  for (const auto& e : std::filesystem::directory_iterator("."))
    if (e.path().filename().string().rfind(prefix, 0) == 0) found.push_back(e.path().filename().string());
  return found;
}

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

// Runs `f`, which must throw InputError; returns its message.
template <class F>
std::string input_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected InputError, got another exception: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected InputError, nothing thrown";
  return "";
}

std::vector<double> ramp(std::size_t count, double scale, double offset = 0) {
  std::vector<double> v(count);
  for (std::size_t i = 0; i < count; ++i) v[i] = offset + scale * double(i) - 0.37 * double(i % 7);
  return v;
}

std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// One file with one dataset, written through NewFile.
template <class T>
void write_file(const std::string& path, const std::string& name, const std::vector<std::int64_t>& shape,
                const std::vector<T>& data) {
  h5::NewFile f(path);
  h5::write_dataset<T>(f.id(), name, shape, data.data());
  f.commit();
}

TEST(hdf5, DatasetsAndAttributesRoundTrip) {
  TempPath file("data.h5");
  const std::vector<double> d = ramp(2 * 3 * 4, 0.1, -1.0);
  const std::vector<float> f = to_float(ramp(2 * 3 * 4, -0.25, 3.0));
  {
    h5::NewFile out(file.path());
    h5::write_dataset<double>(out.id(), "d", {2, 3, 4}, d.data());
    h5::write_dataset<float>(out.id(), "f", {2, 3, 4}, f.data());
    out.commit();
  }
  h5::Handle in = h5::open_read(file.path());
  std::vector<double> dd(d.size());
  h5::read_float_dataset<double>(in, "d", {2, 3, 4}, dd.data(), file.path());
  EXPECT_EQ(dd, d);
  std::vector<float> ff(f.size());
  h5::read_float_dataset<float>(in, "f", {2, 3, 4}, ff.data(), file.path());
  EXPECT_EQ(ff, f);
  // float64 in the file, float32 in memory: converted by HDF5, rounded to nearest.
  std::vector<float> df(d.size());
  h5::read_float_dataset<float>(in, "d", {2, 3, 4}, df.data(), file.path());
  EXPECT_EQ(df, to_float(d));
  // float32 in the file, float64 in memory: exact.
  std::vector<double> fd(f.size());
  h5::read_float_dataset<double>(in, "f", {2, 3, 4}, fd.data(), file.path());
  EXPECT_EQ(fd, std::vector<double>(f.begin(), f.end()));

  const h5::DatasetInfo info = h5::dataset_info(in, "f", file.path());
  EXPECT_EQ(info.shape, (std::vector<std::int64_t>{2, 3, 4}));
  EXPECT_TRUE(info.is_float);
  EXPECT_EQ(info.bytes, 4u);
  {  // attributes
    TempPath file("attrs.h5");
    {
      h5::NewFile f(file.path());
      h5::write_attr(f.id(), "s", std::string("héllo: world"));
      h5::write_attr(f.id(), "empty", std::string());
      h5::write_attr(f.id(), "d", 0.125);
      h5::write_attr(f.id(), "i", -(std::int64_t(1) << 40));
      f.commit();
    }
    h5::Handle in = h5::open_read(file.path());
    EXPECT_EQ(h5::read_attr_string(in, "s", file.path()), "héllo: world");
    EXPECT_EQ(h5::read_attr_string(in, "empty", file.path()), "");
    EXPECT_EQ(h5::read_attr_double(in, "d", file.path()), 0.125);
    EXPECT_EQ(h5::read_attr_int(in, "i", file.path()), -(std::int64_t(1) << 40));
    EXPECT_TRUE(Contains(input_error([&] { h5::read_attr_int(in, "nope", file.path()); }),
                         file.path() + ": missing attribute 'nope'"));
    EXPECT_TRUE(Contains(input_error([&] { h5::read_attr_string(in, "d", file.path()); }), "'d' is not a string"));
  }
}

TEST(hdf5, RowsRoundTrip) {
  // [batch 2][heads 3][5][4]: 6 flattened rows of 20 values; rows [1, 4) cross the batch boundary.
  const std::vector<std::int64_t> shape{2, 3, 5, 4};
  const std::int64_t row = 5 * 4, first = 1, last = 4;
  const std::vector<double> all = ramp(6 * row, 0.5, 1.0);

  // Written whole, read by rows: the rows land where [b][h] says.
  TempPath whole("whole.h5");
  write_file<double>(whole.path(), "x", shape, all);
  {
    h5::Handle in = h5::open_read(whole.path());
    std::vector<double> got((last - first) * row);
    h5::read_float_rows<double>(in, "x", shape, first, last, got.data(), whole.path());
    EXPECT_EQ(got, std::vector<double>(all.begin() + first * row, all.begin() + last * row));
    std::vector<float> one(row);
    h5::read_float_rows<float>(in, "x", shape, 5, 6, one.data(), whole.path());
    EXPECT_EQ(one, to_float(std::vector<double>(all.end() - row, all.end())));
    // An empty range reads nothing and is not an error.
    h5::read_float_rows<double>(in, "x", shape, 2, 2, got.data(), whole.path());
  }

  // Written by rows, read whole: the other rows keep the fill value 0.
  TempPath rows("rows.h5");
  {
    h5::NewFile out(rows.path());
    h5::write_rows<double>(out.id(), "x", shape, first, last, all.data() + first * row, false);
    out.commit();
  }
  h5::Handle in = h5::open_read(rows.path());
  std::vector<double> got(all.size());
  h5::read_float_dataset<double>(in, "x", shape, got.data(), rows.path());
  for (std::int64_t r = 0; r < 6; ++r)
    for (std::int64_t i = 0; i < row; ++i) {
      const double want = r >= first && r < last ? all[r * row + i] : 0.0;
      ASSERT_EQ(got[r * row + i], want) << "row " << r << " element " << i;
    }
  std::vector<double> back((last - first) * row);
  h5::read_float_rows<double>(in, "x", shape, first, last, back.data(), rows.path());
  EXPECT_EQ(back, std::vector<double>(all.begin() + first * row, all.begin() + last * row));
}

TEST(hdf5, NewFileAppearsOnlyWhenCommitted) {
  TempPath file("new.h5");
  const std::vector<float> x{1, 2, 3};
  {
    h5::NewFile f(file.path());
    h5::write_dataset<float>(f.id(), "x", {3}, x.data());
    EXPECT_FALSE(file_exists(file.path())) << "the final name must not exist before commit()";
    EXPECT_EQ(files_starting_with(file.path() + ".tmp").size(), 1u) << "writes go to a temporary name";
    // Destroyed uncommitted, as after an exception.
  }
  EXPECT_FALSE(file_exists(file.path()));
  EXPECT_TRUE(files_starting_with(file.path()).empty()) << "a temporary file was left behind";

  {
    h5::NewFile f(file.path());
    h5::write_dataset<float>(f.id(), "x", {3}, x.data());
    f.commit();
    EXPECT_TRUE(file_exists(file.path()));
  }
  EXPECT_TRUE(file_exists(file.path()));
  EXPECT_EQ(files_starting_with(file.path()), std::vector<std::string>{file.path()});
  h5::Handle in = h5::open_read(file.path());
  std::vector<float> got(3);
  h5::read_float_dataset<float>(in, "x", {3}, got.data(), file.path());
  EXPECT_EQ(got, x);
  {  // an old file is replaced only on commit
    TempPath file("replace.h5");
    write_file<double>(file.path(), "old", {1}, {1.0});
    {
      h5::NewFile f(file.path());
      h5::write_dataset<double>(f.id(), "new", {1}, std::vector<double>{2.0}.data());
    }
    // The failed rewrite left the old complete file in place.
    {
      h5::Handle in = h5::open_read(file.path());
      EXPECT_TRUE(h5::exists(in, "old"));
      EXPECT_FALSE(h5::exists(in, "new"));
    }
    write_file<double>(file.path(), "new", {1}, {2.0});
    h5::Handle in = h5::open_read(file.path());
    EXPECT_FALSE(h5::exists(in, "old"));
    EXPECT_TRUE(h5::exists(in, "new"));
  }
  {  // missing directories are created; unwritable places are reported
    TempPath dir("dir");
    const std::string nested = dir.path() + "/a/b/out.h5";
    write_file<double>(nested, "x", {1}, {1.0});
    EXPECT_TRUE(file_exists(nested));
    // A regular file where a directory should be: cannot create, whoever runs the test.
    TempPath blocker("blocker");
    std::ofstream(blocker.path()) << "not a directory";
    const std::string bad = blocker.path() + "/out.h5";
    EXPECT_TRUE(Contains(input_error([&] { h5::NewFile f(bad); }), bad));
  }
}

TEST(hdf5, BadFilesAndDatasetsAreNamed) {
  const std::string missing = unique_name("missing.h5");
  EXPECT_TRUE(Contains(input_error([&] { h5::open_read(missing); }), missing + ": no such file"));
  TempPath text("text.h5");
  std::ofstream(text.path()) << "q,k,v\n1,2,3\n";
  EXPECT_TRUE(Contains(input_error([&] { h5::open_read(text.path()); }), text.path() + ": not an HDF5 file"));
  {  // datasets that are missing, of another shape or not floating point
    TempPath file("bad.h5");
    const std::vector<double> good = ramp(2 * 4, 1.0);
    const std::vector<std::int64_t> ints{1, 2, 3, 4, 5, 6, 7, 8};
    {
      h5::NewFile f(file.path());
      h5::write_dataset<double>(f.id(), "q", {2, 4}, good.data());
      h5::write_dataset<std::int64_t>(f.id(), "ints", {2, 4}, ints.data());
      h5::Handle g = h5::create_group(f.id(), "grp");
      f.commit();
    }
    h5::Handle in = h5::open_read(file.path());
    std::vector<double> out(64);
    const std::string& p = file.path();

    std::string msg = input_error([&] { h5::read_float_dataset<double>(in, "k", {2, 4}, out.data(), p); });
    EXPECT_TRUE(Contains(msg, p + ": missing dataset 'k'"));
    msg = input_error([&] { h5::read_float_rows<double>(in, "v", {1, 2, 4}, 0, 2, out.data(), p); });
    EXPECT_TRUE(Contains(msg, p + ": missing dataset 'v'"));
    msg = input_error([&] { h5::read_float_dataset<double>(in, "grp/x/y", {2, 4}, out.data(), p); });
    EXPECT_TRUE(Contains(msg, "'grp/x/y'"));
    msg = input_error([&] { h5::read_float_dataset<double>(in, "grp", {2, 4}, out.data(), p); });
    EXPECT_TRUE(Contains(msg, p + ": 'grp' is not a dataset"));

    msg = input_error([&] { h5::read_float_dataset<double>(in, "q", {4, 2}, out.data(), p); });
    EXPECT_TRUE(Contains(msg, p + ": dataset 'q' has shape [2][4], expected [4][2]"));
    msg = input_error([&] { h5::read_float_rows<double>(in, "q", {1, 2, 4}, 0, 2, out.data(), p); });
    EXPECT_TRUE(Contains(msg, p + ": dataset 'q' has shape [2][4], expected [1][2][4]"));

    msg = input_error([&] { h5::read_float_dataset<double>(in, "ints", {2, 4}, out.data(), p); });
    EXPECT_TRUE(Contains(msg, p + ": dataset 'ints' must be float32 or float64"));
    msg = input_error([&] {
      h5::read_float_rows<float>(in, "ints", {2, 4}, 0, 1, reinterpret_cast<float*>(out.data()), p);
    });
    EXPECT_TRUE(Contains(msg, p + ": dataset 'ints' must be float32 or float64"));
  }
}

// A gzip-compressed input whose chunk was damaged after writing (one byte flipped): bad input
// naming the file and the dataset, not an HDF5 library failure.
TEST(hdf5, DamagedCompressedChunkIsNamed) {
  TempPath file("damaged.h5");
  const std::vector<std::int64_t> shape{1, 1, 256, 8};
  const std::vector<float> q = to_float(ramp(256 * 8, 1e-3, -1.0));
  haddr_t chunk_at = 0;
  hsize_t chunk_bytes = 0;
  {
    h5::Handle f(H5Fcreate(file.path().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    const hsize_t dims[4] = {1, 1, 256, 8};
    h5::Handle space(H5Screate_simple(4, dims, nullptr), H5Sclose);
    h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    ASSERT_GE(H5Pset_chunk(dcpl, 4, dims), 0);
    ASSERT_GE(H5Pset_deflate(dcpl, 6), 0);
    h5::Handle ds(H5Dcreate2(f, "q", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose);
    ASSERT_GE(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, q.data()), 0);
    H5Dflush(ds);
    const hsize_t origin[4] = {0, 0, 0, 0};
    unsigned mask = 0;
    ASSERT_GE(H5Dget_chunk_info_by_coord(ds, origin, &mask, &chunk_at, &chunk_bytes), 0);
  }
  ASSERT_GT(chunk_bytes, 16u);
  {
    std::fstream raw(file.path(), std::ios::in | std::ios::out | std::ios::binary);
    raw.seekg(std::streamoff(chunk_at + chunk_bytes / 2));
    char byte = 0;
    raw.read(&byte, 1);
    byte = char(byte ^ 0x5a);
    raw.seekp(std::streamoff(chunk_at + chunk_bytes / 2));
    raw.write(&byte, 1);
  }
  h5::Handle in = h5::open_read(file.path());
  std::vector<float> out(q.size());
  const std::string& p = file.path();
  EXPECT_TRUE(Contains(input_error([&] { h5::read_float_rows<float>(in, "q", shape, 0, 1, out.data(), p); }),
                       p + ": cannot read dataset 'q'"));
  EXPECT_TRUE(Contains(input_error([&] { h5::read_float_dataset<float>(in, "q", shape, out.data(), p); }),
                       p + ": cannot read dataset 'q'"));
}

// String attributes as h5py writes them (variable length, UTF-8 or ASCII) read like fixed ones.
TEST(hdf5, VariableLengthStringAttributesAreRead) {
  TempPath file("vlen.h5");
  {
    h5::Handle f(H5Fcreate(file.path().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    for (const auto& [name, cset] : {std::pair{"utf8", H5T_CSET_UTF8}, std::pair{"ascii", H5T_CSET_ASCII}}) {
      h5::Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(type, H5T_VARIABLE);
      H5Tset_cset(type, cset);
      h5::Handle space(H5Screate(H5S_SCALAR), H5Sclose);
      h5::Handle attr(H5Acreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
      const char* value = "fmattn-checkpoint/1";
      ASSERT_GE(H5Awrite(attr, type, &value), 0);
    }
  }
  h5::Handle in = h5::open_read(file.path());
  EXPECT_EQ(h5::read_attr_string(in, "utf8", file.path()), "fmattn-checkpoint/1");
  EXPECT_EQ(h5::read_attr_string(in, "ascii", file.path()), "fmattn-checkpoint/1");
}

TEST(hdf5, NanAndInfAreRejectedWithTheirPosition) {
  TempPath file("nonfinite.h5");
  const std::vector<std::int64_t> shape{1, 2, 4, 3};  // 2 rows of 12
  std::vector<float> with_nan(24, 0.5f);
  with_nan[12 + 2 * 3 + 1] = std::numeric_limits<float>::quiet_NaN();  // [0][1][2][1]
  std::vector<double> with_inf(24, 0.25);
  with_inf[5] = -std::numeric_limits<double>::infinity();  // [0][0][1][2]
  {
    h5::NewFile f(file.path());
    h5::write_dataset<float>(f.id(), "q", shape, with_nan.data());
    h5::write_dataset<double>(f.id(), "k", shape, with_inf.data());
    f.commit();
  }
  h5::Handle in = h5::open_read(file.path());
  const std::string& p = file.path();
  std::vector<float> fbuf(24);
  std::vector<double> dbuf(24);

  std::string msg = input_error([&] { h5::read_float_dataset<float>(in, "q", shape, fbuf.data(), p); });
  EXPECT_TRUE(Contains(msg, p + ": dataset 'q' holds NaN at [0][1][2][1]"));
  // Read by rows from row 1: the position is still the file's, not the buffer's.
  msg = input_error([&] { h5::read_float_rows<float>(in, "q", shape, 1, 2, fbuf.data(), p); });
  EXPECT_TRUE(Contains(msg, p + ": dataset 'q' holds NaN at [0][1][2][1]"));
  // Row 0 alone is clean.
  h5::read_float_rows<float>(in, "q", shape, 0, 1, fbuf.data(), p);

  msg = input_error([&] { h5::read_float_dataset<double>(in, "k", shape, dbuf.data(), p); });
  EXPECT_TRUE(Contains(msg, p + ": dataset 'k' holds Inf at [0][0][1][2]"));
  msg = input_error([&] { h5::read_float_rows<double>(in, "k", shape, 0, 2, dbuf.data(), p); });
  EXPECT_TRUE(Contains(msg, p + ": dataset 'k' holds Inf at [0][0][1][2]"));
}

// Learned-weight checkpoints.
class Weights : public ::testing::Test {
 protected:
  // n = 200 pads to N = 256 = 16 blocks of 16: L = 3 levels, cells of 16, 32, 64.
  const fmattn::Geometry g = fmattn::make_geometry(200, 16, 4, fmattn::Variant::causal);
  const int d = 3;

  // Not the average operator, so that a reader that skipped a dataset would be caught.
  fmattn::DownsamplingWeights distinct() const {
    fmattn::DownsamplingWeights w = fmattn::DownsamplingWeights::average(g, d);
    w.k_weight = ramp(w.k_weight.size(), 1e-3, 0.5);
    w.v_weight = ramp(w.v_weight.size(), -2e-3, 0.25);
    w.k_bias = ramp(w.k_bias.size(), 0.01, -0.1);
    w.v_bias = ramp(w.v_bias.size(), 0.02, 0.3);
    return w;
  }

  void write(const std::string& path, const fmattn::DownsamplingWeights& w) const {
    fmattn::save_weights(path, w, "run:\n  name: weights-test\n");
  }
};
using hdf5_weights = Weights;

TEST_F(hdf5_weights, RoundTrip) {
  ASSERT_EQ(g.L, 3);
  ASSERT_EQ(g.N, 256);
  TempPath file("weights.h5");
  const fmattn::DownsamplingWeights w = distinct();
  write(file.path(), w);
  const fmattn::DownsamplingWeights r = fmattn::load_weights(file.path(), g, d);
  {
    h5::Handle f = h5::open_read(file.path());
    EXPECT_EQ(h5::read_attr_string(f, "schema", file.path()), "fmattn-weights/1");
    EXPECT_EQ(h5::read_attr_int(f, "mpi_ranks", file.path()), 1);
  }
  EXPECT_EQ(r.head_dim, d);
  EXPECT_EQ(r.geometry.N, g.N);
  EXPECT_EQ(r.geometry.m, g.m);
  EXPECT_EQ(r.geometry.p, g.p);
  EXPECT_EQ(r.geometry.L, g.L);
  EXPECT_EQ(r.k_weight, w.k_weight);
  EXPECT_EQ(r.v_weight, w.v_weight);
  EXPECT_EQ(r.k_bias, w.k_bias);
  EXPECT_EQ(r.v_bias, w.v_bias);

  // The documented layout, by name.
  h5::Handle in = h5::open_read(file.path());
  for (const char* which : {"k", "v"})
    for (int l = 1; l <= g.L; ++l) {
      char level[24];
      std::snprintf(level, sizeof level, "level_%02d", l);
      const std::string grp = std::string("downsampling/") + which + "/" + level;
      EXPECT_EQ(h5::dataset_info(in, grp + "/weight", file.path()).shape,
                (std::vector<std::int64_t>{g.p, g.cell_size(l), d}));
      EXPECT_EQ(h5::dataset_info(in, grp + "/bias", file.path()).shape, (std::vector<std::int64_t>{g.p, d}));
    }
  EXPECT_EQ(h5::read_attr_int(in, "block_size", file.path()), 16);
  EXPECT_EQ(h5::read_attr_int(in, "rank", file.path()), 4);
  EXPECT_EQ(h5::read_attr_int(in, "head_dim", file.path()), 3);
  EXPECT_EQ(h5::read_attr_int(in, "length", file.path()), 256);
  {  // the average operator averages each sub-segment
    const fmattn::DownsamplingWeights w = fmattn::DownsamplingWeights::average(g, d);
    for (int l = 1; l <= g.L; ++l) {
      const std::int64_t wl = g.cell_size(l);
      const double* W = w.k_weight.data() + g.weight_offset(l, d);
      for (int r = 0; r < g.p; ++r) {
        double sum = 0;
        for (std::int64_t t = 0; t < wl; ++t) sum += W[(r * wl + t) * d];
        EXPECT_DOUBLE_EQ(sum, 1.0) << "level " << l << " slot " << r;
      }
    }
  }
}

TEST_F(hdf5_weights, MismatchesAndMissingPiecesAreNamed) {
  TempPath file("weights.h5");
  write(file.path(), distinct());
  const std::string& p = file.path();
  auto load = [&](const fmattn::Geometry& other, int hd) {
    return input_error([&] { fmattn::load_weights(p, other, hd); });
  };
  using fmattn::make_geometry;
  using fmattn::Variant;
  EXPECT_TRUE(
      Contains(load(make_geometry(200, 32, 4, Variant::causal), d), p + ": weights were made for block_size = 16"));
  EXPECT_TRUE(Contains(load(make_geometry(200, 16, 8, Variant::causal), d), p + ": weights were made for rank = 4"));
  EXPECT_TRUE(Contains(load(g, 4), p + ": weights were made for head_dim = 3, the deck needs 4"));
  EXPECT_TRUE(Contains(load(make_geometry(1000, 16, 4, Variant::causal), d), p + ": weights were made for length"));
  // Any n that pads to the same N is fine.
  fmattn::load_weights(p, make_geometry(256, 16, 4, Variant::causal), d);
  fmattn::load_weights(p, make_geometry(129, 16, 4, Variant::causal), d);

  const std::string missing = unique_name("none.h5");
  EXPECT_TRUE(Contains(input_error([&] { fmattn::load_weights(missing, g, d); }), missing + ": no such file"));
  {  // another kind of fmattn file with the same geometry attributes
    TempPath other("output.h5");
    {
      h5::NewFile f(other.path());
      h5::write_attr(f.id(), "schema", std::string("fmattn-output/1"));
      fmattn::write_weights(f.id(), distinct());
      f.commit();
    }
    EXPECT_TRUE(Contains(input_error([&] { fmattn::load_weights(other.path(), g, d); }),
                         other.path() + ": not a weights file (schema 'fmattn-output/1'"));
  }
  {  // missing attributes and datasets are named
    TempPath file("partial.h5");
    {
      // The geometry attributes only.
      h5::NewFile f(file.path());
      h5::write_attr(f.id(), "block_size", std::int64_t(16));
      h5::write_attr(f.id(), "rank", std::int64_t(4));
      h5::write_attr(f.id(), "length", std::int64_t(256));
      f.commit();
    }
    std::string msg = input_error([&] { fmattn::load_weights(file.path(), g, d); });
    EXPECT_TRUE(Contains(msg, file.path() + ": missing attribute 'head_dim'"));
    TempPath nodata("nodata.h5");
    {
      h5::NewFile f(nodata.path());
      h5::write_attr(f.id(), "block_size", std::int64_t(16));
      h5::write_attr(f.id(), "rank", std::int64_t(4));
      h5::write_attr(f.id(), "head_dim", std::int64_t(3));
      h5::write_attr(f.id(), "length", std::int64_t(256));
      f.commit();
    }
    msg = input_error([&] { fmattn::load_weights(nodata.path(), g, d); });
    EXPECT_TRUE(Contains(msg, nodata.path() + ": missing dataset 'downsampling/k/level_01/weight'"));
  }
}

// make_inputs reads q, k, v rows [first, last) from the deck's HDF5 file.
TEST(hdf5, MakeInputsReadsTheFileAndRejectsBadOnes) {
  TempPath file("qkv.h5");
  fmattn::Deck deck;
  deck.problem.batch = 2;
  deck.problem.heads = 3;
  deck.problem.length = 5;
  deck.problem.head_dim = 4;
  deck.input.source = fmattn::Source::hdf5;
  deck.input.file = file.path();
  const std::vector<std::int64_t> shape{2, 3, 5, 4};
  const std::int64_t row = 5 * 4;
  const std::vector<double> q = ramp(6 * row, 0.01, 1), k = ramp(6 * row, -0.02, 2), v = ramp(6 * row, 0.03, -3);
  {
    h5::NewFile f(file.path());
    h5::write_dataset<double>(f.id(), "q", shape, q.data());
    h5::write_dataset<double>(f.id(), "k", shape, k.data());
    h5::write_dataset<float>(f.id(), "v", shape, to_float(v).data());  // types may differ per dataset
    f.commit();
  }
  auto host = [](const auto& view) { return Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), view); };

  const auto all = fmattn::make_inputs<double>(deck, 0, 6);
  ASSERT_EQ(all.q.extent(0), 6u);
  ASSERT_EQ(all.q.extent(1), 5u);
  ASSERT_EQ(all.q.extent(2), 4u);
  const auto hq = host(all.q), hk = host(all.k), hv = host(all.v);
  for (std::int64_t r = 0; r < 6; ++r)
    for (std::int64_t t = 0; t < 5; ++t)
      for (std::int64_t c = 0; c < 4; ++c) {
        const std::size_t i = std::size_t((r * 5 + t) * 4 + c);
        ASSERT_EQ(hq(r, t, c), q[i]);
        ASSERT_EQ(hk(r, t, c), k[i]);
        ASSERT_EQ(hv(r, t, c), double(float(v[i])));
      }

  // A rank's share: rows 2..4 (crossing the batch boundary) in float32.
  const auto part = fmattn::make_inputs<float>(deck, 2, 5);
  ASSERT_EQ(part.q.extent(0), 3u);
  const auto pq = host(part.q), pv = host(part.v);
  for (std::int64_t r = 0; r < 3; ++r)
    for (std::int64_t t = 0; t < 5; ++t)
      for (std::int64_t c = 0; c < 4; ++c) {
        const std::size_t i = std::size_t(((r + 2) * 5 + t) * 4 + c);
        ASSERT_EQ(pq(r, t, c), float(q[i]));
        ASSERT_EQ(pv(r, t, c), float(v[i]));
      }
  {  // bad files are rejected
    fmattn::Deck deck;
    deck.problem.batch = 1;
    deck.problem.heads = 2;
    deck.problem.length = 3;
    deck.problem.head_dim = 2;
    deck.input.source = fmattn::Source::hdf5;
    const std::vector<double> x = ramp(12, 0.1);

    deck.input.file = unique_name("missing.h5");
    EXPECT_TRUE(Contains(input_error([&] { fmattn::make_inputs<float>(deck, 0, 2); }), deck.input.file));

    TempPath no_v("no_v.h5");
    {
      h5::NewFile f(no_v.path());
      h5::write_dataset<double>(f.id(), "q", {1, 2, 3, 2}, x.data());
      h5::write_dataset<double>(f.id(), "k", {1, 2, 3, 2}, x.data());
      f.commit();
    }
    deck.input.file = no_v.path();
    EXPECT_TRUE(
        Contains(input_error([&] { fmattn::make_inputs<float>(deck, 0, 2); }), no_v.path() + ": missing dataset 'v'"));

    // The deck says length 3; a file made for length 2 is caught, naming the deck's shape.
    deck.problem.length = 2;
    TempPath shape("shape.h5");
    {
      h5::NewFile f(shape.path());
      for (const char* t : {"q", "k", "v"}) h5::write_dataset<double>(f.id(), t, {1, 2, 3, 2}, x.data());
      f.commit();
    }
    deck.input.file = shape.path();
    EXPECT_TRUE(Contains(input_error([&] { fmattn::make_inputs<double>(deck, 0, 2); }),
                         shape.path() + ": dataset 'q' has shape [1][2][3][2], expected [1][2][2][2]"));

    // Finite values too large for the sums of float32 attention (3e38 would make its output
    // NaN) are refused with their position; float64 takes them, and 2^56 is accepted.
    deck.problem.length = 3;
    TempPath huge("huge.h5");
    std::vector<float> big = to_float(x);
    big[7] = 3e38f;  // [0][1][0][1]
    {
      h5::NewFile f(huge.path());
      h5::write_dataset<double>(f.id(), "q", {1, 2, 3, 2}, x.data());
      h5::write_dataset<double>(f.id(), "k", {1, 2, 3, 2}, x.data());
      h5::write_dataset<float>(f.id(), "v", {1, 2, 3, 2}, big.data());
      f.commit();
    }
    deck.input.file = huge.path();
    EXPECT_TRUE(
        Contains(input_error([&] { fmattn::make_inputs<float>(deck, 0, 2); }),
                 huge.path() + ": dataset 'v' holds 3e+38 at [0][1][0][1]; |x| <= 7.21e+16 is accepted in float32"));
    EXPECT_EQ(
        Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), fmattn::make_inputs<double>(deck, 0, 2).v)(1, 0, 1),
        double(3e38f));
    EXPECT_EQ(fmattn::max_input_magnitude<float>(), 72057594037927936.0);
    EXPECT_EQ(fmattn::max_input_magnitude<double>(), std::ldexp(1.0, 504));
  }
}

// Raw C API readers, independent of the library's.
std::string attr_string(hid_t obj, const char* name) {
  h5::Handle attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  if (attr.get() < 0) return "<missing " + std::string(name) + ">";
  h5::Handle type(H5Aget_type(attr), H5Tclose);
  if (H5Tget_class(type) != H5T_STRING) return "<not a string>";
  std::string s(H5Tget_size(type), '\0');
  H5Aread(attr, type, s.data());
  return s.substr(0, s.find('\0'));
}

template <class T>
T attr_number(hid_t obj, const char* name, hid_t mem, H5T_class_t cls) {
  h5::Handle attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  EXPECT_GE(attr.get(), 0) << "missing attribute " << name;
  if (attr.get() < 0) return T(-1);
  h5::Handle type(H5Aget_type(attr), H5Tclose);
  EXPECT_EQ(H5Tget_class(type), cls) << "attribute " << name;
  T value{};
  H5Aread(attr, mem, &value);
  return value;
}

std::int64_t attr_int(hid_t obj, const char* name) {
  return attr_number<std::int64_t>(obj, name, H5T_NATIVE_INT64, H5T_INTEGER);
}
double attr_double(hid_t obj, const char* name) { return attr_number<double>(obj, name, H5T_NATIVE_DOUBLE, H5T_FLOAT); }

// Shape, type class and size of a dataset; an empty shape when it is missing.
struct RawInfo {
  std::vector<hsize_t> shape;
  H5T_class_t cls = H5T_NO_CLASS;
  std::size_t size = 0;
};
RawInfo raw_info(hid_t loc, const char* name) {
  RawInfo info;
  if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) return info;
  h5::Handle ds(H5Dopen2(loc, name, H5P_DEFAULT), H5Dclose);
  h5::Handle space(H5Dget_space(ds), H5Sclose);
  h5::Handle type(H5Dget_type(ds), H5Tclose);
  info.shape.resize(H5Sget_simple_extent_ndims(space));
  H5Sget_simple_extent_dims(space, info.shape.data(), nullptr);
  info.cls = H5Tget_class(type);
  info.size = H5Tget_size(type);
  return info;
}

template <class T>
std::vector<T> raw_read(hid_t loc, const char* name, hid_t mem, std::size_t count) {
  std::vector<T> v(count);
  h5::Handle ds(H5Dopen2(loc, name, H5P_DEFAULT), H5Dclose);
  EXPECT_GE(H5Dread(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), 0) << name;
  return v;
}

class Results : public ::testing::Test {
 protected:
  void SetUp() override {
    deck.run.name = "results-test";
    deck.problem.batch = 1;
    deck.problem.heads = 2;
    deck.problem.length = 10;
    deck.problem.head_dim = 3;
    deck.attention.block_size = 4;
    deck.attention.rank = 2;
    rec.deck = &deck;
    rec.geometry = fmattn::make_geometry(10, 4, 2, fmattn::Variant::causal);  // N = 16, L = 1
    rec.first = 0;
    rec.last = 2;
    rec.diag_first = 0;
    rec.diag_last = 2;
    rec.timings.add("input", 0.25);
    rec.timings.add("attention", 1.5);
    rec.threads = 3;
    rec.gflops = 12.5;
    rec.peak_rss = {123456789};
    rec.bytes_sent = {0};
    rec.samples.per_head = 3;
    rec.samples.index = {0, 4, 9, 1, 2, 8};
    rec.samples.rel_error = {1e-3, 2.5e-4};
    output = ramp(2 * 10 * 3, 0.125, -1);
  }
  fmattn::Deck deck;
  fmattn::RunRecord rec;
  std::vector<double> output;
  fmattn::Stopwatch started;
};
using hdf5_results = Results;

TEST_F(hdf5_results, LayoutAndProvenance) {
  TempPath file("results.h5");
  const std::vector<float> out = to_float(output);
  fmattn::write_results<float>(file.path(), rec, out.data(), MPI_COMM_SELF, started);
  EXPECT_TRUE(files_starting_with(file.path()) == std::vector<std::string>{file.path()}) << "temporary left behind";

  h5::Handle f(H5Fopen(file.path().c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  ASSERT_GE(f.get(), 0);
  EXPECT_EQ(attr_string(f, "schema"), "fmattn-output/1");
  EXPECT_EQ(attr_string(f, "fmattn_version"), fmattn::version_string);
  // Not compared with fmattn::git_commit: a reconfigure between building the library and this
  // test changes it.
  EXPECT_TRUE(std::regex_match(attr_string(f, "git_commit"), std::regex("[0-9a-f]{7,40}(-dirty)?|unknown")))
      << attr_string(f, "git_commit");
  EXPECT_TRUE(std::regex_match(attr_string(f, "created"),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d))")))
      << attr_string(f, "created");
  // The deck attribute is the resolved deck and parses back to the same deck.
  const std::string deck_yaml = attr_string(f, "deck");
  EXPECT_EQ(deck_yaml, fmattn::to_yaml(deck));
  EXPECT_EQ(fmattn::to_yaml(fmattn::parse_deck(deck_yaml, "deck attribute")), fmattn::to_yaml(deck));
  EXPECT_EQ(attr_string(f, "kokkos_backend"), Kokkos::DefaultExecutionSpace::name());
  EXPECT_EQ(attr_int(f, "mpi_ranks"), 1);

  const RawInfo o = raw_info(f, "output");
  EXPECT_EQ(o.shape, (std::vector<hsize_t>{1, 2, 10, 3}));
  EXPECT_EQ(o.cls, H5T_FLOAT);
  EXPECT_EQ(o.size, 4u) << "output is in the deck's dtype, float32";
  EXPECT_EQ(raw_read<float>(f, "output", H5T_NATIVE_FLOAT, out.size()), out);

  ASSERT_GT(H5Lexists(f, "diagnostics", H5P_DEFAULT), 0);
  h5::Handle diag(H5Gopen2(f, "diagnostics", H5P_DEFAULT), H5Gclose);
  const RawInfo si = raw_info(diag, "sample_index");
  EXPECT_EQ(si.shape, (std::vector<hsize_t>{1, 2, 3}));
  EXPECT_EQ(si.cls, H5T_INTEGER);
  EXPECT_EQ(raw_read<std::int64_t>(diag, "sample_index", H5T_NATIVE_INT64, 6), rec.samples.index);
  const RawInfo se = raw_info(diag, "sample_rel_error");
  EXPECT_EQ(se.shape, (std::vector<hsize_t>{1, 2}));
  EXPECT_EQ(se.cls, H5T_FLOAT);
  EXPECT_EQ(raw_read<double>(diag, "sample_rel_error", H5T_NATIVE_DOUBLE, 2), rec.samples.rel_error);
  EXPECT_EQ(attr_int(diag, "levels"), 1);
  EXPECT_EQ(attr_int(diag, "block_size"), 4);
  EXPECT_EQ(attr_int(diag, "rank"), 2);
  EXPECT_EQ(attr_int(diag, "padded_length"), 16);

  ASSERT_GT(H5Lexists(diag, "timings", H5P_DEFAULT), 0);
  h5::Handle times(H5Gopen2(diag, "timings", H5P_DEFAULT), H5Gclose);
  EXPECT_EQ(attr_double(times, "attention"), 1.5);
  EXPECT_EQ(attr_double(times, "input"), 0.25);
  // `total` is what the user waited, measured as the file is finished: it covers the write.
  EXPECT_GE(attr_double(times, "write"), 0.0);
  EXPECT_GE(attr_double(times, "total"), attr_double(times, "write"));
  EXPECT_EQ(attr_int(diag, "threads_per_rank"), 3);
  EXPECT_EQ(attr_double(diag, "gflops"), 12.5);
  EXPECT_EQ(raw_read<std::int64_t>(diag, "peak_rss_bytes", H5T_NATIVE_INT64, 1), rec.peak_rss);
  EXPECT_EQ(raw_read<std::int64_t>(diag, "bytes_sent", H5T_NATIVE_INT64, 1), rec.bytes_sent);
}

TEST_F(hdf5_results, Float64OutputNoOutputAndNoSamples) {
  deck.problem.dtype = fmattn::Dtype::float64;
  TempPath with("with.h5");
  fmattn::write_results<double>(with.path(), rec, output.data(), MPI_COMM_SELF, started);
  {
    h5::Handle f(H5Fopen(with.path().c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    const RawInfo o = raw_info(f, "output");
    EXPECT_EQ(o.cls, H5T_FLOAT);
    EXPECT_EQ(o.size, 8u);
    EXPECT_EQ(raw_read<double>(f, "output", H5T_NATIVE_DOUBLE, output.size()), output);
  }

  // write_output: false — diagnostics only.
  deck.output.write_output = false;
  TempPath without("without.h5");
  fmattn::write_results<double>(without.path(), rec, static_cast<const double*>(nullptr), MPI_COMM_SELF, started);
  h5::Handle f(H5Fopen(without.path().c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  ASSERT_GE(f.get(), 0);
  EXPECT_EQ(H5Lexists(f, "output", H5P_DEFAULT), 0);
  EXPECT_GT(H5Lexists(f, "diagnostics", H5P_DEFAULT), 0);
  EXPECT_EQ(attr_string(f, "schema"), "fmattn-output/1");
  {  // validation.sample_queries: 0
    // validation.sample_queries: 0 gives zero-sized sample datasets, still present by name.
    rec.samples.per_head = 0;
    rec.samples.index.clear();
    rec.samples.rel_error = {0.0, 0.0};
    TempPath file("nosamples.h5");
    const std::vector<float> out = to_float(output);
    fmattn::write_results<float>(file.path(), rec, out.data(), MPI_COMM_SELF, started);
    h5::Handle f(H5Fopen(file.path().c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    h5::Handle diag(H5Gopen2(f, "diagnostics", H5P_DEFAULT), H5Gclose);
    EXPECT_EQ(raw_info(diag, "sample_index").shape, (std::vector<hsize_t>{1, 2, 0}));
  }
}

}  // namespace
