// fmattn train and eval through train_deck / eval_deck: the loss falls on the fortunes corpus;
// 10 steps + restart + 10 steps = 20 steps bit for bit (float32 and float64; the SIGTERM path
// of a requeued job is cli/train_restart.sh); a diverging run stops with the last good
// checkpoint kept; bad decks, corpora and checkpoints are input errors naming the key or file,
// with nothing overwritten; eval reproduces the validation loss of training.
#include <fmattn/app/train.hpp>
#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/io/model_file.hpp>
#include <fmattn/util/errors.hpp>
#include "fp_traps.hpp"
#include "temp_path.hpp"
#include "train_fixture.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace {

using ::testing::HasSubstr;
using testing_files::TempPath;

const fmattn::LogSink quiet = [](const std::string&) {};

std::string contents(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

struct Data {
  TempPath train{"train.bin"}, val{"val.bin"};
  Data() {
    testing_train::write_corpus(train.path(), 20000);
    testing_train::write_corpus(val.path(), 3000);
  }
  fmattn::Deck deck(const std::string& checkpoint, const std::string& dtype = "float64", std::int64_t steps = 20,
                    const std::vector<std::string>& overrides = {}) const {
    return testing_train::deck(train.path(), val.path(), checkpoint, dtype, steps, overrides);
  }
};

template <class F>
std::string input_error(F&& f) {
  try {
    f();
  } catch (const fmattn::InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no InputError";
  return "";
}

class Restart : public ::testing::TestWithParam<const char*> {};

// A constant learning rate makes the schedule independent of train.steps, so a 10-step run
// restarted with steps: 20 takes the same 20 steps as one run.
TEST_P(Restart, TenPlusTenEqualsTwenty) {
  Data data;
  TempPath whole("whole.h5"), part("part.h5"), resumed("resumed.h5");
  const std::vector<std::string> constant = {"train.warmup_steps=0", "train.min_learning_rate=0.003"};
  fmattn::train_deck(data.deck(whole.path(), GetParam(), 20, constant), quiet);
  fmattn::train_deck(data.deck(part.path(), GetParam(), 10, constant), quiet);
  auto again = constant;
  again.push_back("train.restart_from=" + part.path());
  const auto s = fmattn::train_deck(data.deck(resumed.path(), GetParam(), 20, again), quiet);
  EXPECT_EQ(s.first_step, 11);
  EXPECT_EQ(s.last_step, 20);
  const auto a = fmattn::load_model(whole.path()), b = fmattn::load_model(resumed.path());
  EXPECT_EQ(b.step, 20);
  EXPECT_TRUE(same_bits(a.params, b.params));
  EXPECT_TRUE(same_bits(a.moment1, b.moment1));
  EXPECT_TRUE(same_bits(a.moment2, b.moment2));
  EXPECT_TRUE(same_bits(a.history.loss, b.history.loss));
  EXPECT_TRUE(same_bits(a.history.val_loss, b.history.val_loss));
  EXPECT_EQ(a.history.val_step, b.history.val_step);
  // The parameters moved: a restart that changed nothing would pass the comparison too.
  const auto start = fmattn::load_model(part.path());
  EXPECT_FALSE(same_bits(start.params, b.params));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Restart, ::testing::Values("float64", "float32"));

TEST(Train, CheckpointLayoutAndEvalReproducesValidation) {
  Data data;
  TempPath ckpt("model.h5"), out("eval.h5");
  const auto s = fmattn::train_deck(data.deck(ckpt.path(), "float32", 10), quiet);
  const auto m = fmattn::load_model(ckpt.path());
  EXPECT_EQ(m.step, 10);
  EXPECT_EQ(m.history.loss.size(), 10u);
  EXPECT_EQ(m.history.val_step, (std::vector<std::int64_t>{5, 10}));
  EXPECT_EQ(m.history.val_loss.back(), s.val_loss);
  auto file = fmattn::h5::open_read(ckpt.path());
  for (const char* name :
       {"params/embedding", "params/block_01/w2", "params/block_00/downsampling/k/level_02/weight",
        "params/final_norm/gain", "optimizer/moment1/block_00/wq", "optimizer/moment2/position", "train/loss",
        "train/val_loss", "train/val_step", "train/tokens_per_second", "train/rng_state"})
    EXPECT_TRUE(fmattn::h5::exists(file, name)) << name;
  EXPECT_EQ(fmattn::h5::dataset_info(file, "params/block_00/downsampling/v/level_02/weight", ckpt.path()).shape,
            (std::vector<std::int64_t>{2, 16, 8}));
  EXPECT_EQ(fmattn::h5::read_attr_string(file, "schema", ckpt.path()), "fmattn-model/1");

  auto d = data.deck(ckpt.path(), "float32", 10, {"eval.checkpoint=" + ckpt.path(), "eval.output=" + out.path()});
  const auto e = fmattn::eval_deck(d, quiet);
  EXPECT_EQ(e.step, 10);
  EXPECT_EQ(e.bits_per_byte, s.val_loss);
  auto ef = fmattn::h5::open_read(out.path());
  EXPECT_EQ(fmattn::h5::dataset_info(ef, "window_bits_per_byte", out.path()).shape, (std::vector<std::int64_t>{4}));
  // The loss by position: its mean over the positions is the mean over all tokens.
  std::vector<double> by_position(64);
  fmattn::h5::read_float_dataset(ef, "position_bits_per_byte", {64}, by_position.data(), out.path());
  double mean = 0;
  for (double x : by_position) mean += x / 64;
  EXPECT_NEAR(mean, e.bits_per_byte, 1e-12 * e.bits_per_byte);
  EXPECT_NE(by_position.front(), by_position.back());  // not one number repeated
}

// The fortunes corpus (made by the data_corpus_fortunes test, FMATTN_FORTUNES_DIR): in 40 steps
// the model goes from uniform (8 bits per byte) to well under 5.
TEST(Train, LossFallsOnFortunes) {
  const char* dir = std::getenv("FMATTN_FORTUNES_DIR");
  ASSERT_NE(dir, nullptr) << "FMATTN_FORTUNES_DIR is not set";
  const std::string train = std::string(dir) + "/fortunes-train.bin", val = std::string(dir) + "/fortunes-val.bin";
  ASSERT_TRUE(std::filesystem::exists(train)) << train << " (made by scripts/make-corpus.sh fortunes)";
  TempPath ckpt("fortunes.h5");
  auto d = testing_train::deck(train, val, ckpt.path(), "float32", 40,
                               {"model.context=128", "model.width=64", "train.batch=8", "train.eval_every=40",
                                "train.eval_windows=8", "train.checkpoint_every=40", "train.warmup_steps=5"});
  const auto s = fmattn::train_deck(d, quiet);
  EXPECT_GT(s.first_loss, 7.5);
  EXPECT_LT(s.last_loss, 5.0);
  EXPECT_LT(s.val_loss, 5.0);
}

TEST(Train, DivergenceStopsWithTheLastGoodCheckpoint) {
  Data data;
  TempPath ckpt("diverge.h5");
  // A learning rate of 1e36 moves every parameter by about 1e36 at step 1 (warm-up 2 steps):
  // step 2's float32 products overflow.
  auto d = data.deck(ckpt.path(), "float32", 4,
                     {"train.learning_rate=1e36", "train.warmup_steps=2", "train.checkpoint_every=1"});
  const testing_fp::NoTraps overflow_expected;
  try {
    fmattn::train_deck(d, quiet);
    FAIL() << "no error";
  } catch (const fmattn::InputError&) {
    FAIL() << "divergence is not bad input";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("non-finite"));
    EXPECT_THAT(e.what(), HasSubstr("keeps step 1"));
  }
  EXPECT_EQ(fmattn::load_model(ckpt.path()).step, 1);
}

TEST(Train, BadInputNamesTheKeyOrFileAndOverwritesNothing) {
  Data data;
  TempPath ckpt("keep.h5"), tiny("tiny.bin", "short");
  fmattn::train_deck(data.deck(ckpt.path(), "float64", 5), quiet);
  const std::string before = contents(ckpt.path());
  auto run = [&](const std::vector<std::string>& o) {
    return input_error([&] { fmattn::train_deck(data.deck(ckpt.path(), "float64", 10, o), quiet); });
  };
  EXPECT_THAT(run({"data.train=/nonexistent/train.bin"}),
              HasSubstr("data.train: cannot open '/nonexistent/train.bin'"));
  EXPECT_THAT(run({"data.val=" + tiny.path()}), HasSubstr("data.val: '" + tiny.path() + "' holds 5 bytes"));
  EXPECT_THAT(run({"attention.variant=bidirectional"}), HasSubstr("attention.variant"));
  EXPECT_THAT(run({"attention.queries=coarse"}), HasSubstr("attention.queries"));
  EXPECT_THAT(run({"train.restart_from=" + ckpt.path(), "model.width=32"}),
              HasSubstr("a checkpoint of another model: model.width 16 (the deck has 32)"));
  EXPECT_THAT(run({"train.restart_from=" + ckpt.path(), "attention.method=exact"}),
              HasSubstr("attention.method fma (the deck has exact)"));
  EXPECT_THAT(run({"train.restart_from=" + ckpt.path(), "model.dtype=float32"}), HasSubstr("model.dtype float64"));
  EXPECT_THAT(run({"train.restart_from=" + ckpt.path(), "run.seed=7"}), HasSubstr("run.seed"));
  EXPECT_THAT(run({"train.restart_from=" + ckpt.path(), "train.steps=3"}), HasSubstr("below the step"));
  EXPECT_THAT(run({"train.restart_from=" + tiny.path()}), HasSubstr(tiny.path()));
  EXPECT_EQ(contents(ckpt.path()), before);
  EXPECT_THAT(input_error([&] { fmattn::parse_deck("model: {width: 30, heads: 4}\n", "deck"); }),
              HasSubstr("model.heads: expected a divisor of model.width (30), got 4"));
  EXPECT_THAT(input_error([&] { fmattn::parse_deck("train: {batch: 0}\n", "deck"); }), HasSubstr("train.batch"));
  EXPECT_THAT(input_error([&] { fmattn::parse_deck("train: {beta2: 1.5}\n", "deck"); }), HasSubstr("train.beta2"));
  EXPECT_THAT(input_error([&] { fmattn::eval_deck(data.deck(ckpt.path()), quiet); }), HasSubstr("eval.checkpoint"));
}

}  // namespace
