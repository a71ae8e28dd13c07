// Training on 1–4 ranks gives the parameters of one rank (float64, 20 steps, relative 1e-12):
// data parallel (the step's windows shared by the ranks, gradients summed in rank order: the
// ranks sum their windows' gradients before the rank-order sum, a different rounding than one
// rank's running sum) and sequence sharded (every window split over the ranks); a sharded
// run's checkpoints restart on other rank counts; what a decomposition cannot do is an input
// error on every rank.
#include <fmattn/app/train.hpp>
#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/io/model_file.hpp>
#include <fmattn/util/errors.hpp>
#include "train_fixture.hpp"

#include <gtest/gtest.h>
#include "mpi_world.hpp"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

namespace {

const fmattn::LogSink quiet = [](const std::string&) {};

using testing_mpi::world_rank;
using testing_mpi::world_size;

// A barrier that sleeps while it waits: the other ranks wait while rank 0 trains alone, and a
// spinning wait would take the cores it trains on.
void patient_barrier() {
  MPI_Request request;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  for (int done = 0; !done; ::usleep(1000)) MPI_Test(&request, &done, MPI_STATUS_IGNORE);
}

// A name every rank agrees on (rank 0's pid), in the working directory.
std::string shared_name(const std::string& stem) {
  long pid = long(::getpid());
  MPI_Bcast(&pid, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  return "train_mpi-" + std::to_string(pid) + "-np" + std::to_string(world_size()) + "-" + stem;
}

struct Files {
  std::string train = shared_name("train.bin"), val = shared_name("val.bin"), many = shared_name("many.h5"),
              one = shared_name("one.h5"), eval_many = shared_name("eval-many.h5"),
              eval_one = shared_name("eval-one.h5");
  Files() {
    if (world_rank() == 0) {
      testing_train::write_corpus(train, 20000);
      testing_train::write_corpus(val, 3000);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  ~Files() {
    patient_barrier();
    if (world_rank() == 0)
      for (const auto& f : {train, val, many, one, eval_many, eval_one}) std::filesystem::remove(f);
  }
};

TEST(TrainMpi, RanksEqualOneRank) {
  Files f;
  const auto deck_many = testing_train::deck(f.train, f.val, f.many, "float64", 20);
  const auto s = fmattn::train_deck(deck_many, quiet, MPI_COMM_WORLD);
  EXPECT_EQ(s.last_step, 20);
  if (world_rank() == 0) {
    const auto deck_one = testing_train::deck(f.train, f.val, f.one, "float64", 20);
    const auto one = fmattn::train_deck(deck_one, quiet, MPI_COMM_SELF);
    const auto a = fmattn::load_model(f.one), b = fmattn::load_model(f.many);
    double diff = 0, size = 0;
    for (std::size_t i = 0; i < a.params.size(); ++i) {
      diff = std::max(diff, std::abs(a.params[i] - b.params[i]));
      size = std::max(size, std::abs(a.params[i]));
    }
    EXPECT_LE(diff, 1e-12 * size) << world_size() << " ranks";
    for (std::size_t t = 0; t < a.history.loss.size(); ++t)
      EXPECT_NEAR(a.history.loss[t], b.history.loss[t], 1e-12 * a.history.loss[t]) << "step " << t + 1;
    EXPECT_NEAR(one.val_loss, s.val_loss, 1e-12 * one.val_loss);
    // The parameters moved away from their initial values: equal because trained alike.
    EXPECT_GT(std::abs(a.history.loss.front() - a.history.loss.back()), 0.1);
  }
}

// eval's windows shared by the ranks: the same per-window losses and loss by position, bit for
// bit, as one rank (each window is computed whole on one rank; the sums run in window order).
TEST(TrainMpi, EvalOnRanksEqualsOneRank) {
  Files f;
  if (world_rank() == 0)
    fmattn::train_deck(testing_train::deck(f.train, f.val, f.one, "float32", 4), quiet, MPI_COMM_SELF);
  MPI_Barrier(MPI_COMM_WORLD);
  auto eval = [&](const std::string& out, MPI_Comm comm) {
    return fmattn::eval_deck(
        testing_train::deck(f.train, f.val, f.one, "float32", 4,
                            {"eval.checkpoint=" + f.one, "eval.output=" + out, "train.eval_windows=5"}),
        quiet, comm);
  };
  const auto many = eval(f.eval_many, MPI_COMM_WORLD);
  if (world_rank() == 0) {
    const auto one = eval(f.eval_one, MPI_COMM_SELF);
    EXPECT_EQ(one.bits_per_byte, many.bits_per_byte);
    auto a = fmattn::h5::open_read(f.eval_one), b = fmattn::h5::open_read(f.eval_many);
    std::vector<double> pa(64), pb(64);
    fmattn::h5::read_float_dataset(a, "position_bits_per_byte", {64}, pa.data(), f.eval_one);
    fmattn::h5::read_float_dataset(b, "position_bits_per_byte", {64}, pb.data(), f.eval_many);
    EXPECT_EQ(pa, pb) << world_size() << " ranks";
  }
}

// Sequence sharding: every window split over the ranks (model.md §7) trains the model of one
// rank, which takes the windows whole (float64, 20 steps, relative 1e-12: the ranks' terms of
// the loss, of the replicated parameters' gradients and of the coarse cells' gradients are
// added in another order). Average and learned basis functions, count weighting on and off,
// local attention, a ragged context (the last block partial) and one whose last rank owns a
// partial block alone.
struct Sharded {
  const char* name;
  std::vector<std::string> set;
};

class SequenceSharded : public ::testing::TestWithParam<Sharded> {};

TEST_P(SequenceSharded, EqualsOneRank) {
  Files f;
  std::vector<std::string> set = GetParam().set;
  if (set.empty())  // the last rank owns one partial block, the others two blocks each
    set.push_back("model.context=" + std::to_string(8 * (2 * world_size() - 2) + 5));
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.end(), set.begin(), set.end());
    return more;
  };
  const auto s = fmattn::train_deck(
      testing_train::deck(f.train, f.val, f.many, "float64", 20, with({"parallel.decomposition=sequence"})), quiet,
      MPI_COMM_WORLD);
  EXPECT_EQ(s.last_step, 20);
  if (world_rank() != 0) return;
  const auto one =
      fmattn::train_deck(testing_train::deck(f.train, f.val, f.one, "float64", 20, with({})), quiet, MPI_COMM_SELF);
  const auto a = fmattn::load_model(f.one), b = fmattn::load_model(f.many);
  ASSERT_EQ(a.params.size(), b.params.size());
  double diff = 0, size = 0;
  for (std::size_t i = 0; i < a.params.size(); ++i) {
    diff = std::max({diff, std::abs(a.params[i] - b.params[i]), std::abs(a.moment2[i] - b.moment2[i]) * 1e3});
    size = std::max(size, std::abs(a.params[i]));
  }
  EXPECT_LE(diff, 1e-12 * size) << world_size() << " ranks";
  for (std::size_t t = 0; t < a.history.loss.size(); ++t) {
    EXPECT_NEAR(a.history.loss[t], b.history.loss[t], 1e-12 * a.history.loss[t]) << "step " << t + 1;
    EXPECT_NEAR(a.history.grad_norm[t], b.history.grad_norm[t], 1e-12 * a.history.grad_norm[t]) << "step " << t + 1;
  }
  EXPECT_NEAR(one.val_loss, s.val_loss, 1e-12 * one.val_loss);
  EXPECT_GT(std::abs(a.history.loss.front() - a.history.loss.back()), 0.1);
}

INSTANTIATE_TEST_SUITE_P(Models, SequenceSharded,
                         ::testing::Values(Sharded{"learned_ragged", {"model.context=61"}},
                                           Sharded{"average_ragged",
                                                   {"model.context=61", "attention.downsampling=average"}},
                                           Sharded{"average_without_counts",
                                                   {"model.context=64", "attention.downsampling=average",
                                                    "attention.count_weighting=false"}},
                                           Sharded{"local_ragged", {"model.context=61", "attention.method=local"}},
                                           Sharded{"learned_last_rank_partial_block", {}}),
                         [](const auto& info) { return std::string(info.param.name); });

// A sharded run's checkpoint holds the whole model, so a restart may take another number of
// ranks: 10 steps on all ranks, then 10 more on half of them (one rank alone at 2 or 3), equal
// 20 steps on all ranks to 1e-12, and bit for bit when restarted on all ranks again. A constant
// learning rate makes the schedule independent of train.steps (test_train's Restart).
TEST(TrainMpi, SequenceRestartOnOtherRankCounts) {
  Files f;
  const std::string whole = shared_name("whole.h5"), again = shared_name("again.h5");
  const std::vector<std::string> constant = {"train.warmup_steps=0", "train.min_learning_rate=0.003",
                                             "parallel.decomposition=sequence", "model.context=61"};
  auto deck = [&](const std::string& out, std::int64_t steps, const std::string& from) {
    auto set = constant;
    if (!from.empty()) set.push_back("train.restart_from=" + from);
    return testing_train::deck(f.train, f.val, out, "float64", steps, set);
  };
  fmattn::train_deck(deck(whole, 20, ""), quiet, MPI_COMM_WORLD);
  fmattn::train_deck(deck(f.one, 10, ""), quiet, MPI_COMM_WORLD);
  fmattn::train_deck(deck(again, 20, f.one), quiet, MPI_COMM_WORLD);
  MPI_Comm half;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank() < std::max(1, world_size() / 2) ? 0 : MPI_UNDEFINED, world_rank(), &half);
  if (half != MPI_COMM_NULL) {
    fmattn::train_deck(deck(f.many, 20, f.one), quiet, half);
    MPI_Comm_free(&half);
  }
  patient_barrier();
  if (world_rank() != 0) return;
  const auto a = fmattn::load_model(whole), b = fmattn::load_model(f.many), c = fmattn::load_model(again);
  EXPECT_EQ(b.step, 20);
  double diff = 0, size = 0;
  for (std::size_t i = 0; i < a.params.size(); ++i) {
    diff = std::max(diff, std::abs(a.params[i] - b.params[i]));
    size = std::max(size, std::abs(a.params[i]));
  }
  EXPECT_LE(diff, 1e-12 * size) << world_size() << " ranks, then " << std::max(1, world_size() / 2);
  EXPECT_EQ(a.params, c.params);
  EXPECT_EQ(a.moment1, c.moment1);
  EXPECT_EQ(a.moment2, c.moment2);
  EXPECT_EQ(a.history.loss, c.history.loss);
  EXPECT_NE(fmattn::load_model(f.one).params, a.params);
  for (const auto& file : {whole, again}) std::filesystem::remove(file);
}

// Sharded eval: the per-window losses and the loss by position of one rank (to rounding: a
// window's loss is the ranks' terms added).
TEST(TrainMpi, SequenceEvalEqualsOneRank) {
  Files f;
  if (world_rank() == 0)
    fmattn::train_deck(testing_train::deck(f.train, f.val, f.one, "float64", 4), quiet, MPI_COMM_SELF);
  MPI_Barrier(MPI_COMM_WORLD);
  auto eval = [&](const std::string& out, MPI_Comm comm, const std::string& decomposition) {
    return fmattn::eval_deck(testing_train::deck(f.train, f.val, f.one, "float64", 4,
                                                 {"eval.checkpoint=" + f.one, "eval.output=" + out,
                                                  "train.eval_windows=5", "parallel.decomposition=" + decomposition}),
                             quiet, comm);
  };
  const auto many = eval(f.eval_many, MPI_COMM_WORLD, "sequence");
  if (world_rank() != 0) return;
  const auto one = eval(f.eval_one, MPI_COMM_SELF, "data");
  EXPECT_NEAR(one.bits_per_byte, many.bits_per_byte, 1e-12 * one.bits_per_byte);
  auto a = fmattn::h5::open_read(f.eval_one), b = fmattn::h5::open_read(f.eval_many);
  std::vector<double> pa(64), pb(64), wa(5), wb(5);
  fmattn::h5::read_float_dataset(a, "position_bits_per_byte", {64}, pa.data(), f.eval_one);
  fmattn::h5::read_float_dataset(b, "position_bits_per_byte", {64}, pb.data(), f.eval_many);
  fmattn::h5::read_float_dataset(a, "window_bits_per_byte", {5}, wa.data(), f.eval_one);
  fmattn::h5::read_float_dataset(b, "window_bits_per_byte", {5}, wb.data(), f.eval_many);
  EXPECT_EQ(pa, pb) << "each position's loss is computed on one rank";
  for (int w = 0; w < 5; ++w) EXPECT_NEAR(wa[w], wb[w], 1e-12 * wa[w]);
}

// What sequence sharding cannot do is an input error naming the key, on every rank, before
// anything is written: more ranks than a window has blocks, attention without the hierarchy,
// the operator's decomposition, a checkpoint of another context. (Local attention shards: its
// near field needs the halo alone.)
TEST(TrainMpi, SequenceShardingInputErrors) {
  Files f;
  auto problem = [&](std::vector<std::string> set) {
    try {
      fmattn::train_deck(testing_train::deck(f.train, f.val, f.many, "float64", 2, set), quiet, MPI_COMM_WORLD);
    } catch (const fmattn::InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  if (world_size() > 1) {
    EXPECT_NE(problem({"parallel.decomposition=sequence", "model.context=" + std::to_string(8 * world_size() - 8)})
                  .find("ranks cannot share a window of model.context"),
              std::string::npos);
  }
  EXPECT_NE(problem({"parallel.decomposition=sequence", "attention.method=exact"})
                .find("parallel.decomposition: sequence sharding supports methods fma and local"),
            std::string::npos);
  // auto shards with more ranks than windows: exact attention cannot be.
  if (world_size() > 1) {
    EXPECT_NE(problem({"train.batch=1", "attention.method=exact"}).find("sequence sharding needs attention.method fma"),
              std::string::npos);
  }
  EXPECT_NE(problem({"parallel.decomposition=heads"}).find("heads applies to fmattn run"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(f.many));
  // A checkpoint of another context: refused before any rank reads its rows of P.
  fmattn::train_deck(testing_train::deck(f.train, f.val, f.one, "float64", 1, {"parallel.decomposition=sequence"}),
                     quiet, MPI_COMM_WORLD);
  const std::string other =
      problem({"parallel.decomposition=sequence", "model.context=61", "train.restart_from=" + f.one});
  EXPECT_NE(other.find("train.restart_from"), std::string::npos) << other;
  EXPECT_NE(other.find("model.context 64 (the deck has 61)"), std::string::npos) << other;
}

TEST(TrainMpi, MoreRanksThanWindowsIsAnInputError) {
  Files f;
  const auto deck =
      testing_train::deck(f.train, f.val, f.many, "float64", 2, {"train.batch=2", "parallel.decomposition=data"});
  if (world_size() <= 2) {
    EXPECT_NO_THROW(fmattn::train_deck(deck, quiet, MPI_COMM_WORLD));
    return;
  }
  try {
    fmattn::train_deck(deck, quiet, MPI_COMM_WORLD);
    ADD_FAILURE() << "no error";
  } catch (const fmattn::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("train.batch: 2 windows per step cannot be shared by"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(f.many));
}

}  // namespace
