// Data-parallel training: the step's windows shared by 1–4 ranks, gradients summed in rank
// order, gives the parameters of one rank (float64, 20 steps, relative 1e-12: the ranks sum
// their windows' gradients before the rank-order sum, a different rounding than one rank's
// running sum); more ranks than windows is an input error on every rank.
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

TEST(TrainMpi, MoreRanksThanWindowsIsAnInputError) {
  Files f;
  const auto deck = testing_train::deck(f.train, f.val, f.many, "float64", 2, {"train.batch=2"});
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
