// The language model against the independent float64 reference of reference_lm.hpp: the loss,
// and the gradient of every parameter class against central finite differences of the
// reference's loss, for exact, FMA (average and learned basis functions, a ragged context) and
// local attention, with learned positions and without; exact = FMA when the context has no
// coarse level; initial values as documented; parameters carried to another context; the
// learning-rate schedule.
#include <fmattn/model/flops.hpp>
#include <fmattn/model/language_model.hpp>
#include <fmattn/model/optimizer.hpp>
#include "model_reference.hpp"
#include "reference_lm.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>

namespace {

using fmattn::LanguageModel;
using fmattn::ModelConfig;
using testing_lm::named;
using testing_lm::reference_of;
using testing_lm::window_bytes;

struct Case {
  const char* name;
  fmattn::Method method;
  bool learned;
  int context;
  fmattn::Positions positions = fmattn::Positions::learned;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

ModelConfig config_of(const Case& c) {
  ModelConfig m;
  m.layers = 2;
  m.width = 16;
  m.heads = 2;
  m.context = c.context;
  m.positions = c.positions;
  m.block_size = 4;
  m.rank = 2;
  m.attention.method = c.method;
  m.attention.downsampling = c.learned ? fmattn::Downsampling::learned : fmattn::Downsampling::average;
  m.attention.scale = 1.0 / std::sqrt(8.0);
  return m;
}

// A model whose parameters are the initial ones plus noise, so that gains, biases and basis
// functions are away from their special initial values.
struct Fixture {
  ModelConfig config;
  LanguageModel<double> model;
  std::vector<double> x;
  std::vector<unsigned char> bytes;

  explicit Fixture(const Case& c) : config(config_of(c)), model(config, 7), bytes(window_bytes(c.context, 11)) {
    x = testing_lm::noisy_parameters(model);
    model.set_parameters(x);
  }
};

class ModelVsReference : public ::testing::TestWithParam<Case> {};

TEST_P(ModelVsReference, LossAndEveryGradientClass) {
  Fixture f(GetParam());
  const ref_lm::Config rc = reference_of(f.config);
  const int T = f.config.context;
  const double reference = ref_lm::loss(rc, named(f.model.slots(), f.x), f.bytes);
  f.model.zero_gradients();
  const double loss = f.model.window(f.bytes.data(), 1.0 / T) / T;
  EXPECT_NEAR(loss, reference, 1e-12 * reference);
  auto g = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), f.model.gradients());

  // Two elements of every slot whose name ends alike (wq of every block is one class), the
  // largest-gradient element and a random one, against central differences of the reference.
  std::mt19937 rng(3);
  const double h = 1e-5;
  int checked = 0;
  for (const auto& s : f.model.slots()) {
    std::int64_t largest = s.offset;
    for (std::int64_t i = s.offset; i < s.offset + s.size; ++i)
      if (std::abs(g(i)) > std::abs(g(largest))) largest = i;
    for (const std::int64_t i : {largest, s.offset + std::int64_t(rng() % std::uint64_t(s.size))}) {
      std::vector<double> y = f.x;
      y[std::size_t(i)] = f.x[std::size_t(i)] + h;
      const double up = ref_lm::loss(rc, named(f.model.slots(), y), f.bytes);
      y[std::size_t(i)] = f.x[std::size_t(i)] - h;
      const double down = ref_lm::loss(rc, named(f.model.slots(), y), f.bytes);
      const double fd = (up - down) / (2 * h);
      // Central differences are exact to O(h²) ≈ 1e-10 here, with rounding ≈ 1e-16 / h.
      EXPECT_NEAR(g(i), fd, 1e-8 + 1e-5 * std::abs(fd)) << s.name << " element " << i - s.offset;
      ++checked;
    }
  }
  EXPECT_GE(checked, 2 * 20);
}

INSTANTIATE_TEST_SUITE_P(
    Methods, ModelVsReference,
    ::testing::Values(Case{"exact", fmattn::Method::exact, false, 32},
                      Case{"fma_average", fmattn::Method::fma, false, 32},
                      Case{"fma_learned", fmattn::Method::fma, true, 32},
                      Case{"fma_learned_ragged", fmattn::Method::fma, true, 27},
                      Case{"local", fmattn::Method::local, false, 29},
                      Case{"exact_no_positions", fmattn::Method::exact, false, 32, fmattn::Positions::none},
                      Case{"fma_learned_ragged_no_positions", fmattn::Method::fma, true, 27, fmattn::Positions::none}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Model, ExactEqualsFmaWithoutCoarseLevels) {
  // context 8 = 2 · block_size: FMA has no coarse level and its near field is every key.
  for (const auto positions : {fmattn::Positions::learned, fmattn::Positions::none})
    for (const bool learned : {false, true}) {
      SCOPED_TRACE(positions == fmattn::Positions::none ? "positions none" : "learned positions");
      Fixture exact(Case{"exact", fmattn::Method::exact, false, 8, positions});
      Fixture fma(Case{"fma", fmattn::Method::fma, learned, 8, positions});
      ASSERT_EQ(fma.config.geometry().L, 0);
      ASSERT_EQ(exact.x, fma.x);  // no basis functions without levels: the same parameters
      const double a = exact.model.window(exact.bytes.data(), 0.0);
      const double b = fma.model.window(fma.bytes.data(), 0.0);
      EXPECT_NEAR(a, b, 1e-13 * a);
      const auto la = exact.model.logits(), lb = fma.model.logits();
      for (std::size_t i = 0; i < la.size(); ++i) ASSERT_NEAR(la[i], lb[i], 1e-12) << i;
    }
}

TEST(Model, LocalDiffersFromFmaBeyondTwoBlocks) {
  Fixture fma(Case{"fma", fmattn::Method::fma, false, 32});
  Fixture local(Case{"local", fmattn::Method::local, false, 32});
  EXPECT_GT(std::abs(fma.model.window(fma.bytes.data(), 0.0) - local.model.window(local.bytes.data(), 0.0)), 1e-6);
}

// A batch of windows in one call against the same windows one call at a time: the same losses,
// per-token losses and logits, and the same gradients — bit for bit, since every gradient sum
// runs over the rows in window order — except two that change their order of summation
// (rounding only): the learned basis functions' (the attention sums them over windows·heads in
// one go) and the tied embedding's (its output and input terms come in two passes per call, so
// a batch adds all windows' output terms before their input terms). Ragged contexts, float64
// and float32.
template <class S>
void batch_equals_one_at_a_time(const Case& c) {
  SCOPED_TRACE(std::string(c.name) + (sizeof(S) == 4 ? " float32" : " float64"));
  const ModelConfig m = config_of(c);
  LanguageModel<S> together(m, 7, 3), alone(m, 7, 1);
  std::vector<std::vector<unsigned char>> bytes;
  std::vector<const std::uint8_t*> windows;
  for (unsigned w = 0; w < 3; ++w) bytes.push_back(window_bytes(c.context, 20 + w));
  for (const auto& b : bytes) windows.push_back(b.data());
  together.zero_gradients();
  alone.zero_gradients();
  std::vector<double> tokens_together, tokens_alone, logits_alone, one;
  const std::vector<double> sums = together.windows(windows, 0.25, &tokens_together);
  const std::vector<double> logits_together = together.logits();
  for (std::size_t w = 0; w < 3; ++w) {
    EXPECT_EQ(alone.window(windows[w], 0.25, &one), sums[w]) << "window " << w;
    tokens_alone.insert(tokens_alone.end(), one.begin(), one.end());
    const std::vector<double> l = alone.logits();
    logits_alone.insert(logits_alone.end(), l.begin(), l.end());
  }
  EXPECT_EQ(tokens_together, tokens_alone);
  EXPECT_EQ(logits_together, logits_alone);
  auto a = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), together.gradients());
  auto b = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), alone.gradients());
  for (const auto& s : together.slots()) {
    const bool reordered = s.name.find("downsampling") != std::string::npos || s.name == "embedding";
    double scale = 0;
    for (std::int64_t i = s.offset; i < s.offset + s.size; ++i) scale = std::max(scale, std::abs(double(b(i))));
    for (std::int64_t i = s.offset; i < s.offset + s.size; ++i) {
      if (reordered)
        ASSERT_NEAR(a(i), b(i), 64 * std::numeric_limits<S>::epsilon() * scale) << s.name << " " << i - s.offset;
      else
        ASSERT_EQ(a(i), b(i)) << s.name << " " << i - s.offset;
    }
  }
}

TEST(Model, BatchOfWindowsEqualsWindowsOneAtATime) {
  for (const Case& c :
       {Case{"exact", fmattn::Method::exact, false, 27}, Case{"fma_average", fmattn::Method::fma, false, 32},
        Case{"fma_learned", fmattn::Method::fma, true, 29}, Case{"local", fmattn::Method::local, false, 21}}) {
    batch_equals_one_at_a_time<double>(c);
    batch_equals_one_at_a_time<float>(c);
  }
}

TEST(Model, InitialValues) {
  ModelConfig c = config_of(Case{"fma", fmattn::Method::fma, true, 64});
  c.width = 64;
  c.heads = 4;
  const auto slots = fmattn::parameter_slots(c);
  const auto x = fmattn::initial_parameters(c, slots, 1);
  auto stats = [&](const std::string& name, double& mean, double& sd) {
    const auto& s = fmattn::find_slot(slots, name);
    double a = 0, b = 0;
    for (std::int64_t i = s.offset; i < s.offset + s.size; ++i) a += x[std::size_t(i)];
    mean = a / double(s.size);
    for (std::int64_t i = s.offset; i < s.offset + s.size; ++i) b += std::pow(x[std::size_t(i)] - mean, 2);
    sd = std::sqrt(b / double(s.size));
    return double(s.size);
  };
  double mean = 0, sd = 0;
  for (const char* name : {"embedding", "position", "block_00/wq", "block_01/w1"}) {
    const double n = stats(name, mean, sd);
    EXPECT_NEAR(sd, 0.02, 4 * 0.02 / std::sqrt(2 * n)) << name;
    EXPECT_NEAR(mean, 0.0, 4 * 0.02 / std::sqrt(n)) << name;
  }
  for (const char* name : {"block_00/wo", "block_01/w2"}) {
    const double n = stats(name, mean, sd);
    const double want = 0.02 / std::sqrt(2.0 * c.layers);
    EXPECT_NEAR(sd, want, 4 * want / std::sqrt(2 * n)) << name;
  }
  EXPECT_EQ(x[std::size_t(fmattn::find_slot(slots, "block_00/ln1_gain").offset)], 1.0);
  EXPECT_EQ(x[std::size_t(fmattn::find_slot(slots, "block_00/bq").offset)], 0.0);
  // The basis functions start at the average operator: level 1 weights 1 / (w_1 / p).
  const auto& w = fmattn::find_slot(slots, "block_00/downsampling/k/level_01/weight");
  EXPECT_EQ(x[std::size_t(w.offset)], 1.0 / (c.block_size / c.rank));
  EXPECT_FALSE(w.decay);
  EXPECT_TRUE(fmattn::find_slot(slots, "embedding").decay);
  EXPECT_FALSE(fmattn::find_slot(slots, "block_00/b1").decay);
  // Another seed, other values; the same seed, the same bits.
  EXPECT_NE(x, fmattn::initial_parameters(c, slots, 2));
  EXPECT_EQ(x, fmattn::initial_parameters(c, slots, 1));
  // Without positions: no table P, and every other slot as in the learned-positions model.
  ModelConfig none = c;
  none.positions = fmattn::Positions::none;
  const auto none_slots = fmattn::parameter_slots(none);
  const auto y = fmattn::initial_parameters(none, none_slots, 1);
  EXPECT_EQ(none_slots.size() + 1, slots.size());
  EXPECT_EQ(fmattn::parameter_count(none_slots) + c.context * c.width, fmattn::parameter_count(slots));
  for (const auto& s : none_slots) {
    EXPECT_NE(s.name, "position");
    const auto& learned = fmattn::find_slot(slots, s.name);
    EXPECT_TRUE(std::equal(y.begin() + s.offset, y.begin() + s.offset + s.size, x.begin() + learned.offset)) << s.name;
  }
}

// The average operator of level l by its definition: coarse token r of a cell of w_l tokens is
// the mean of its sub-segment r of w_l / p tokens, for every channel.
double average_operator(const ModelConfig& c, int level, std::int64_t i) {
  const std::int64_t w = std::int64_t(c.block_size) << (level - 1), segment = w / c.rank, d = c.head_dim();
  const std::int64_t r = i / (w * d), t = i / d % w;
  return t / segment == r ? 1.0 / double(segment) : 0.0;
}

// A positions-none model carried to another context: at its own context it is itself; at a
// longer one every trained slot keeps its bits, the coarse levels the context adds start at the
// average operator, and the model runs there as the reference does; back at the trained context
// it is the trained model again. A learned-positions model cannot change its context.
TEST(Model, AdaptParametersToAnotherContext) {
  Fixture f(Case{"fma", fmattn::Method::fma, true, 32, fmattn::Positions::none});
  const ModelConfig& from = f.config;
  EXPECT_EQ(fmattn::adapt_parameters(from, f.x, from), f.x);
  ModelConfig to = from;
  to.context = 128;
  ASSERT_EQ(from.geometry().L, 2);
  ASSERT_EQ(to.geometry().L, 4);
  const std::vector<double> y = fmattn::adapt_parameters(from, f.x, to);
  const auto to_slots = fmattn::parameter_slots(to);
  ASSERT_EQ(std::int64_t(y.size()), fmattn::parameter_count(to_slots));
  int added = 0;
  for (const auto& s : to_slots) {
    const auto trained = std::find_if(f.model.slots().begin(), f.model.slots().end(),
                                      [&](const fmattn::ParameterSlot& t) { return t.name == s.name; });
    if (trained != f.model.slots().end()) {
      EXPECT_TRUE(std::equal(y.begin() + s.offset, y.begin() + s.offset + s.size, f.x.begin() + trained->offset))
          << s.name;
      continue;
    }
    const int level = std::stoi(s.name.substr(s.name.find("level_") + 6, 2));
    EXPECT_GT(level, 2) << s.name;
    const bool bias = s.name.substr(s.name.rfind('/')) == "/bias";
    for (std::int64_t i = 0; i < s.size; ++i)
      ASSERT_EQ(y[std::size_t(s.offset + i)], bias ? 0.0 : average_operator(to, level, i)) << s.name << " " << i;
    ++added;
  }
  EXPECT_EQ(added, 2 * 2 * 2 * 2);  // layers × {k, v} × levels 3, 4 × {weight, bias}
  EXPECT_EQ(fmattn::adapt_parameters(to, y, from), f.x);
  LanguageModel<double> longer(to, 7);
  longer.set_parameters(y);
  const auto bytes = window_bytes(to.context, 12);
  const double reference = ref_lm::loss(reference_of(to), named(to_slots, y), bytes);
  EXPECT_NEAR(longer.window(bytes.data(), 0.0) / to.context, reference, 1e-12 * reference);

  ModelConfig learned = from;
  learned.positions = fmattn::Positions::learned;
  const auto x = fmattn::initial_parameters(learned, fmattn::parameter_slots(learned), 1);
  EXPECT_EQ(fmattn::adapt_parameters(learned, x, learned), x);
  ModelConfig learned_longer = learned;
  learned_longer.context = 128;
  EXPECT_THROW(fmattn::adapt_parameters(learned, x, learned_longer), std::invalid_argument);
  ModelConfig wider = to;
  wider.width = 32;
  EXPECT_THROW(fmattn::adapt_parameters(from, f.x, wider), std::invalid_argument);
  EXPECT_THROW(fmattn::adapt_parameters(from, x, to), std::invalid_argument);  // learned's values: too many
}

// Training FLOPs per token, counted by hand for a small exact model: 6 per matrix parameter
// (2 layers × 12·16² + the tied 256 × 16 output) plus 3.5 × the causal attention's forward
// (T(T + 1)/2 query-key pairs per head, 4·d FLOPs each, 2 heads, 2 layers, over T tokens).
TEST(Model, TrainingFlopsPerToken) {
  ModelConfig m = config_of({"exact", fmattn::Method::exact, false, 8});
  const double matrices = 6.0 * (2 * 12 * 16 * 16 + 256 * 16);
  const double attention = 3.5 * 2 * (4.0 * 8 * (8 * 9 / 2) * 2) / 8;
  EXPECT_DOUBLE_EQ(fmattn::training_flops_per_token(m), matrices + attention);
  // FMA's attention grows as T log T, exact's as T²: at a long context FMA's is far smaller.
  m.context = 4096;
  const double exact = fmattn::training_flops_per_token(m);
  m.attention.method = fmattn::Method::fma;
  EXPECT_LT(fmattn::training_flops_per_token(m) - matrices, 0.1 * (exact - matrices));
}

TEST(Optimizer, WarmupThenCosine) {
  fmattn::OptimizerConfig c;
  c.steps = 110;
  c.warmup_steps = 10;
  c.learning_rate = 1e-3;
  c.min_learning_rate = 1e-4;
  EXPECT_DOUBLE_EQ(fmattn::learning_rate_at(c, 1), 1e-4);
  EXPECT_DOUBLE_EQ(fmattn::learning_rate_at(c, 10), 1e-3);
  EXPECT_NEAR(fmattn::learning_rate_at(c, 60), 0.55e-3, 1e-15);
  EXPECT_DOUBLE_EQ(fmattn::learning_rate_at(c, 110), 1e-4);
  c.warmup_steps = 0;
  EXPECT_NEAR(fmattn::learning_rate_at(c, 1), 1e-3, 1e-6);
}

TEST(Optimizer, ClipsToTheGlobalNormAndDecaysMatricesOnly) {
  ModelConfig m = config_of(Case{"exact", fmattn::Method::exact, false, 8});
  const auto slots = fmattn::parameter_slots(m);
  fmattn::OptimizerConfig c;
  c.steps = 10;
  c.warmup_steps = 0;
  c.learning_rate = c.min_learning_rate = 0.1;
  c.weight_decay = 0.5;
  c.clip_norm = 1.0;
  fmattn::AdamW<double> opt(c, slots);
  const std::int64_t n = fmattn::parameter_count(slots);
  Kokkos::View<double*> x("x", n), g("g", n);
  Kokkos::deep_copy(x, 1.0);
  Kokkos::deep_copy(g, 0.0);  // zero gradient: only the decay moves x
  EXPECT_EQ(opt.step(1, x, g), 0.0);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
  EXPECT_DOUBLE_EQ(h(fmattn::find_slot(slots, "block_00/wq").offset), 1.0 - 0.1 * 0.5);
  EXPECT_DOUBLE_EQ(h(fmattn::find_slot(slots, "block_00/bq").offset), 1.0);
  Kokkos::deep_copy(g, 3.0);
  EXPECT_NEAR(opt.norm(g), 3.0 * std::sqrt(double(n)), 1e-9 * n);
}

}  // namespace
