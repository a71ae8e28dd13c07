// run_deck on several ranks (heads distributed across ranks, one collective HDF5 file) gives
// the same output file contents as one rank; too many ranks is a clear input error.
#include "attention_fixture.hpp"
#include "checkpoint.hpp"
#include "deck.hpp"
#include "fit.hpp"
#include "hdf5_io.hpp"
#include "run.hpp"

#include <mpi.h>
#include <unistd.h>

#include <filesystem>

namespace {

int world_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}
int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

std::vector<double> read_all(const std::string& path, const std::string& name, const std::vector<std::int64_t>& shape) {
  std::int64_t count = 1;
  for (auto x : shape) count *= x;
  std::vector<double> data(count);
  auto f = fmattn::h5::open_read(path);
  fmattn::h5::read_float_dataset(f, name, shape, data.data(), path);
  return data;
}

TEST(Mpi, HeadsShardedEqualsOneRank) {
  // Same tag on all ranks: rank 0's pid.
  long tag = long(::getpid());
  MPI_Bcast(&tag, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  const std::string all = "mpi-all-" + std::to_string(tag) + ".h5", one = "mpi-one-" + std::to_string(tag) + ".h5";
  // Both variants, and the linear variant (its coarse queries need no communication of their own).
  for (const char* variant : {"causal", "bidirectional", "linear"}) {
    const bool linear = std::string(variant) == "linear";
    const std::vector<std::string> common{"problem.batch=2",
                                          "problem.heads=3",
                                          "problem.length=1000",
                                          "problem.head_dim=8",
                                          "problem.dtype=float64",
                                          std::string("attention.variant=") + (linear ? "causal" : variant),
                                          std::string("attention.queries=") + (linear ? "coarse" : "fine"),
                                          "attention.block_size=16",
                                          "validation.sample_queries=8"};
    auto with = [&](const std::string& out) {
      auto s = common;
      s.push_back("output.file=" + out);
      return fmattn::parse_deck("", "test", s);
    };
    fmattn::run_deck(
        with(all), [](const std::string&) {}, MPI_COMM_WORLD);
    if (world_rank() == 0)
      fmattn::run_deck(
          with(one), [](const std::string&) {}, MPI_COMM_SELF);
    MPI_Barrier(MPI_COMM_WORLD);
    if (world_rank() == 0) {
      const std::vector<std::int64_t> shape{2, 3, 1000, 8};
      EXPECT_EQ(read_all(all, "output", shape), read_all(one, "output", shape)) << variant;
      EXPECT_EQ(read_all(all, "diagnostics/sample_rel_error", {2, 3}),
                read_all(one, "diagnostics/sample_rel_error", {2, 3}));
      auto f = fmattn::h5::open_read(all);
      EXPECT_EQ(fmattn::h5::read_attr_int(f, "mpi_ranks", all), world_size());
      std::filesystem::remove(all);
      std::filesystem::remove(one);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
}

// fmattn fit with the heads spread over the ranks: the gradients are summed over ranks, so the
// result equals one rank's up to the order of those sums (measured: 1e-16 relative after six
// steps).
TEST(Mpi, FitOverRanksMatchesOneRank) {
  long tag = long(::getpid());
  MPI_Bcast(&tag, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  const std::string all = "mpi-fit-all-" + std::to_string(tag) + ".h5",
                    one = "mpi-fit-one-" + std::to_string(tag) + ".h5";
  auto deck = [&](const std::string& checkpoint) {
    return fmattn::parse_deck("", "test",
                              {"problem.heads=4", "problem.length=700", "problem.head_dim=8", "problem.dtype=float64",
                               "attention.block_size=16", "attention.rank=2", "attention.downsampling=learned",
                               "input.synthetic.kind=smooth", "validation.sample_queries=16", "fit.steps=6",
                               "fit.learning_rate=0.01", "fit.sample_queries=32", "fit.checkpoint_file=" + checkpoint});
  };
  const auto quiet = [](const std::string&) {};
  const fmattn::FitSummary s = fmattn::fit_deck(deck(all), quiet, MPI_COMM_WORLD);
  if (world_rank() == 0) {
    const fmattn::FitSummary r = fmattn::fit_deck(deck(one), quiet, MPI_COMM_SELF);
    EXPECT_NEAR(s.first_loss, r.first_loss, 1e-12 * r.first_loss);
    EXPECT_NEAR(s.last_loss, r.last_loss, 1e-9 * r.last_loss);
    EXPECT_NEAR(s.fitted_error, r.fitted_error, 1e-9 * r.fitted_error);
    const auto g = fmattn::make_geometry(700, 16, 2, fmattn::Variant::causal);
    const auto a = fmattn::load_checkpoint(all, g, 8), b = fmattn::load_checkpoint(one, g, 8);
    EXPECT_EQ(a.step, 6);
    for (auto [x, y] :
         {std::pair{&a.weights.k_weight, &b.weights.k_weight}, std::pair{&a.weights.v_weight, &b.weights.v_weight},
          std::pair{&a.weights.k_bias, &b.weights.k_bias}, std::pair{&a.weights.v_bias, &b.weights.v_bias}}) {
      double num = 0, den = 0;
      for (std::size_t i = 0; i < x->size(); ++i) {
        num += ((*x)[i] - (*y)[i]) * ((*x)[i] - (*y)[i]);
        den += (*y)[i] * (*y)[i];
      }
      EXPECT_LT(std::sqrt(num / den), 1e-12);
    }
    std::filesystem::remove(all);
    std::filesystem::remove(one);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// One head per rank works; one head fewer than ranks is refused on every rank alike.
TEST(Mpi, MoreRanksThanHeadsIsAnInputError) {
  long tag = long(::getpid());
  MPI_Bcast(&tag, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  const std::string out = "mpi-heads-" + std::to_string(tag) + ".h5";
  auto deck = [&](int heads) {
    return fmattn::parse_deck("", "test",
                              {"problem.heads=" + std::to_string(heads), "problem.length=100", "output.file=" + out});
  };
  EXPECT_NO_THROW(fmattn::run_deck(
      deck(world_size()), [](const std::string&) {}, MPI_COMM_WORLD));
  if (world_size() > 1) {
    EXPECT_THROW(fmattn::run_deck(
                     deck(world_size() - 1), [](const std::string&) {}, MPI_COMM_WORLD),
                 fmattn::InputError);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::filesystem::remove(out);
}

TEST(Mpi, HeadRangesAreBalancedAndCover) {
  for (std::int64_t heads : {1, 5, 12, 97})
    for (int ranks = 1; ranks <= heads && ranks <= 16; ++ranks) {
      std::int64_t next = 0;
      for (int r = 0; r < ranks; ++r) {
        std::int64_t a, b;
        fmattn::head_range(heads, r, ranks, a, b);
        EXPECT_EQ(a, next);
        EXPECT_GE(b - a, heads / ranks);
        EXPECT_LE(b - a, heads / ranks + 1);
        next = b;
      }
      EXPECT_EQ(next, heads);
    }
}

}  // namespace
