// `fmattn fit` through fit_deck: the loss falls and the fitted weights lower the sampled error
// that `fmattn run` reports; 10 steps + restart + 10 steps equals 20 steps bit for bit; bad
// restarts are clear errors; an interrupted checkpoint write leaves the previous file intact.
#include <fmattn/app/fit.hpp>
#include <fmattn/app/run.hpp>
#include <fmattn/io/checkpoint.hpp>
#include <fmattn/io/deck.hpp>
#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/io/weights_file.hpp>
#include <fmattn/util/errors.hpp>
#include "fp_traps.hpp"
#include "temp_path.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace {

using ::testing::HasSubstr;
using testing_files::TempPath;

const fmattn::LogSink quiet = [](const std::string&) {};

// A small learned-downsampling problem with four coarse levels.
fmattn::Deck fit_deck_text(const std::string& checkpoint, const std::string& dtype = "float64",
                           const std::string& kind = "smooth") {
  return fmattn::parse_deck(
      "run: {name: fit, seed: 99}\n"
      "problem: {batch: 1, heads: 2, length: 1000, head_dim: 8, dtype: " +
          dtype +
          "}\n"
          "attention: {block_size: 16, rank: 2, downsampling: learned}\n"
          "input: {synthetic: {kind: " +
          kind +
          "}}\n"
          "validation: {sample_queries: 64}\n"
          "fit: {steps: 20, learning_rate: 0.01, sample_queries: 48, checkpoint_every: 5, "
          "checkpoint_file: '" +
          checkpoint + "'}\n",
      "test");
}

fmattn::Geometry geometry_of(const fmattn::Deck& d) {
  return fmattn::make_geometry(d.problem.length, int(d.attention.block_size), int(d.attention.rank),
                               d.attention.variant);
}

fmattn::FitState read(const fmattn::Deck& d, const std::string& path) {
  return fmattn::load_checkpoint(path, geometry_of(d), int(d.problem.head_dim));
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

void expect_same_state(const fmattn::FitState& a, const fmattn::FitState& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_TRUE(same_bits(a.loss, b.loss)) << "fit/loss";
  for (auto [x, y] :
       {std::pair{&a.weights, &b.weights}, std::pair{&a.moment1, &b.moment1}, std::pair{&a.moment2, &b.moment2}}) {
    EXPECT_TRUE(same_bits(x->k_weight, y->k_weight));
    EXPECT_TRUE(same_bits(x->k_bias, y->k_bias));
    EXPECT_TRUE(same_bits(x->v_weight, y->v_weight));
    EXPECT_TRUE(same_bits(x->v_bias, y->v_bias));
  }
}

TEST(Fit, LowersLossAndTheErrorOfRun) {
  for (const char* kind : {"smooth", "gaussian"}) {
    SCOPED_TRACE(kind);
    TempPath ck("fit.h5"), out("out.h5");
    fmattn::Deck deck = fit_deck_text(ck.path(), "float64", kind);
    deck.fit.steps = 60;
    const fmattn::FitSummary s = fmattn::fit_deck(deck, quiet);
    const fmattn::FitState state = read(deck, ck.path());
    ASSERT_EQ(state.step, 60);
    ASSERT_EQ(state.loss.size(), 60u);
    // Each step's loss is on fresh rows, so compare means over the first and last ten steps.
    // (On gaussian data the per-step loss is too noisy at this size for a 60-step trend; the
    // validation error, on one fixed set of rows, must fall for both kinds.)
    double early = 0, late = 0;
    for (int i = 0; i < 10; ++i) {
      early += state.loss[i];
      late += state.loss[50 + i];
    }
    if (std::string(kind) == "smooth") {
      EXPECT_LT(late, 0.8 * early);
    }
    EXPECT_LT(s.fitted_error, 0.95 * s.average_error);
    // `fmattn run` with the checkpoint as weights.file reports the fitted error (same rows).
    deck.weights.file = ck.path();
    deck.output.file = out.path();
    const fmattn::RunSummary run = fmattn::run_deck(deck, quiet);
    EXPECT_NEAR(run.mean_rel_error, s.fitted_error, 1e-12 * s.fitted_error);
    deck.attention.downsampling = fmattn::Downsampling::average;
    EXPECT_NEAR(fmattn::run_deck(deck, quiet).mean_rel_error, s.average_error, 1e-12 * s.average_error);
  }
}

TEST(Fit, RestartContinuesBitForBit) {
  for (const char* dtype : {"float32", "float64"}) {
    SCOPED_TRACE(dtype);
    TempPath straight("straight.h5"), first("first.h5"), second("second.h5");
    fmattn::Deck deck = fit_deck_text(straight.path(), dtype);
    fmattn::fit_deck(deck, quiet);  // 20 steps

    deck.fit.checkpoint_file = first.path();
    deck.fit.steps = 10;
    fmattn::fit_deck(deck, quiet);
    EXPECT_EQ(read(deck, first.path()).step, 10);

    deck.fit.steps = 20;
    deck.fit.restart_from = first.path();
    deck.fit.checkpoint_file = second.path();
    const fmattn::FitSummary s = fmattn::fit_deck(deck, quiet);
    EXPECT_EQ(s.first_step, 11);
    expect_same_state(read(deck, second.path()), read(deck, straight.path()));

    // A restart at the final step has nothing left to do and writes nothing.
    deck.fit.restart_from = second.path();
    deck.fit.checkpoint_file = first.path();
    EXPECT_GT(fmattn::fit_deck(deck, quiet).first_step, 20);
    EXPECT_EQ(read(deck, first.path()).step, 10);
  }
}

TEST(Fit, CheckpointsOnScheduleAndLoadsAsWeights) {
  TempPath ck("fit.h5");
  fmattn::Deck deck = fit_deck_text(ck.path());
  deck.fit.steps = 7;
  deck.fit.checkpoint_every = 3;
  deck.validation.sample_queries = 0;
  fmattn::fit_deck(deck, quiet);
  const fmattn::FitState s = read(deck, ck.path());
  EXPECT_EQ(s.step, 7);  // the last one, written at the end
  EXPECT_EQ(s.seed, 99u);
  const auto w = fmattn::load_weights(ck.path(), geometry_of(deck), 8);
  EXPECT_TRUE(same_bits(w.k_weight, s.weights.k_weight));
  // No temporary file is left next to it.
  const auto dir = std::filesystem::absolute(ck.path()).parent_path();
  for (const auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(ck.path() + ".tmp"), std::string::npos) << e.path();
}

std::string input_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const fmattn::InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

// Runs a fit of `steps` steps (no validation) into the checkpoint `path`; returns its deck.
fmattn::Deck fitted(const std::string& path, std::int64_t steps) {
  fmattn::Deck deck = fit_deck_text(path);
  deck.fit.steps = steps;
  deck.validation.sample_queries = 0;
  fmattn::fit_deck(deck, quiet);
  return deck;
}

TEST(Fit, BadRestartsAreClearErrors) {
  TempPath ck("fit.h5"), other("other.h5"), weights("weights.h5");
  fmattn::Deck deck = fitted(ck.path(), 3);
  deck.fit.checkpoint_file = other.path();
  deck.fit.restart_from = ck.path();

  fmattn::Deck d = deck;
  d.attention.block_size = 8;
  EXPECT_THAT(input_error([&] { fmattn::fit_deck(d, quiet); }), HasSubstr("block_size = 16, the deck needs 8"));
  d = deck;
  d.problem.length = 3000;
  EXPECT_THAT(input_error([&] { fmattn::fit_deck(d, quiet); }), HasSubstr("length (padded) = 1024"));
  d = deck;
  d.problem.head_dim = 4;
  EXPECT_THAT(input_error([&] { fmattn::fit_deck(d, quiet); }), HasSubstr("head_dim"));
  d = deck;
  d.run.seed = 5;
  EXPECT_THAT(input_error([&] { fmattn::fit_deck(d, quiet); }), HasSubstr("run.seed = 99, the deck has 5"));
  d = deck;
  d.fit.steps = 2;
  EXPECT_THAT(input_error([&] { fmattn::fit_deck(d, quiet); }), HasSubstr("fit.steps = 2 is below"));
  d = deck;
  d.fit.restart_from = "no-such-checkpoint.h5";
  EXPECT_THAT(input_error([&] { fmattn::fit_deck(d, quiet); }), HasSubstr("no-such-checkpoint.h5"));
  fmattn::save_weights(weights.path(), fmattn::DownsamplingWeights::average(geometry_of(deck), 8), "");
  d.fit.restart_from = weights.path();
  EXPECT_THAT(input_error([&] { fmattn::fit_deck(d, quiet); }), HasSubstr("not a fit checkpoint"));
  EXPECT_FALSE(std::filesystem::exists(other.path())) << "a failed restart must write nothing";
}

// Rewrites a root attribute or one element of a dataset of an existing file in place.
void poke_attr(const std::string& path, const char* name, std::int64_t value) {
  fmattn::h5::Handle f(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
  H5Adelete(f, name);
  fmattn::h5::write_attr(f, name, value);
}
void poke_element(const std::string& path, const char* dataset, std::size_t index, double value) {
  fmattn::h5::Handle f(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
  fmattn::h5::Handle ds(H5Dopen2(f, dataset, H5P_DEFAULT), H5Dclose);
  fmattn::h5::Handle space(H5Dget_space(ds), H5Sclose);
  std::vector<double> all(std::size_t(H5Sget_simple_extent_npoints(space)));
  H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, all.data());
  all.at(index) = value;
  H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, all.data());
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Checkpoints that load but cannot be continued: a `step` that disagrees with the loss history
// (here 2^40, which must not size an allocation) is bad input; a huge but finite moment makes
// the next step non-finite, which stops the fit without overwriting the checkpoint.
TEST(Fit, DamagedCheckpointsLoseNothing) {
  TempPath ck("fit.h5");
  fmattn::Deck deck = fitted(ck.path(), 3);
  deck.fit.restart_from = ck.path();  // continue in place, as jobs/fit.sbatch does
  deck.fit.steps = 6;
  {
    TempPath copy("copy.h5");
    std::filesystem::copy_file(ck.path(), copy.path());
    poke_attr(copy.path(), "step", std::int64_t(1) << 40);
    fmattn::Deck d = deck;
    d.fit.restart_from = copy.path();
    d.fit.steps = std::int64_t(1) << 41;
    EXPECT_THAT(input_error([&] { fmattn::fit_deck(d, quiet); }),
                HasSubstr("dataset 'fit/loss' has shape [3], expected one loss per step: [1099511627776]"));
    poke_attr(copy.path(), "step", 3);
    poke_element(copy.path(), "optimizer/moment2/k/level_01/bias", 0, -1.0);
    EXPECT_THAT(input_error([&] { fmattn::fit_deck(d, quiet); }), HasSubstr("moment2 holds a negative value"));
  }
  poke_element(ck.path(), "optimizer/moment1/v/level_02/weight", 5, 1.6e302);
  const std::string before = file_bytes(ck.path());
  const testing_fp::NoTraps overflow_on_purpose;
  try {
    fmattn::fit_deck(deck, quiet);
    ADD_FAILURE() << "a non-finite step must stop the fit";
  } catch (const fmattn::InputError& e) {
    ADD_FAILURE() << "not an input error: " << e.what();
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("gave a non-finite loss or parameter"));
  }
  EXPECT_EQ(file_bytes(ck.path()), before) << "the last good checkpoint must stay as it was";
}

TEST(Fit, DecksWithNothingToFitAreClearErrors) {
  TempPath ck("fit.h5");
  const fmattn::Deck deck = fit_deck_text(ck.path());
  fmattn::Deck d = deck;
  d.attention.downsampling = fmattn::Downsampling::average;
  EXPECT_THAT(input_error([&] { fmattn::fit_deck(d, quiet); }), HasSubstr("attention.downsampling must be learned"));
  d = deck;
  d.attention.method = fmattn::Method::exact;
  EXPECT_THAT(input_error([&] { fmattn::fit_deck(d, quiet); }), HasSubstr("attention.method must be fma"));
  d = deck;
  d.attention.queries = fmattn::Queries::coarse;
  EXPECT_THAT(input_error([&] { fmattn::fit_deck(d, quiet); }), HasSubstr("linear variant"));
  d = deck;
  d.problem.length = 32;
  EXPECT_THAT(input_error([&] { fmattn::fit_deck(d, quiet); }), HasSubstr("no coarse levels"));
  d = deck;
  d.fit.checkpoint_file = std::filesystem::current_path().string();
  EXPECT_THAT(input_error([&] { fmattn::fit_deck(d, quiet); }), HasSubstr("fit.checkpoint_file"));
}

// A write that fails half-way (here: optimizer moments of the wrong size, after the weights
// are written) leaves the previous checkpoint untouched and no temporary file behind.
TEST(Fit, InterruptedCheckpointWriteKeepsThePreviousFile) {
  TempPath ck("fit.h5");
  const fmattn::Deck deck = fitted(ck.path(), 2);
  const fmattn::FitState before = read(deck, ck.path());
  fmattn::FitState broken = before;
  broken.step = 3;
  broken.loss.push_back(1.0);
  broken.moment2.v_bias.pop_back();
  EXPECT_THROW(fmattn::save_checkpoint(ck.path(), broken, fmattn::Adam{}, ""), std::exception);
  expect_same_state(read(deck, ck.path()), before);
  const auto dir = std::filesystem::absolute(ck.path()).parent_path();
  for (const auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().rfind(ck.path() + ".tmp", 0), std::string::npos) << e.path();
}

}  // namespace
