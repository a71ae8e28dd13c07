// The decoder against the training forward (model.md §6): after a prefill of every prompt length
// and then step by step, its logits at each position equal the forward's logits there, for
// exact, FMA (average and learned basis functions, count weighting on and off, the zero_sink
// boundary) and local attention on ragged contexts whose positions cross block and cell
// boundaries of every level; streams batched equal streams one at a time bit for bit; greedy
// generation equals rerunning the whole forward for every byte; the state's size grows by one
// level's cells when the capacity doubles, never with the position.
#include <fmattn/model/decoder.hpp>
#include <fmattn/model/language_model.hpp>
#include <fmattn/model/sampler.hpp>
#include "kernels/decode_attention.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using fmattn::Decoder;
using fmattn::LanguageModel;
using fmattn::ModelConfig;

struct Case {
  const char* name;
  fmattn::Method method;
  bool learned;
  bool count_weighting;
  bool zero_sink;
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
  m.block_size = 4;
  m.rank = 2;
  m.attention.method = c.method;
  m.attention.downsampling = c.learned ? fmattn::Downsampling::learned : fmattn::Downsampling::average;
  m.attention.count_weighting = c.count_weighting;
  m.attention.boundary = c.zero_sink ? fmattn::Boundary::zero_sink : fmattn::Boundary::masked;
  m.attention.scale = 1.0 / std::sqrt(8.0);
  m.positions = c.positions;
  return m;
}

// Parameters far from their initial values (basis functions away from the average operator,
// peaked attention), so that every term of the decoder's state matters.
template <class S>
void randomize(LanguageModel<S>& model, unsigned seed) {
  const auto init = fmattn::initial_parameters(model.config(), model.slots(), seed);
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(0.0, 0.3);
  std::vector<double> x(init.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = init[i] + noise(rng);
  model.set_parameters(x);
}

std::vector<std::uint8_t> text(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> w(n);
  for (auto& b : w) b = static_cast<std::uint8_t>('a' + rng() % 12);
  return w;
}

std::vector<double> host_parameters(const LanguageModel<double>& model) {
  const auto x = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.parameters());
  return std::vector<double>(x.data(), x.data() + x.extent(0));
}

// Largest |a − b| over a row of logits, relative to the row's largest magnitude.
double row_error(const double* a, const double* b) {
  double err = 0, scale = 1e-300;
  for (int v = 0; v < fmattn::vocabulary; ++v) {
    err = std::max(err, std::abs(a[v] - b[v]));
    scale = std::max(scale, std::abs(b[v]));
  }
  return err / scale;
}

// Every prompt length 1 .. T, then steps to the end of the window: each position's logits
// against the forward's. Returns the largest relative error.
template <class S>
double worst_error(const ModelConfig& config, unsigned seed) {
  LanguageModel<S> model(config, 7);
  randomize(model, seed);
  const std::int64_t T = config.context;
  const std::vector<std::uint8_t> bytes = text(std::size_t(T) + 1, seed + 1);
  model.window(bytes.data(), 0.0);
  const std::vector<double> forward = model.logits();
  double worst = 0;
  for (std::int64_t n = 1; n <= T; ++n) {
    Decoder<S> decoder(model, 1, T);
    decoder.prefill(std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + n));
    worst = std::max(worst, row_error(decoder.logits().data(), forward.data() + (n - 1) * fmattn::vocabulary));
    // From every fourth prompt length, step to the end (the others check the prefill alone).
    for (std::int64_t t = n; n % 4 == 1 && t < T; ++t) {
      decoder.step({bytes[std::size_t(t)]});
      EXPECT_EQ(decoder.position(), t + 1);
      worst = std::max(worst, row_error(decoder.logits().data(), forward.data() + t * fmattn::vocabulary));
    }
  }
  return worst;
}

class DecoderVsForward : public ::testing::TestWithParam<Case> {};

TEST_P(DecoderVsForward, Float64EveryPositionEveryPromptLength) {
  EXPECT_LT(worst_error<double>(config_of(GetParam()), 11), 1e-12);
}

// float32: the decoder and the forward sum the same terms in other orders (dot products of
// head_dim, softmax sums over up to 2m + 2p·L slots, LayerNorm and GEMM sums over width and
// 4·width), each with a relative error of a few units of float32 rounding per term; through
// two layers the logits keep a relative error of order sqrt(terms)·eps, well under 2e-5.
TEST_P(DecoderVsForward, Float32WithinRounding) {
  ModelConfig c = config_of(GetParam());
  const double bound = 4 * std::sqrt(4.0 * c.width) * std::numeric_limits<float>::epsilon() * c.layers;
  const double worst = worst_error<float>(c, 12);
  std::printf("float32: largest relative error %.3g (bound %.3g)\n", worst, bound);
  EXPECT_LT(worst, bound);
}

INSTANTIATE_TEST_SUITE_P(Methods, DecoderVsForward,
                         ::testing::Values(Case{"exact", fmattn::Method::exact, false, true, false, 37},
                                           Case{"fma_average", fmattn::Method::fma, false, true, false, 37},
                                           Case{"fma_average_unweighted", fmattn::Method::fma, false, false, false, 45},
                                           Case{"fma_learned", fmattn::Method::fma, true, true, false, 37},
                                           Case{"fma_learned_unweighted", fmattn::Method::fma, true, false, false, 29},
                                           Case{"fma_zero_sink", fmattn::Method::fma, false, true, true, 32},
                                           Case{"fma_learned_zero_sink", fmattn::Method::fma, true, true, true, 32},
                                           Case{"local", fmattn::Method::local, false, true, false, 37},
                                           Case{"fma_learned_positions_none", fmattn::Method::fma, true, true, false,
                                                37, fmattn::Positions::none},
                                           Case{"exact_positions_none", fmattn::Method::exact, false, true, false, 37,
                                                fmattn::Positions::none}),
                         [](const auto& info) { return std::string(info.param.name); });

// positions none beyond the training context: at every position t the decoder's logits equal
// the forward over the first t + 1 bytes by a model of that context with the same parameters
// (more coarse levels, which average), after a prefill shorter or longer than the context, all
// through the forward or partly stepped.
class DecoderBeyondContext : public ::testing::TestWithParam<Case> {};

TEST_P(DecoderBeyondContext, EqualsTheForwardOverThePrefix) {
  ModelConfig c = config_of(GetParam());
  LanguageModel<double> model(c, 7);
  randomize(model, 21);
  const std::int64_t n = 70;
  const std::vector<std::uint8_t> bytes = text(std::size_t(n) + 1, 22);
  std::vector<std::vector<double>> forward;  // row t of the forward over bytes 0 .. t
  for (std::int64_t t = 0; t < n; ++t) {
    ModelConfig longer = c;
    longer.context = int(t + 1);
    LanguageModel<double> prefix(longer, 7);
    prefix.set_parameters(fmattn::adapt_parameters(c, host_parameters(model), longer));
    prefix.window(bytes.data(), 0.0);
    const std::vector<double> all = prefix.logits();
    forward.emplace_back(all.end() - fmattn::vocabulary, all.end());
  }
  // Prompts within and beyond the context; the last through the forward as far as a budget of
  // one byte allows (the context), then stepped.
  for (const auto& [prompt, budget] :
       {std::pair<std::int64_t, std::size_t>{5, 1 << 30}, {c.context, 1 << 30}, {41, 1 << 30}, {53, 1}}) {
    Decoder<double> decoder(model, 1, n);
    decoder.prefill(std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + prompt), budget);
    while (true) {
      const std::int64_t t = decoder.position() - 1;
      EXPECT_LT(row_error(decoder.logits().data(), forward[std::size_t(t)].data()), 1e-12)
          << "prompt " << prompt << ", position " << t;
      if (decoder.position() == n) break;
      decoder.step({bytes[std::size_t(decoder.position())]});
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Methods, DecoderBeyondContext,
    ::testing::Values(Case{"fma_average", fmattn::Method::fma, false, true, false, 24, fmattn::Positions::none},
                      Case{"fma_learned", fmattn::Method::fma, true, true, false, 24, fmattn::Positions::none},
                      Case{"fma_learned_unweighted", fmattn::Method::fma, true, false, false, 17,
                           fmattn::Positions::none},
                      Case{"exact", fmattn::Method::exact, false, true, false, 24, fmattn::Positions::none},
                      Case{"local", fmattn::Method::local, false, true, false, 24, fmattn::Positions::none}),
    [](const auto& info) { return std::string(info.param.name); });

// Four streams sampled together (temperature, top-k, top-p) against each stream decoded alone
// with its own stream number: the same logits bit for bit, so the same bytes.
TEST(Decoder, StreamsTogetherEqualStreamsAlone) {
  const ModelConfig c = config_of({"fma_learned", fmattn::Method::fma, true, true, false, 40});
  LanguageModel<float> model(c, 7);
  randomize(model, 3);
  const std::vector<std::uint8_t> prompt = text(9, 4);
  const fmattn::SamplingOptions sampling{0.9, 50, 0.95, 17};
  const int streams = 4;
  Decoder<float> together(model, streams, c.context);
  together.prefill(prompt);
  std::vector<std::vector<double>> batched;
  std::vector<std::string> texts(streams);
  while (true) {
    batched.push_back(together.logits());
    std::vector<std::uint8_t> bytes;
    for (int s = 0; s < streams; ++s) {
      bytes.push_back(std::uint8_t(fmattn::sample_byte(
          together.logits().data() + std::ptrdiff_t(s) * fmattn::vocabulary, sampling, s, together.position())));
      texts[std::size_t(s)] += char(bytes.back());
    }
    if (together.position() == c.context) break;
    together.step(bytes);
  }
  EXPECT_NE(texts[0], texts[1]);
  for (int s = 0; s < streams; ++s) {
    Decoder<float> alone(model, 1, c.context);
    alone.prefill(prompt);
    std::string mine;
    for (std::size_t i = 0;; ++i) {
      ASSERT_TRUE(std::equal(alone.logits().begin(), alone.logits().end(),
                             batched[i].begin() + std::ptrdiff_t(s) * fmattn::vocabulary))
          << "stream " << s << ", position " << alone.position();
      mine += char(fmattn::sample_byte(alone.logits().data(), sampling, s, alone.position()));
      if (alone.position() == c.context) break;
      alone.step({std::uint8_t(mine.back())});
    }
    EXPECT_EQ(mine, texts[std::size_t(s)]) << "stream " << s;
  }
}

TEST(Decoder, GreedyEqualsRerunningTheForward) {
  const ModelConfig c = config_of({"fma_average", fmattn::Method::fma, false, true, false, 48});
  LanguageModel<double> model(c, 7);
  randomize(model, 5);
  std::vector<std::uint8_t> slow = text(5, 6);
  Decoder<double> decoder(model, 1, c.context);
  decoder.prefill(slow);
  std::vector<std::uint8_t> fast = slow;
  const fmattn::SamplingOptions greedy{0.0, 0, 1.0, 1};
  for (std::int64_t t = std::int64_t(slow.size()); t < c.context; ++t) {
    fast.push_back(std::uint8_t(fmattn::sample_byte(decoder.logits().data(), greedy, 0, t)));
    if (t + 1 < c.context) decoder.step({fast.back()});
    std::vector<std::uint8_t> window(std::size_t(c.context) + 1, 0);
    std::copy(slow.begin(), slow.end(), window.begin());
    model.window(window.data(), 0.0);
    slow.push_back(
        std::uint8_t(fmattn::sample_byte(model.logits().data() + (t - 1) * fmattn::vocabulary, greedy, 0, t)));
  }
  EXPECT_EQ(std::string(fast.begin(), fast.end()), std::string(slow.begin(), slow.end()));
}

// The state of an FMA decoder for capacities 2^10 .. 2^20: one more level per doubling, each
// level (K and V, per layer and head) kept_cells + 1 cells of p tokens of d values; the ring of
// the near field does not change. An exact decoder's cache grows with the capacity instead.
TEST(Decoder, StateGrowsByOneLevelPerDoubling) {
  ModelConfig c = config_of({"fma_average", fmattn::Method::fma, false, true, false, 64});
  c.positions = fmattn::Positions::none;
  LanguageModel<float> model(c, 7);
  const std::size_t level =
      std::size_t(c.layers) * c.heads * 2 * (fmattn::detail::kept_cells + 1) * c.rank * c.head_dim() * sizeof(float);
  std::size_t previous = 0;
  for (int k = 10; k <= 20; ++k) {
    const std::size_t bytes = Decoder<float>(model, 1, std::int64_t(1) << k).state_bytes_per_stream();
    // Capacities up to 2^k reach positions below 2^k: levels while (2^k − 1) / w_l ≥ 2.
    if (k > 10) {
      EXPECT_EQ(bytes, previous + level) << "capacity 2^" << k;
    }
    previous = bytes;
  }
  c.attention.method = fmattn::Method::exact;
  LanguageModel<float> exact(c, 7);
  EXPECT_EQ(Decoder<float>(exact, 1, 1 << 12).state_bytes_per_stream(),
            std::size_t(c.layers) * c.heads * 2 * (1 << 12) * c.head_dim() * sizeof(float));
}

TEST(Sampler, GreedyTopKTopP) {
  std::vector<double> logits(fmattn::vocabulary, 0.0);
  logits[7] = 3;
  logits[9] = 3;  // a tie: the lower byte wins
  logits[200] = 2.5;
  EXPECT_EQ(fmattn::sample_byte(logits.data(), {0.0, 0, 1.0, 1}, 0, 0), 7);
  // top_k 2 keeps 7 and 9 only, whatever the draw.
  for (int pos = 0; pos < 200; ++pos) {
    const int b = fmattn::sample_byte(logits.data(), {1.0, 2, 1.0, 1}, 0, pos);
    EXPECT_TRUE(b == 7 || b == 9) << b;
  }
  // A tiny top_p keeps the most likely byte alone.
  for (int pos = 0; pos < 200; ++pos) EXPECT_EQ(fmattn::sample_byte(logits.data(), {1.0, 0, 1e-9, 1}, 0, pos), 7);
  // Same (seed, stream, position), same byte; the streams' draws differ.
  int differ = 0;
  for (int pos = 0; pos < 100; ++pos) {
    const fmattn::SamplingOptions o{1.0, 0, 1.0, 42};
    EXPECT_EQ(fmattn::sample_byte(logits.data(), o, 3, pos), fmattn::sample_byte(logits.data(), o, 3, pos));
    differ += fmattn::sample_byte(logits.data(), o, 3, pos) != fmattn::sample_byte(logits.data(), o, 4, pos);
  }
  EXPECT_GT(differ, 50);
  // A temperature draw follows the softmax: byte 7's share of 2000 draws is near its probability.
  double z = 0;
  for (double l : logits) z += std::exp(l);
  int sevens = 0;
  for (int pos = 0; pos < 2000; ++pos) sevens += fmattn::sample_byte(logits.data(), {1.0, 0, 1.0, 9}, 0, pos) == 7;
  const double expected = std::exp(3.0) / z;
  EXPECT_NEAR(sevens / 2000.0, expected, 4 * std::sqrt(expected * (1 - expected) / 2000));
}

}  // namespace
