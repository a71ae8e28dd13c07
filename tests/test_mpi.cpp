// run_deck on several ranks — heads distributed, or the sequence sharded — gives the output file
// of one rank (one collective HDF5 file); too many ranks for either is a clear input error; fit
// over ranks equals fit on one.
#include <fmattn/app/fit.hpp>
#include <fmattn/app/run.hpp>
#include <fmattn/core/weights.hpp>
#include <fmattn/io/checkpoint.hpp>
#include <fmattn/io/deck.hpp>
#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/io/weights_file.hpp>
#include <fmattn/parallel/shard_plan.hpp>
#include "attention_fixture.hpp"
#include "mpi_world.hpp"

#include <mpi.h>
#include <unistd.h>

#include <filesystem>

namespace {

using testing_mpi::world_rank;
using testing_mpi::world_size;

std::vector<double> read_all(const std::string& path, const std::string& name, const std::vector<std::int64_t>& shape) {
  std::int64_t count = 1;
  for (auto x : shape) count *= x;
  std::vector<double> data(count);
  auto f = fmattn::h5::open_read(path);
  fmattn::h5::read_float_dataset(f, name, shape, data.data(), path);
  return data;
}

// Compares run_deck on all ranks with run_deck on rank 0 alone for the deck `settings`:
// `output` bitwise equal when `bitwise`, else to 1e-12 relative; sampled errors to 1e-12.
void expect_same_as_one_rank(const std::vector<std::string>& settings, bool bitwise, const std::string& what) {
  // Same tag on all ranks: rank 0's pid.
  long tag = long(::getpid());
  MPI_Bcast(&tag, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  const std::string all = "mpi-all-" + std::to_string(tag) + ".h5", one = "mpi-one-" + std::to_string(tag) + ".h5";
  auto with = [&](const std::string& out) {
    auto s = settings;
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
    const auto a = read_all(all, "output", shape), b = read_all(one, "output", shape);
    if (bitwise) {
      EXPECT_EQ(a, b) << what;
    } else {
      double num = 0, den = 0;
      for (std::size_t i = 0; i < a.size(); ++i) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
      }
      EXPECT_LT(std::sqrt(num / den), 1e-12) << what;
    }
    const auto ea = read_all(all, "diagnostics/sample_rel_error", {2, 3}),
               eb = read_all(one, "diagnostics/sample_rel_error", {2, 3});
    for (std::size_t i = 0; i < ea.size(); ++i) EXPECT_NEAR(ea[i], eb[i], 1e-12 * eb[i]) << what;
    auto f = fmattn::h5::open_read(all);
    EXPECT_EQ(fmattn::h5::read_attr_int(f, "mpi_ranks", all), world_size());
    EXPECT_EQ(fmattn::h5::dataset_info(f, "diagnostics/sample_index", all).shape,
              fmattn::h5::dataset_info(fmattn::h5::open_read(one), "diagnostics/sample_index", one).shape);
    std::filesystem::remove(all);
    std::filesystem::remove(one);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

std::vector<std::string> small_problem(const std::string& variant, const std::string& more) {
  return {"problem.batch=2",
          "problem.heads=3",
          "problem.length=1000",
          "problem.head_dim=8",
          "problem.dtype=float64",
          "attention.variant=" + variant,
          "attention.block_size=16",
          "validation.sample_queries=8",
          more};
}

// Heads distributed over the ranks: every head is computed as on one rank.
TEST(Mpi, HeadsDistributedEqualsOneRank) {
  for (const char* variant : {"causal", "bidirectional"})
    expect_same_as_one_rank(small_problem(variant, "parallel.decomposition=heads"), true, variant);
  auto linear = small_problem("causal", "parallel.decomposition=heads");
  linear.push_back("attention.queries=coarse");
  expect_same_as_one_rank(linear, true, "linear");
}

// The sequence sharded over the ranks (the default for FMA): bitwise the one-rank output with
// average downsampling (smooth inputs: a rank generates its shard from an offset), to 1e-12 with
// learned weights from a file.
TEST(Mpi, SequenceShardedEqualsOneRank) {
  for (const char* variant : {"causal", "bidirectional"}) {
    auto deck = small_problem(variant, "input.synthetic.kind=smooth");
    expect_same_as_one_rank(deck, true, variant);
  }
  long tag = long(::getpid());
  MPI_Bcast(&tag, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  const std::string weights = "mpi-weights-" + std::to_string(tag) + ".h5";
  if (world_rank() == 0) {
    std::mt19937_64 rng(7);
    fmattn::DownsamplingWeights w;
    ref::Weights rw;
    testing_fma::random_weights(rng, fmattn::make_geometry(1000, 16, 4, fmattn::Variant::bidirectional), 8, w, rw);
    fmattn::save_weights(weights, w, "");
  }
  MPI_Barrier(MPI_COMM_WORLD);
  auto learned = small_problem("bidirectional", "parallel.decomposition=sequence");
  learned.push_back("attention.downsampling=learned");
  learned.push_back("weights.file=" + weights);
  expect_same_as_one_rank(learned, false, "learned");
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::filesystem::remove(weights);
}

// Validation off (what a production run does): both decompositions still write the whole file,
// with an empty sample_index, equal to one rank's.
TEST(Mpi, ValidationOffWritesTheOutput) {
  for (const char* decomposition : {"heads", "sequence"}) {
    auto deck = small_problem("causal", std::string("parallel.decomposition=") + decomposition);
    deck.push_back("validation.sample_queries=0");
    deck.push_back("input.synthetic.kind=smooth");
    expect_same_as_one_rank(deck, true, decomposition);
  }
}

// More ranks than fine blocks cannot shard a sequence: a clear error on every rank.
TEST(Mpi, MoreRanksThanBlocksIsAnInputError) {
  if (world_size() == 1) return;
  const auto deck = fmattn::parse_deck("", "test",
                                       {"problem.length=" + std::to_string(16 * (world_size() - 1)),
                                        "attention.block_size=16", "output.file=mpi-blocks.h5"});
  EXPECT_THROW(fmattn::run_deck(
                   deck, [](const std::string&) {}, MPI_COMM_WORLD),
               fmattn::InputError);
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

// Heads distributed: one head per rank works; one head fewer than ranks is refused on every
// rank alike.
TEST(Mpi, MoreRanksThanHeadsIsAnInputError) {
  long tag = long(::getpid());
  MPI_Bcast(&tag, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  const std::string out = "mpi-heads-" + std::to_string(tag) + ".h5";
  auto deck = [&](int heads) {
    return fmattn::parse_deck("", "test",
                              {"problem.heads=" + std::to_string(heads), "problem.length=100",
                               "parallel.decomposition=heads", "output.file=" + out});
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
}  // namespace
