// End to end through run_deck: q, k, v from an HDF5 file in both dtypes, every combination of
// variant, downsampling, count weighting and boundary, learned weights from weights.file and
// ragged lengths; the output file must hold the spec's function (brute-force reference).
#include <fmattn/app/run.hpp>
#include <fmattn/io/deck.hpp>
#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/io/weights_file.hpp>
#include "attention_fixture.hpp"
#include "fp_traps.hpp"
#include "temp_path.hpp"

#include <unistd.h>

#include <filesystem>

namespace {

using namespace testing_fma;

std::string unique(const std::string& stem) { return testing_files::unique_name(stem + ".h5"); }

void write_qkv(const std::string& path, const Heads& q, const Heads& k, const Heads& v, std::int64_t n, int d,
               bool as_float) {
  fmattn::h5::NewFile f(path);
  const std::vector<std::int64_t> shape{1, std::int64_t(q.size()), n, d};
  for (auto [name, h] : {std::pair<const char*, const Heads*>{"q", &q}, {"k", &k}, {"v", &v}}) {
    std::vector<double> flat;
    for (const auto& x : *h) flat.insert(flat.end(), x.begin(), x.end());
    if (as_float) {
      std::vector<float> f32(flat.begin(), flat.end());
      fmattn::h5::write_dataset(f.id(), name, shape, f32.data());
    } else {
      fmattn::h5::write_dataset(f.id(), name, shape, flat.data());
    }
  }
  f.commit();
}

Heads read_output(const std::string& path, int heads, std::int64_t n, int d) {
  auto f = fmattn::h5::open_read(path);
  std::vector<double> flat(std::size_t(heads) * n * d);
  fmattn::h5::read_float_dataset(f, "output", {1, heads, n, d}, flat.data(), path);
  Heads h(heads);
  for (int a = 0; a < heads; ++a) h[a].assign(flat.begin() + a * n * d, flat.begin() + (a + 1) * n * d);
  return h;
}

TEST(RunDeck, Hdf5InputEveryOptionBothDtypes) {
  std::mt19937_64 rng(test_seed());
  const int heads = 2, d = 8, m = 8, p = 2;
  for (const char* dtype : {"float64", "float32"})
    for (const char* variant : {"causal", "bidirectional"})
      for (const char* ds : {"average", "learned"})
        for (bool cw : {true, false})
          for (const char* boundary : {"masked", "zero_sink"}) {
            const bool sink = std::string(boundary) == "zero_sink";
            if (sink && std::string(variant) != "causal") continue;
            const std::int64_t n = sink ? 256 : 203;  // zero_sink needs n = m·2^k
            SCOPED_TRACE(std::string(dtype) + " " + variant + " " + ds + " cw " + std::to_string(cw) + " " + boundary +
                         " seed " + std::to_string(test_seed()));
            const auto q = random_heads(rng, heads, n, d), k = random_heads(rng, heads, n, d),
                       v = random_heads(rng, heads, n, d);
            const std::string in = unique("run-in"), out = unique("run-out"), wfile = unique("run-w");
            write_qkv(in, q, k, v, n, d, std::string(dtype) == "float32");
            const bool learned = std::string(ds) == "learned";
            const auto geo = fmattn::make_geometry(
                n, m, p, std::string(variant) == "causal" ? fmattn::Variant::causal : fmattn::Variant::bidirectional);
            fmattn::DownsamplingWeights w;
            ref::Weights rw;
            if (learned) {
              random_weights(rng, geo, d, w, rw);
              fmattn::save_weights(wfile, w, "");
            }
            std::vector<std::string> set{"problem.batch=1",
                                         "problem.heads=" + std::to_string(heads),
                                         "problem.length=" + std::to_string(n),
                                         "problem.head_dim=" + std::to_string(d),
                                         std::string("problem.dtype=") + dtype,
                                         std::string("attention.variant=") + variant,
                                         "attention.block_size=" + std::to_string(m),
                                         "attention.rank=" + std::to_string(p),
                                         std::string("attention.downsampling=") + ds,
                                         std::string("attention.count_weighting=") + (cw ? "true" : "false"),
                                         std::string("attention.boundary=") + boundary,
                                         "input.source=hdf5",
                                         "input.file=" + in,
                                         "validation.sample_queries=16",
                                         "output.file=" + out};
            if (learned) set.push_back("weights.file=" + wfile);
            const fmattn::Deck deck = fmattn::parse_deck("", "test", set);
            fmattn::run_deck(
                deck, [](const std::string&) {}, MPI_COMM_SELF);

            ref::Params P = problem({n, m, p, d}, std::string(variant) == "causal", 1.0 / std::sqrt(double(d)));
            P.learned = learned;
            P.count_weighting = cw;
            P.zero_sink = sink;
            Heads qin = q, kin = k, vin = v;
            if (std::string(dtype) == "float32")  // the run saw float32-rounded inputs
              for (auto* h : {&qin, &kin, &vin})
                for (auto& x : *h)
                  for (auto& y : x) y = double(float(y));
            const auto want = run_reference<double>(P, qin, kin, vin, learned ? &rw : nullptr);
            const double tol = std::string(dtype) == "float64" ? 1e-10 : 1e-5;
            EXPECT_LT(rel_error(read_output(out, heads, n, d), want), tol);
            for (const auto& f : {in, out, wfile}) std::filesystem::remove(f);
          }
}

TEST(RunDeck, SampledErrorOfExactMethodIsRounding) {
  const std::string out = unique("run-exact");
  const fmattn::Deck deck =
      fmattn::parse_deck("", "test",
                         {"problem.length=300", "problem.heads=2", "problem.dtype=float64", "attention.method=exact",
                          "validation.sample_queries=32", "output.file=" + out});
  const auto s = fmattn::run_deck(
      deck, [](const std::string&) {}, MPI_COMM_SELF);
  EXPECT_LT(s.max_rel_error, 1e-12);
  std::filesystem::remove(out);
}

// diagnostics/timings: the upward pass is timed as a part of the attention phase for FMA on a
// whole sequence, and absent for exact attention (which has no coarse levels).
TEST(RunDeck, TimingsSplitTheAttentionPhase) {
  for (const char* method : {"fma", "exact"}) {
    const std::string out = unique("run-timings");
    const fmattn::Deck deck = fmattn::parse_deck(
        "", "test",
        {"problem.length=4096", "problem.heads=2", "problem.head_dim=16", "attention.block_size=16",
         std::string("attention.method=") + method, "validation.sample_queries=0", "output.file=" + out});
    fmattn::run_deck(
        deck, [](const std::string&) {}, MPI_COMM_SELF);
    auto f = fmattn::h5::open_read(out);
    fmattn::h5::Handle times(H5Gopen2(f.get(), "diagnostics/timings", H5P_DEFAULT), H5Gclose);
    const double attention = fmattn::h5::read_attr_double(times.get(), "attention", out);
    const double total = fmattn::h5::read_attr_double(times.get(), "total", out);
    EXPECT_GT(attention, 0.0);
    EXPECT_LE(attention, total);
    if (std::string(method) == "fma") {
      const double coarse = fmattn::h5::read_attr_double(times.get(), "coarse_levels", out);
      EXPECT_GT(coarse, 0.0);
      EXPECT_LT(coarse, attention);
    } else {
      EXPECT_EQ(H5Aexists(times.get(), "coarse_levels"), 0);
    }
    std::filesystem::remove(out);
  }
}

// Inputs inside the accepted range can still meet learned weights large enough to overflow
// float32: the run fails (exit 1) instead of writing NaN as results.
TEST(RunDeck, NonFiniteOutputIsNeverWritten) {
  const auto geo = fmattn::make_geometry(512, 16, 4, fmattn::Variant::causal);
  const std::string wfile = unique("run-huge-w"), out = unique("run-huge-out");
  fmattn::DownsamplingWeights w = fmattn::DownsamplingWeights::average(geo, 8);
  for (double& x : w.v_weight) x = 3e38;  // finite in float32, overflowing once summed over a cell
  fmattn::save_weights(wfile, w, "");
  const fmattn::Deck deck = fmattn::parse_deck(
      "", "test",
      {"problem.length=512", "problem.head_dim=8", "attention.block_size=16", "attention.rank=4",
       "attention.downsampling=learned", "weights.file=" + wfile, "input.synthetic.kind=smooth", "output.file=" + out});
  const testing_fp::NoTraps overflow_on_purpose;
  try {
    fmattn::run_deck(
        deck, [](const std::string&) {}, MPI_COMM_SELF);
    ADD_FAILURE() << "expected a failure";
  } catch (const fmattn::InputError& e) {
    ADD_FAILURE() << "not an input error: " << e.what();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite values"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(out));
  std::filesystem::remove(wfile);
}

TEST(RunDeck, WeightsOfAnotherGeometryAreRejected) {
  const auto geo = fmattn::make_geometry(512, 16, 4, fmattn::Variant::causal);
  const std::string wfile = unique("run-wrong-w");
  fmattn::save_weights(wfile, fmattn::DownsamplingWeights::average(geo, 8), "");
  const fmattn::Deck deck = fmattn::parse_deck(
      "", "test",
      {"problem.length=2048", "problem.head_dim=8", "attention.block_size=16", "attention.rank=4",
       "attention.downsampling=learned", "weights.file=" + wfile, "output.file=" + unique("unused")});
  try {
    fmattn::run_deck(
        deck, [](const std::string&) {}, MPI_COMM_SELF);
    FAIL() << "expected InputError";
  } catch (const fmattn::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("length"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(wfile), std::string::npos) << e.what();
  }
  std::filesystem::remove(wfile);
}

// The linear variant through a deck, with learned q, k, v weights from a file.
TEST(RunDeck, LinearVariantWithLearnedWeightsFile) {
  std::mt19937_64 rng(test_seed());
  const int heads = 1, d = 4, m = 8, p = 2;
  const std::int64_t n = 333;
  const auto q = random_heads(rng, heads, n, d), k = random_heads(rng, heads, n, d), v = random_heads(rng, heads, n, d);
  const std::string in = unique("lin-in"), out = unique("lin-out"), wfile = unique("lin-w");
  write_qkv(in, q, k, v, n, d, false);
  fmattn::DownsamplingWeights w;
  ref::Weights rw;
  random_weights(rng, fmattn::make_geometry(n, m, p, fmattn::Variant::bidirectional), d, w, rw);
  fmattn::save_weights(wfile, w, "");
  const fmattn::Deck deck =
      fmattn::parse_deck("", "test",
                         {"problem.heads=1", "problem.length=333", "problem.head_dim=4", "problem.dtype=float64",
                          "attention.variant=bidirectional", "attention.block_size=8", "attention.rank=2",
                          "attention.queries=coarse", "attention.downsampling=learned", "weights.file=" + wfile,
                          "input.source=hdf5", "input.file=" + in, "output.file=" + out});
  fmattn::run_deck(
      deck, [](const std::string&) {}, MPI_COMM_SELF);
  ref::Params P = problem({n, m, p, d}, false, 0.5);
  P.learned = true;
  P.coarse_queries = true;
  EXPECT_LT(rel_error(read_output(out, heads, n, d), run_reference<double>(P, q, k, v, &rw)), 1e-10);
  for (const auto& f : {in, out, wfile}) std::filesystem::remove(f);
}

// Learned coarse queries need downsampling/q: a file with only k and v is refused by name.
TEST(RunDeck, LinearLearnedNeedsQueryWeights) {
  const auto g = fmattn::make_geometry(256, 8, 2, fmattn::Variant::causal);
  const auto w = fmattn::DownsamplingWeights::average(g, 4);
  const std::string wfile = unique("noq-w");
  {
    fmattn::h5::NewFile f(wfile);
    for (const char* a : {"block_size", "rank", "head_dim", "length"})
      fmattn::h5::write_attr(f.id(), a, std::int64_t(a[0] == 'b' ? 8 : a[0] == 'r' ? 2 : a[0] == 'h' ? 4 : 256));
    fmattn::h5::Handle top = fmattn::h5::create_group(f.id(), "downsampling");
    for (const char* which : {"k", "v"}) {
      fmattn::h5::Handle grp = fmattn::h5::create_group(top, which);
      for (int l = 1; l <= g.L; ++l) {
        fmattn::h5::Handle lvl = fmattn::h5::create_group(grp, "level_0" + std::to_string(l));
        fmattn::h5::write_dataset(lvl, "weight", {g.p, g.cell_size(l), 4}, w.k_weight.data() + g.weight_offset(l, 4));
        fmattn::h5::write_dataset(lvl, "bias", {g.p, 4}, w.k_bias.data() + (l - 1) * g.p * 4);
      }
    }
    f.commit();
  }
  EXPECT_NO_THROW(fmattn::load_weights(wfile, g, 4, false));
  try {
    fmattn::load_weights(wfile, g, 4, true);
    FAIL() << "expected InputError";
  } catch (const fmattn::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("downsampling/q"), std::string::npos) << e.what();
  }
  std::filesystem::remove(wfile);
}

}  // namespace
