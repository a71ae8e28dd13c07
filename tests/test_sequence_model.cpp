// A sequence-sharded model (every window split over the ranks of MPI_COMM_WORLD; run at 1, 2,
// 3 and 4 ranks): the loss and the gradient of every parameter class, summed over the ranks as
// training sums them, against central differences of the independent float64 reference
// (reference_lm.hpp) and against the unsharded model; FMA with average and learned basis
// functions, count weighting off, local attention, a ragged context, two windows a call.
#include <fmattn/model/language_model.hpp>
#include <fmattn/model/training_reduction.hpp>
#include "model_reference.hpp"
#include "mpi_world.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace {

using fmattn::LanguageModel;
using fmattn::ModelConfig;

struct Case {
  const char* name;
  bool learned, count_weighting;
  int context;
  fmattn::Method method = fmattn::Method::fma;
};

class SequenceModel : public ::testing::TestWithParam<Case> {};

TEST_P(SequenceModel, GradientsAgainstReferenceDifferences) {
  const Case& c = GetParam();
  ModelConfig config;
  config.layers = 2;
  config.width = 16;
  config.heads = 2;
  config.context = c.context;
  config.block_size = 4;
  config.rank = 2;
  config.attention.method = c.method;
  config.attention.downsampling = c.learned ? fmattn::Downsampling::learned : fmattn::Downsampling::average;
  config.attention.count_weighting = c.count_weighting;
  config.attention.scale = 1.0 / std::sqrt(8.0);
  const int T = config.context;

  // The same parameters on every rank: initial values plus noise, away from special values.
  LanguageModel<double> whole(config, 7, 2);
  const std::vector<double> x = testing_lm::noisy_parameters(whole);
  whole.set_parameters(x);
  LanguageModel<double> sharded(config, 7, 2, MPI_COMM_WORLD);
  sharded.set_parameters(fmattn::take_rows(whole.slots(), x, sharded.slots()));

  const auto w0 = testing_lm::window_bytes(T, 11), w1 = testing_lm::window_bytes(T, 12);
  whole.zero_gradients();
  sharded.zero_gradients();
  double want = 0, got = 0;
  for (const double l : whole.windows({w0.data(), w1.data()}, 1.0 / T)) want += l / T;
  for (const double l : sharded.windows({w0.data(), w1.data()}, 1.0 / T)) got += l / T;
  MPI_Allreduce(MPI_IN_PLACE, &got, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  fmattn::sum_gradients(sharded, MPI_COMM_WORLD);
  EXPECT_NEAR(got, want, 1e-12 * want);

  // This rank's gradients (its rows of P) against the unsharded model's.
  const auto gw = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), whole.gradients());
  const auto g = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), sharded.gradients());
  const std::vector<double> expect =
      fmattn::take_rows(whole.slots(), std::vector<double>(gw.data(), gw.data() + gw.extent(0)), sharded.slots());
  double diff = 0, size = 0;
  for (std::size_t i = 0; i < expect.size(); ++i) {
    diff = std::max(diff, std::abs(g(i) - expect[i]));
    size = std::max(size, std::abs(expect[i]));
  }
  EXPECT_LE(diff, 1e-12 * size);

  // Every slot's largest and a random element against central differences of the reference's
  // loss (the mean over the two windows' positions, summed over the windows).
  const ref_lm::Config rc = testing_lm::reference_of(config);
  auto reference = [&](const std::vector<double>& y) {
    const ref_lm::Params p = testing_lm::named(whole.slots(), y);
    return ref_lm::loss(rc, p, w0) + ref_lm::loss(rc, p, w1);
  };
  EXPECT_NEAR(got, reference(x), 1e-12 * want);
  std::mt19937 pick(3);
  const double step = 1e-5;
  for (const auto& s : sharded.slots()) {
    const fmattn::ParameterSlot& in_whole = fmattn::find_slot(whole.slots(), s.name);
    const std::int64_t at = in_whole.offset + (s.row_begin - in_whole.row_begin) * (s.size / s.shape[0]);
    std::int64_t largest = 0;
    for (std::int64_t i = 0; i < s.size; ++i)
      if (std::abs(g(s.offset + i)) > std::abs(g(s.offset + largest))) largest = i;
    for (const std::int64_t i : {largest, std::int64_t(pick() % std::uint64_t(s.size))}) {
      std::vector<double> y = x;
      y[std::size_t(at + i)] += step;
      const double up = reference(y);
      y[std::size_t(at + i)] -= 2 * step;
      const double fd = (up - reference(y)) / (2 * step);
      EXPECT_NEAR(g(s.offset + i), fd, 1e-8 + 1e-5 * std::abs(fd)) << s.name << " element " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, SequenceModel,
                         ::testing::Values(Case{"average", false, true, 32}, Case{"learned_ragged", true, true, 27},
                                           Case{"average_no_count_weighting_ragged", false, false, 29},
                                           Case{"local_ragged", false, true, 27, fmattn::Method::local}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
