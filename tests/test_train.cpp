// fmattn train and eval through train_deck / eval_deck: the loss falls on the fortunes corpus;
// 10 steps + restart + 10 steps = 20 steps bit for bit (float32 and float64; the SIGTERM path
// of a requeued job is cli/train_restart.sh); a diverging run stops with the last good
// checkpoint kept; bad decks, corpora and checkpoints are input errors naming the key or file,
// with nothing overwritten; eval reproduces the validation loss of training; a model without
// positions is saved as such and evaluated at another context.
#include <fmattn/app/lm_common.hpp>
#include <fmattn/app/train.hpp>
#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/io/model_file.hpp>
#include <fmattn/io/paths.hpp>
#include <fmattn/util/errors.hpp>
#include "fp_traps.hpp"
#include "temp_path.hpp"
#include "train_fixture.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace {

using ::testing::HasSubstr;
using ::testing::Not;
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

// train.micro_batch: the step's 4 windows one at a time, two at a time or all at once (auto)
// give the same model to float64 rounding (the tied embedding's and the basis functions'
// gradients change their order of summation, every other sum is the same), and a micro-batch
// too large for the node is refused naming the key.
TEST(Train, MicroBatchesChangeOnlyTheRounding) {
  Data data;
  TempPath all("all.h5"), one("one.h5"), two("two.h5");
  fmattn::train_deck(data.deck(all.path(), "float64", 10), quiet);
  fmattn::train_deck(data.deck(one.path(), "float64", 10, {"train.micro_batch=1"}), quiet);
  fmattn::train_deck(data.deck(two.path(), "float64", 10, {"train.micro_batch=2"}), quiet);
  const auto a = fmattn::load_model(all.path());
  for (const auto* other : {&one, &two}) {
    const auto b = fmattn::load_model(other->path());
    double diff = 0, size = 0;
    for (std::size_t i = 0; i < a.params.size(); ++i) {
      diff = std::max(diff, std::abs(a.params[i] - b.params[i]));
      size = std::max(size, std::abs(a.params[i]));
    }
    EXPECT_LE(diff, 1e-12 * size) << other->path();
    EXPECT_FALSE(same_bits(a.params, b.params)) << "the same bits: were the windows batched at all?";
  }
  auto huge = data.deck(all.path(), "float64", 10, {"train.micro_batch=4", "train.batch=4096", "model.context=4096"});
  const fmattn::ModelConfig c = fmattn::model_config(huge);
  const std::int64_t ask = std::int64_t(1) << 24;
  huge.train.micro_batch = ask;
  EXPECT_THAT(input_error([&] { fmattn::windows_at_once(huge, c, fmattn::Dtype::float64, ask); }),
              HasSubstr("train.micro_batch"));
  huge.train.micro_batch = 0;  // auto: within 4 GiB of activations
  EXPECT_LT(fmattn::windows_at_once(huge, c, fmattn::Dtype::float64, ask), 4096);
}

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

// "Nothing lost, nothing non-finite written, no hang": a diverging run saves nothing non-finite
// (validation loss, moments) and says truly what the checkpoint on disk holds.
TEST(Train, NonFiniteValidationOrMomentsAreNeverSaved) {
  Data data;
  const testing_fp::NoTraps overflow_expected;
  for (const char* rate : {"1e30", "1e4"}) {
    TempPath ckpt("nonfinite.h5");
    const auto d = data.deck(ckpt.path(), "float32", 6,
                             {std::string("train.learning_rate=") + rate, "train.clip_norm=1e300",
                              "train.warmup_steps=0", "train.checkpoint_every=1", "train.eval_every=1"});
    std::string message;
    try {
      fmattn::train_deck(d, quiet);
    } catch (const fmattn::InputError& e) {
      ADD_FAILURE() << "divergence is not bad input: " << e.what();
    } catch (const std::runtime_error& e) {
      message = e.what();
      EXPECT_THAT(message, HasSubstr("finite")) << rate;
    }
    if (!std::filesystem::exists(ckpt.path())) {
      EXPECT_THAT(message, HasSubstr(ckpt.path() + " was not written")) << rate;
      continue;
    }
    const fmattn::ModelState s = fmattn::load_model(ckpt.path());  // refuses non-finite moments
    for (double v : s.history.val_loss) EXPECT_TRUE(std::isfinite(v)) << rate;
    if (!message.empty()) {
      EXPECT_THAT(message, HasSubstr("keeps step " + std::to_string(s.step))) << rate;
    }
  }
}

TEST(Train, ADamagedModelIsNeitherEvaluatedNorSaidToBeSaved) {
  Data data;
  TempPath ckpt("good.h5"), bad("bad.h5"), out("eval.h5"), next("next.h5");
  fmattn::train_deck(data.deck(ckpt.path(), "float32", 2), quiet);
  fmattn::ModelState s = fmattn::load_model(ckpt.path());
  for (std::size_t i = 0; i < s.params.size(); ++i) s.params[i] = i % 2 ? 3e38 : -3e38;
  fmattn::save_model(bad.path(), s, "{}\n", 1);
  const testing_fp::NoTraps overflow_expected;
  try {
    fmattn::eval_deck(
        data.deck(ckpt.path(), "float32", 2, {"eval.checkpoint=" + bad.path(), "eval.output=" + out.path()}), quiet);
    ADD_FAILURE() << "eval of a damaged model succeeded";
  } catch (const fmattn::InputError& e) {
    ADD_FAILURE() << e.what();
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("non-finite loss on data.val"));
  }
  EXPECT_FALSE(std::filesystem::exists(out.path()));
  try {
    fmattn::train_deck(data.deck(next.path(), "float32", 4, {"train.restart_from=" + bad.path()}), quiet);
    ADD_FAILURE() << "training a damaged model succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), Not(HasSubstr("keeps step")));
    EXPECT_THAT(e.what(), HasSubstr(next.path() + " was not written"));
  }
  EXPECT_FALSE(std::filesystem::exists(next.path()));
}

void replace_attribute(const std::string& path, const char* name, hid_t type, hid_t space, const void* value) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  H5Adelete(f, name);
  const hid_t a = H5Acreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, type, value);
  H5Aclose(a);
  H5Fclose(f);
}

void remove_attribute(const std::string& path, const char* name) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  EXPECT_GE(H5Adelete(f, name), 0) << name;
  H5Fclose(f);
}

// positions: none — the checkpoint says so and holds no table P, and a restart under learned
// positions is refused naming model.positions; eval reproduces training's validation at the
// trained context, runs the model at a longer and a shorter model.context (and says so), and
// refuses a deck that says learned. A checkpoint from before the attribute existed has learned
// positions: the attribute removed, a learned checkpoint loads as before, and a positions-none
// one is read as learned (its missing table named).
TEST(Train, PositionsNoneCheckpointsAndEvalAtAnotherContext) {
  Data data;
  TempPath none("none.h5"), learned("learned.h5"), longer("longer.h5"), shorter("shorter.h5");
  const std::vector<std::string> no_positions = {"model.positions=none"};
  const auto trained = fmattn::train_deck(data.deck(none.path(), "float64", 5, no_positions), quiet);
  EXPECT_EQ(fmattn::load_model(none.path()).config.positions, fmattn::Positions::none);
  {
    auto file = fmattn::h5::open_read(none.path());
    EXPECT_EQ(fmattn::h5::read_attr_string(file, "positions", none.path()), "none");
    EXPECT_TRUE(fmattn::h5::exists(file, "params/embedding"));
    EXPECT_FALSE(fmattn::h5::exists(file, "params/position"));
    EXPECT_FALSE(fmattn::h5::exists(file, "optimizer/moment1/position"));
  }
  EXPECT_THAT(input_error([&] {
                fmattn::train_deck(data.deck(learned.path(), "float64", 6, {"train.restart_from=" + none.path()}),
                                   quiet);
              }),
              HasSubstr("a checkpoint of another model: model.positions none (the deck has learned)"));

  auto eval = [&](std::vector<std::string> overrides, std::vector<std::string>* log = nullptr) {
    overrides.push_back("eval.checkpoint=" + none.path());
    const fmattn::LogSink sink = [&](const std::string& line) {
      if (log) log->push_back(line);
    };
    return fmattn::eval_deck(data.deck(none.path(), "float64", 5, overrides), sink);
  };
  EXPECT_EQ(eval(no_positions).bits_per_byte, trained.val_loss);
  for (const auto& [context, out] : {std::pair{128, &longer}, std::pair{32, &shorter}}) {
    std::vector<std::string> log;
    const auto e = eval({"model.context=" + std::to_string(context), "eval.output=" + out->path()}, &log);
    EXPECT_EQ(e.context, context);
    EXPECT_TRUE(std::isfinite(e.bits_per_byte));
    EXPECT_NE(e.bits_per_byte, trained.val_loss);
    EXPECT_THAT(log, ::testing::Contains("eval       at context " + std::to_string(context) +
                                         " (model.context; trained at 64)"));
    auto file = fmattn::h5::open_read(out->path());
    EXPECT_EQ(fmattn::h5::read_attr_int(file, "context", out->path()), context);
    EXPECT_EQ(fmattn::h5::read_attr_string(file, "positions", out->path()), "none");
    EXPECT_EQ(fmattn::h5::dataset_info(file, "position_bits_per_byte", out->path()).shape,
              (std::vector<std::int64_t>{context}));
  }
  EXPECT_THAT(input_error([&] { eval({"model.positions=learned"}); }),
              HasSubstr("--set model.positions: the deck says learned, the checkpoint (eval.checkpoint) was trained "
                        "with none"));

  fmattn::train_deck(data.deck(learned.path(), "float64", 2), quiet);
  const auto before = fmattn::load_model(learned.path());
  EXPECT_EQ(before.config.positions, fmattn::Positions::learned);
  remove_attribute(learned.path(), "positions");
  const auto old = fmattn::load_model(learned.path());
  EXPECT_EQ(old.config.positions, fmattn::Positions::learned);
  EXPECT_TRUE(same_bits(old.params, before.params));
  remove_attribute(none.path(), "positions");
  EXPECT_THAT(input_error([&] { fmattn::load_model(none.path()); }), HasSubstr("'params/position'"));
}

TEST(Train, CheckpointAttributesOfAnotherTypeAreRefused) {
  Data data;
  TempPath ckpt("attr.h5");
  fmattn::train_deck(data.deck(ckpt.path(), "float64", 2), quiet);
  const std::string good = contents(ckpt.path());
  const hid_t scalar = H5Screate(H5S_SCALAR);
  const double step = 2.5;
  replace_attribute(ckpt.path(), "step", H5T_NATIVE_DOUBLE, scalar, &step);
  EXPECT_THAT(input_error([&] { fmattn::load_model(ckpt.path()); }), HasSubstr("attribute 'step' is not an integer"));
  std::ofstream(ckpt.path(), std::ios::binary) << good;
  const hsize_t two = 2;
  const hid_t pair = H5Screate_simple(1, &two, nullptr);
  const hid_t text = H5Tcopy(H5T_C_S1);
  H5Tset_size(text, 16);
  const char schema[2][16] = {"fmattn-model/1", "fmattn-model/1"};
  replace_attribute(ckpt.path(), "schema", text, pair, schema);
  EXPECT_THAT(input_error([&] { fmattn::load_model(ckpt.path()); }), HasSubstr("attribute 'schema' is not a string"));
  EXPECT_THAT(input_error([&] {
                fmattn::eval_deck(data.deck(ckpt.path(), "float64", 2, {"eval.checkpoint=" + ckpt.path()}), quiet);
              }),
              HasSubstr("--set eval.checkpoint: " + ckpt.path() + ": attribute 'schema'"));
  H5Tclose(text);
  H5Sclose(pair);
  H5Sclose(scalar);
}

TEST(Train, EvalRefusesADeckThatDescribesAnotherModel) {
  Data data;
  TempPath ckpt("ctx.h5");
  fmattn::train_deck(data.deck(ckpt.path(), "float64", 2), quiet);
  EXPECT_THAT(input_error([&] {
                fmattn::eval_deck(
                    data.deck(ckpt.path(), "float64", 2, {"eval.checkpoint=" + ckpt.path(), "model.context=32"}),
                    quiet);
              }),
              HasSubstr("--set model.context: the deck says 32, the checkpoint (eval.checkpoint) was trained with 64"));
}

TEST(Train, LanguageModelRulesNameWhereTheDeckSaysIt) {
  auto rule = [](const std::string& text) {
    return input_error([&] { fmattn::model_config(fmattn::parse_deck(text, "lm.yaml")); });
  };
  EXPECT_THAT(rule("attention: {variant: bidirectional}\n"),
              ::testing::MatchesRegex("lm[.]yaml:1:[0-9]+: attention[.]variant: a language model .*causal.*"));
  EXPECT_THAT(rule("attention:\n  queries: coarse\n"),
              ::testing::MatchesRegex("lm[.]yaml:2:[0-9]+: attention[.]queries: .*fine queries"));
  EXPECT_THAT(rule("model: {context: 48}\nattention: {boundary: zero_sink, block_size: 16}\n"),
              ::testing::MatchesRegex("lm[.]yaml:1:[0-9]+: model[.]context: zero_sink needs.*"));
}

// Every input a regular file, every output writable and none of the inputs: checked before
// any work, creating nothing.
TEST(Train, FilesAreCheckedBeforeAnyWork) {
  Data data;
  TempPath ckpt("files.h5"), link("link.bin"), fifo("fifo.bin"), folder("folder");
  fmattn::train_deck(data.deck(ckpt.path(), "float64", 2), quiet);
  const std::string model = contents(ckpt.path()), corpus = contents(data.train.path());
  std::filesystem::create_symlink(std::filesystem::absolute(data.train.path()), link.path());
  ASSERT_EQ(::mkfifo(fifo.path().c_str(), 0600), 0);
  auto problem = [&](const std::string& verb, const std::vector<std::string>& o) {
    return input_error([&] {
      const fmattn::Deck d = data.deck(ckpt.path(), "float64", 2, o);
      fmattn::check_files(d, fmattn::files_of(d, verb, ""));
    });
  };
  const std::string as_train = problem("train", {"train.checkpoint_file=" + link.path()});
  EXPECT_THAT(as_train, HasSubstr("--set train.checkpoint_file: '" + link.path() + "' is the same file as test:4:"));
  EXPECT_THAT(as_train, HasSubstr(": data.train"));
  EXPECT_THAT(problem("train", {"train.checkpoint_file=" + data.val.path()}), HasSubstr("same file as test:4:"));
  EXPECT_THAT(problem("eval", {"eval.checkpoint=" + ckpt.path(), "eval.output=./" + ckpt.path()}),
              HasSubstr("--set eval.output: './" + ckpt.path() + "' is the same file as --set eval.checkpoint"));
  // A restart into its own file is how a stopped run continues.
  const fmattn::Deck restart = data.deck(ckpt.path(), "float64", 4, {"train.restart_from=" + ckpt.path()});
  EXPECT_NO_THROW(fmattn::check_files(restart, fmattn::files_of(restart, "train", "")));
  EXPECT_THAT(problem("train", {"data.train=" + fifo.path()}),
              HasSubstr("--set data.train: cannot open '" + fifo.path() + "': it is a FIFO, not a regular file"));
  EXPECT_THAT(problem("train", {"data.val=/dev/zero"}),
              HasSubstr("--set data.val: cannot open '/dev/zero': it is a character device"));
  EXPECT_THAT(problem("eval", {"eval.checkpoint=/dev/null"}),
              HasSubstr("--set eval.checkpoint: cannot open '/dev/null'"));
  EXPECT_THAT(problem("eval", {"eval.checkpoint=nope.h5"}), HasSubstr("--set eval.checkpoint: cannot open 'nope.h5'"));
  EXPECT_THAT(problem("train", {"train.restart_from=nope.h5"}),
              HasSubstr("--set train.restart_from: cannot open 'nope.h5'"));
  EXPECT_THAT(problem("train", {"train.restart_from=" + data.val.path()}),
              HasSubstr("--set train.restart_from: " + data.val.path() + ": not an HDF5 file"));
  EXPECT_THAT(problem("train", {"train.checkpoint_file=" + folder.path() + "/o.h5/"}), HasSubstr("names a folder"));
  EXPECT_THAT(problem("train", {"train.checkpoint_file=" + folder.path() + "/a/b.h5", "data.val=nope"}),
              HasSubstr("data.val"));
  EXPECT_THAT(problem("eval", {"eval.checkpoint=" + ckpt.path(), "eval.output=/proc/self/x.h5"}),
              HasSubstr("--set eval.output: cannot write into '/proc/self'"));
  EXPECT_THAT(problem("eval", {"eval.checkpoint=" + ckpt.path(), "eval.output=/sys/x.h5"}),
              HasSubstr("--set eval.output: cannot write into '/sys'"));
  EXPECT_FALSE(std::filesystem::exists(folder.path()));
  EXPECT_EQ(contents(ckpt.path()), model);
  EXPECT_EQ(contents(data.train.path()), corpus);
}

}  // namespace
