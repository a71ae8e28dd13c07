#include <fmattn/io/output_file.hpp>

#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/io/paths.hpp>
#include <fmattn/io/provenance.hpp>
#include <fmattn/util/errors.hpp>

#include <unistd.h>

#include <filesystem>

namespace fmattn {

namespace {

void check_writable_here(const std::string& path, const std::string& key) {
  // Creates nothing: the writer makes the folders on the way when it writes.
  check_output_file(path, key);
}

}  // namespace

std::string failure_on_root(MPI_Comm comm, const std::function<void()>& work) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  std::string problem;
  if (rank == 0) {
    try {
      work();
    } catch (const std::exception& e) {
      problem = e.what();
    }
  }
  int len = int(problem.size());
  MPI_Bcast(&len, 1, MPI_INT, 0, comm);
  problem.resize(len);
  MPI_Bcast(problem.data(), len, MPI_CHAR, 0, comm);
  return problem;
}

void check_writable(const std::string& path, const std::string& key, MPI_Comm comm) {
  const std::string problem = failure_on_root(comm, [&] { check_writable_here(path, key); });
  if (!problem.empty()) throw InputError(problem);
}

template <class Scalar>
void write_results(const std::string& path, const RunRecord& rec, const Scalar* output, MPI_Comm comm,
                   const Stopwatch& run_started) {
  const Stopwatch writing;
  int ranks = 1, rank = 0;
  MPI_Comm_size(comm, &ranks);
  MPI_Comm_rank(comm, &rank);
  const Deck& d = *rec.deck;
  const std::int64_t B = d.problem.batch, H = d.problem.heads, n = d.problem.length, hd = d.problem.head_dim;
  const bool collective = ranks > 1;

  h5::NewFile file(path, comm);
  write_provenance(file.id(), "fmattn-output/1", to_yaml(d), ranks);
  if (output) h5::write_rows(file.id(), "output", {B, H, n, hd}, rec.first, rec.last, output, collective, rec.tokens);

  {
    h5::Handle diag = h5::create_group(file.id(), "diagnostics");
    const std::int64_t S = rec.samples.per_head;
    h5::write_rows(diag, "sample_index", {B, H, S}, rec.diag_first, rec.diag_last, rec.samples.index.data(),
                   collective);
    h5::write_rows(diag, "sample_rel_error", {B, H}, rec.diag_first, rec.diag_last, rec.samples.rel_error.data(),
                   collective);
    const Geometry& g = rec.geometry;
    h5::write_attr(diag, "levels", std::int64_t(d.attention.method == Method::fma ? g.L : 0));
    h5::write_attr(diag, "block_size", std::int64_t(g.m));
    h5::write_attr(diag, "rank", std::int64_t(g.p));
    h5::write_attr(diag, "padded_length", std::int64_t(g.N));
    h5::write_attr(diag, "length", std::int64_t(g.n));
    h5::write_attr(diag, "threads_per_rank", std::int64_t(rec.threads));
    h5::write_attr(diag, "gflops", rec.gflops);
    h5::write_dataset(diag, "peak_rss_bytes", {std::int64_t(ranks)}, rec.peak_rss.data(), rank == 0);
    h5::write_dataset(diag, "bytes_sent", {std::int64_t(ranks)}, rec.bytes_sent.data(), rank == 0);
    h5::Handle times = h5::create_group(diag, "timings");
    for (const auto& [name, seconds] : rec.timings.all()) h5::write_attr(times, name, seconds);
    double spent[2] = {writing.seconds(), run_started.seconds()};
    MPI_Allreduce(MPI_IN_PLACE, spent, 2, MPI_DOUBLE, MPI_MAX, comm);
    h5::write_attr(times, "write", spent[0]);
    h5::write_attr(times, "total", spent[1]);
  }
  file.commit();
}

template void write_results<float>(const std::string&, const RunRecord&, const float*, MPI_Comm, const Stopwatch&);
template void write_results<double>(const std::string&, const RunRecord&, const double*, MPI_Comm, const Stopwatch&);

}  // namespace fmattn
