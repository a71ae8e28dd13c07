// The input deck (README, "Input decks"): defaults, every key round-tripping through to_yaml, and
// each class of bad deck rejected with an InputError that names the key path and, for files,
// file:line:column, so that a typo never silently falls back to a default.
#include <fmattn/io/deck.hpp>
#include <fmattn/util/errors.hpp>

#include "temp_path.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

namespace {

// Test suites are lower-case "deck" so that `ctest -R deck` selects them.
using fmattn::Deck;
using fmattn::InputError;

using testing_files::TempPath;
using testing_files::unique_name;

::testing::AssertionResult Matches(const std::string& text, const std::string& regex) {
  if (std::regex_search(text, std::regex(regex))) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not match /" << regex << "/";
}

// The message of the InputError that parsing `text` throws; a test failure when it throws nothing.
std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    fmattn::parse_deck(text, "text.yaml", overrides);
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no InputError for deck:\n" << text;
  return "";
}

// The same through a file, as the CLI reads decks. The file's unique name is replaced by "DECK"
// in the returned message so that expectations can spell it.
std::string file_error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  TempPath f("bad.yaml", text);
  try {
    fmattn::load_deck(f.path(), overrides);
  } catch (const InputError& e) {
    std::string msg = e.what();
    for (auto at = msg.find(f.path()); at != std::string::npos; at = msg.find(f.path()))
      msg.replace(at, f.path().size(), "DECK");
    return msg;
  }
  ADD_FAILURE() << "no InputError for deck file:\n" << text;
  return "";
}

// Regex-escapes text for use in an expected message.
std::string escaped(const std::string& s) {
  return std::regex_replace(s, std::regex(R"([.^$|()\[\]{}*+?\\-])"), R"(\$&)");
}

void expect_same(const Deck& a, const Deck& b) {
  EXPECT_EQ(a.run.name, b.run.name);
  EXPECT_EQ(a.run.seed, b.run.seed);
  EXPECT_EQ(a.problem.batch, b.problem.batch);
  EXPECT_EQ(a.problem.heads, b.problem.heads);
  EXPECT_EQ(a.problem.length, b.problem.length);
  EXPECT_EQ(a.problem.head_dim, b.problem.head_dim);
  EXPECT_EQ(a.problem.dtype, b.problem.dtype);
  EXPECT_EQ(a.attention.method, b.attention.method);
  EXPECT_EQ(a.attention.variant, b.attention.variant);
  EXPECT_EQ(a.attention.block_size, b.attention.block_size);
  EXPECT_EQ(a.attention.rank, b.attention.rank);
  EXPECT_EQ(a.attention.downsampling, b.attention.downsampling);
  EXPECT_EQ(a.attention.count_weighting, b.attention.count_weighting);
  EXPECT_EQ(a.attention.boundary, b.attention.boundary);
  EXPECT_EQ(a.attention.queries, b.attention.queries);
  EXPECT_EQ(a.attention.scale, b.attention.scale);  // exact: to_yaml prints 17 digits
  EXPECT_EQ(a.input.source, b.input.source);
  EXPECT_EQ(a.input.file, b.input.file);
  EXPECT_EQ(a.input.synthetic.kind, b.input.synthetic.kind);
  EXPECT_EQ(a.input.synthetic.span, b.input.synthetic.span);
  EXPECT_EQ(a.input.synthetic.amplitude, b.input.synthetic.amplitude);
  EXPECT_EQ(a.weights.file, b.weights.file);
  EXPECT_EQ(a.validation.sample_queries, b.validation.sample_queries);
  EXPECT_EQ(a.resolved_output_file(), b.resolved_output_file());
  EXPECT_EQ(a.output.write_output, b.output.write_output);
  EXPECT_EQ(a.fit.steps, b.fit.steps);
  EXPECT_EQ(a.fit.learning_rate, b.fit.learning_rate);
  EXPECT_EQ(a.fit.sample_queries, b.fit.sample_queries);
  EXPECT_EQ(a.fit.checkpoint_every, b.fit.checkpoint_every);
  EXPECT_EQ(a.fit.checkpoint_file, b.fit.checkpoint_file);
  EXPECT_EQ(a.fit.restart_from, b.fit.restart_from);
  // Catches keys added to Deck later but forgotten above.
  EXPECT_EQ(fmattn::to_yaml(a), fmattn::to_yaml(b));
}

// to_yaml → parse_deck must give the same deck back.
void expect_round_trip(const Deck& deck) {
  const std::string yaml = fmattn::to_yaml(deck);
  Deck again;
  try {
    again = fmattn::parse_deck(yaml, "to_yaml");
  } catch (const InputError& e) {
    FAIL() << "to_yaml output does not parse: " << e.what() << "\n" << yaml;
  }
  SCOPED_TRACE(yaml);
  expect_same(deck, again);
}

TEST(deck, EmptyDeckHasTheDocumentedDefaults) {
  const Deck d = fmattn::parse_deck("", "empty.yaml");
  EXPECT_EQ(d.run.name, "quickstart");
  EXPECT_EQ(d.run.seed, 1234u);
  EXPECT_EQ(d.problem.batch, 1);
  EXPECT_EQ(d.problem.heads, 4);
  EXPECT_EQ(d.problem.length, 1048576);
  EXPECT_EQ(d.problem.head_dim, 64);
  EXPECT_EQ(d.problem.dtype, fmattn::Dtype::float32);
  EXPECT_EQ(d.attention.method, fmattn::Method::fma);
  EXPECT_EQ(d.attention.variant, fmattn::Variant::causal);
  EXPECT_EQ(d.attention.block_size, 64);
  EXPECT_EQ(d.attention.rank, 4);
  EXPECT_EQ(d.attention.downsampling, fmattn::Downsampling::average);
  EXPECT_TRUE(d.attention.count_weighting);
  EXPECT_EQ(d.attention.boundary, fmattn::Boundary::masked);
  EXPECT_EQ(d.attention.queries, fmattn::Queries::fine);
  EXPECT_EQ(d.attention.scale, 0.0);  // auto
  EXPECT_DOUBLE_EQ(d.resolved_scale(), 0.125);
  EXPECT_EQ(d.input.source, fmattn::Source::synthetic);
  EXPECT_EQ(d.input.file, "");
  EXPECT_EQ(d.input.synthetic.kind, fmattn::SyntheticKind::smooth);
  EXPECT_EQ(d.weights.file, "");
  EXPECT_EQ(d.validation.sample_queries, 64);
  EXPECT_EQ(d.resolved_output_file(), "results/quickstart.h5");
  EXPECT_TRUE(d.output.write_output);
  EXPECT_EQ(d.fit.steps, 200);
  EXPECT_EQ(d.fit.learning_rate, 0.001);
  EXPECT_EQ(d.fit.sample_queries, 1024);
  EXPECT_EQ(d.fit.checkpoint_every, 50);
  EXPECT_EQ(d.fit.checkpoint_file, "results/fit.h5");
  EXPECT_EQ(d.fit.restart_from, "");

  // Empty sections and comments alone are the same as nothing.
  expect_same(d, fmattn::parse_deck("# nothing\nrun:\nproblem: {}\n", "sections.yaml"));
  expect_same(d, Deck());
  expect_round_trip(d);
  // The default output file follows run.name.
  EXPECT_EQ(fmattn::parse_deck("run: {name: my-run_2.b}", "t.yaml").resolved_output_file(), "results/my-run_2.b.h5");
}

TEST(deck, QuickstartDeckLoads) {
  // gtest_discover_tests may not pass FMATTN_SOURCE_DIR through; this file's path is a fallback.
  const char* env = std::getenv("FMATTN_SOURCE_DIR");
  const std::string src = env ? env : std::filesystem::path(__FILE__).parent_path().parent_path().string();
  const Deck d = fmattn::load_deck(src + "/inputs/quickstart.yaml");
  EXPECT_EQ(d.run.name, "quickstart");
  EXPECT_EQ(d.problem.length, 65536);
  EXPECT_EQ(d.input.synthetic.kind, fmattn::SyntheticKind::smooth);
  EXPECT_EQ(d.validation.sample_queries, 64);
  expect_round_trip(d);
}

// Every key set away from its default; fma-only options (zero_sink, coarse queries) here.
TEST(deck, EveryKeyRoundTrips) {
  TempPath input("q.h5", ""), weights("w.h5", "");  // parse_deck checks that they can be opened
  const std::string text =
      "run: {name: round-trip_1.x, seed: 98765}\n"
      "problem: {batch: 3, heads: 5, length: 4096, head_dim: 48, dtype: float64}\n"
      "attention:\n"
      "  method: fma\n"
      "  variant: causal\n"
      "  block_size: 32\n"
      "  rank: 8\n"
      "  downsampling: learned\n"
      "  count_weighting: false\n"
      "  boundary: zero_sink\n"
      "  queries: coarse\n"
      "  scale: 0.1\n"
      "input:\n"
      "  source: hdf5\n"
      "  file: " +
      input.path() +
      "\n"
      "  synthetic: {kind: piecewise_constant, span: 16, amplitude: 2.5}\n"
      "weights: {file: " +
      weights.path() +
      "}\n"
      "validation: {sample_queries: 7}\n"
      "output: {file: 'out dir/x: y.h5', write_output: false}\n"
      "fit:\n"
      "  steps: 11\n"
      "  learning_rate: 1.2345678901234567e-7\n"
      "  sample_queries: 33\n"
      "  checkpoint_every: 3\n"
      "  checkpoint_file: ck.h5\n"
      "  restart_from: \"r #1.h5\"\n";
  const Deck d = fmattn::parse_deck(text, "all.yaml");
  EXPECT_EQ(d.run.name, "round-trip_1.x");
  EXPECT_EQ(d.run.seed, 98765u);
  EXPECT_EQ(d.problem.batch, 3);
  EXPECT_EQ(d.problem.heads, 5);
  EXPECT_EQ(d.problem.length, 4096);
  EXPECT_EQ(d.problem.head_dim, 48);
  EXPECT_EQ(d.problem.dtype, fmattn::Dtype::float64);
  EXPECT_EQ(d.attention.block_size, 32);
  EXPECT_EQ(d.attention.rank, 8);
  EXPECT_EQ(d.attention.downsampling, fmattn::Downsampling::learned);
  EXPECT_FALSE(d.attention.count_weighting);
  EXPECT_EQ(d.attention.boundary, fmattn::Boundary::zero_sink);
  EXPECT_EQ(d.attention.queries, fmattn::Queries::coarse);
  EXPECT_EQ(d.attention.scale, 0.1);
  EXPECT_EQ(d.input.source, fmattn::Source::hdf5);
  EXPECT_EQ(d.input.file, input.path());
  EXPECT_EQ(d.input.synthetic.kind, fmattn::SyntheticKind::piecewise_constant);
  EXPECT_EQ(d.input.synthetic.span, 16);
  EXPECT_EQ(d.input.synthetic.amplitude, 2.5);
  EXPECT_EQ(d.weights.file, weights.path());
  EXPECT_EQ(d.validation.sample_queries, 7);
  EXPECT_EQ(d.output.file, "out dir/x: y.h5");
  EXPECT_FALSE(d.output.write_output);
  EXPECT_EQ(d.fit.steps, 11);
  EXPECT_EQ(d.fit.learning_rate, 1.2345678901234567e-7);
  EXPECT_EQ(d.fit.sample_queries, 33);
  EXPECT_EQ(d.fit.checkpoint_every, 3);
  EXPECT_EQ(d.fit.checkpoint_file, "ck.h5");
  EXPECT_EQ(d.fit.restart_from, "r #1.h5");
  expect_round_trip(d);
  {  // the enum values the fma deck above cannot combine with: exact, bidirectional, smooth
    const Deck e = fmattn::parse_deck(
        "problem: {length: 1, head_dim: 1024}\n"
        "attention: {method: exact, variant: bidirectional, block_size: 1, rank: 1, scale: auto}\n"
        "input: {synthetic: {kind: smooth, span: auto}}\n"
        "validation: {sample_queries: 0}\n",
        "exact.yaml");
    EXPECT_EQ(e.attention.method, fmattn::Method::exact);
    EXPECT_EQ(e.attention.variant, fmattn::Variant::bidirectional);
    EXPECT_EQ(e.input.synthetic.kind, fmattn::SyntheticKind::smooth);
    EXPECT_EQ(e.input.synthetic.span, 0);
    EXPECT_EQ(e.validation.sample_queries, 0);
    EXPECT_DOUBLE_EQ(e.resolved_scale(), 1.0 / 32.0);
    expect_round_trip(e);
  }
}

TEST(deck, ScaleIsAutoOrAPositiveNumber) {
  const Deck a = fmattn::parse_deck("problem: {head_dim: 16}\nattention: {scale: auto}", "t.yaml");
  EXPECT_EQ(a.attention.scale, 0.0);
  EXPECT_DOUBLE_EQ(a.resolved_scale(), 0.25);
  const Deck n = fmattn::parse_deck("problem: {head_dim: 16}\nattention: {scale: 0.5}", "t.yaml");
  EXPECT_EQ(n.attention.scale, 0.5);
  EXPECT_EQ(n.resolved_scale(), 0.5);
  const Deck i = fmattn::parse_deck("attention: {scale: 2}", "t.yaml");
  EXPECT_EQ(i.resolved_scale(), 2.0);
  for (const char* bad : {"-1", "0", "big", ".nan", ".inf", "[1]"}) {
    SCOPED_TRACE(bad);
    const std::string msg = error_of(std::string("attention: {scale: ") + bad + "}");
    EXPECT_TRUE(Matches(msg, R"(^text\.yaml:1:\d+: attention\.scale: expected 'auto' or a positive number)"));
  }
}

TEST(deck, UnknownKeysAndSectionsAreErrors) {
  EXPECT_TRUE(
      Matches(error_of("attention: {blok_size: 64}"), R"(^text\.yaml:1:13: attention\.blok_size: unknown key)"));
  // The message lists the allowed keys so that the fix is obvious.
  EXPECT_TRUE(Matches(error_of("attention: {blok_size: 64}"), R"(block_size)"));
  const std::string msg = file_error_of("run:\n  name: a\nproblem:\n  heads: 2\n  lenght: 100\n");
  EXPECT_TRUE(Matches(msg, R"(^DECK:5:3: problem\.lenght: unknown key)"));
  EXPECT_TRUE(Matches(error_of("input: {synthetic: {knd: smooth}}"), R"(input\.synthetic\.knd: unknown key)"));
  {  // unknown sections
    const std::string msg = file_error_of("run: {name: a}\natention:\n  block_size: 64\n");
    EXPECT_TRUE(Matches(msg, R"(^DECK:2:1: atention: unknown section)"));
    EXPECT_TRUE(Matches(error_of("attention.block_size: 64"), R"(attention\.block_size: unknown section)"));
  }
}

// Decks that YAML reads as something other than what the user wrote: a quote left open (which
// would swallow the keys after it), a second document, a deck that is not a mapping, a folder.
TEST(deck, MisshapenDecksAreErrorsWithTheirPosition) {
  EXPECT_TRUE(Matches(file_error_of("run:\n  name: \"quick\nproblem:\n  length: 100\n"),
                      R"(^DECK:2:9: unclosed quote: a quoted value must end on the line where it starts)"));
  EXPECT_TRUE(Matches(error_of("run: {name: a}\noutput:\n  file: 'out.h5\n"), R"(^text\.yaml:3:9: unclosed quote)"));
  EXPECT_TRUE(Matches(error_of("run: {name: a}", {"output.file=\"x.h5"}), R"(--set output\.file="x\.h5)"));
  // Quotes that close, with escaped quotes inside, are fine.
  EXPECT_EQ(fmattn::parse_deck("output: {file: 'it''s \"1\".h5'}\n", "ok", {}).output.file, "it's \"1\".h5");
  EXPECT_EQ(fmattn::parse_deck("output: {file: \"a\\\"b.h5\"}\n", "ok", {}).output.file, "a\"b.h5");
  EXPECT_TRUE(Matches(file_error_of("run:\n  name: a\n---\nproblem:\n  length: 5\n"),
                      R"(^DECK:4:1: a deck is one YAML document; this one holds 2)"));
  EXPECT_TRUE(Matches(file_error_of("- run\n- problem\n"), R"(^DECK:1:1: expected a mapping of sections .*sequence)"));
  EXPECT_TRUE(Matches(file_error_of("42\n"), R"(^DECK:1:1: expected a mapping of sections .*single value)"));
  TempPath folder("deck.yaml");
  std::filesystem::create_directory(folder.path());
  try {
    fmattn::load_deck(folder.path(), {});
    ADD_FAILURE() << "a folder is not a deck";
  } catch (const InputError& e) {
    EXPECT_TRUE(Matches(e.what(), "is a directory, not a deck file"));
  }
  // What stays accepted, as the README says: an empty deck (all defaults) and a byte-order mark.
  EXPECT_EQ(fmattn::parse_deck("", "empty", {}).run.name, "quickstart");
  EXPECT_EQ(fmattn::parse_deck("\xEF\xBB\xBFrun: {name: \"bom\"}\n", "bom", {}).run.name, "bom");
}

TEST(deck, WrongTypeIsAnError) {
  // A string for an integer.
  EXPECT_TRUE(Matches(file_error_of("problem:\n  length: long\n"),
                      R"(^DECK:2:11: problem\.length: expected an integer >= 1, got 'long')"));
  // A mapping or a sequence for a scalar.
  EXPECT_TRUE(Matches(file_error_of("attention:\n  rank: {a: 1}\n"),
                      R"(^DECK:2:9: attention\.rank: expected .*, got a mapping)"));
  EXPECT_TRUE(Matches(error_of("problem: {heads: [1, 2]}"), R"(problem\.heads: expected .*, got a sequence)"));
  // A real for an integer.
  EXPECT_TRUE(Matches(error_of("problem: {heads: 1.5}"), R"(problem\.heads: expected an integer >= 1, got '1\.5')"));
  EXPECT_TRUE(
      Matches(error_of("problem:\n  batch: 1e3\n"), R"(^text\.yaml:2:10: problem\.batch: expected an integer)"));
  EXPECT_TRUE(Matches(error_of("attention: {count_weighting: maybe}"),
                      R"(attention\.count_weighting: expected true or false)"));
  EXPECT_TRUE(
      Matches(error_of("problem: {dtype: 32}"), R"(problem\.dtype: expected one of float32 \| float64, got '32')"));
  // A scalar or a sequence where a section is expected.
  EXPECT_TRUE(Matches(error_of("attention: 64"), R"(^text\.yaml:1:12: attention: expected a mapping)"));
  EXPECT_TRUE(Matches(error_of("input: {synthetic: smooth}"), R"(input\.synthetic: expected a mapping)"));
  // A value left empty names the key (whatever it says it got).
  EXPECT_TRUE(
      Matches(error_of("attention:\n  block_size:\n"), R"(^text\.yaml:\d+:\d+: attention\.block_size: expected)"));
  EXPECT_TRUE(Matches(error_of("- run\n- problem\n"), R"(^text\.yaml:1:1: expected a mapping)"));
}

TEST(deck, IntegerRangesAreChecked) {
  EXPECT_TRUE(Matches(error_of("problem: {length: 0}"), R"(problem\.length: expected an integer >= 1, got 0)"));
  EXPECT_TRUE(Matches(error_of("problem: {length: -5}"), R"(problem\.length: expected an integer >= 1, got -5)"));
  EXPECT_TRUE(Matches(error_of("problem: {heads: 0}"), R"(problem\.heads: expected an integer >= 1)"));
  EXPECT_TRUE(Matches(error_of("problem: {batch: -1}"), R"(problem\.batch: expected an integer >= 1)"));
  EXPECT_TRUE(
      Matches(error_of("problem: {head_dim: 1025}"), R"(problem\.head_dim: expected an integer between 1 and 1024)"));
  EXPECT_TRUE(Matches(error_of("problem: {length: 99999999999999999999}"), R"(problem\.length: expected an integer)"));
  EXPECT_TRUE(Matches(error_of("run: {seed: -1}"), R"(run\.seed: expected an integer >= 0)"));
  EXPECT_TRUE(
      Matches(error_of("validation: {sample_queries: -1}"), R"(validation\.sample_queries: expected an integer >= 0)"));
  EXPECT_TRUE(Matches(error_of("fit: {steps: 0}"), R"(fit\.steps: expected an integer >= 1)"));
  EXPECT_TRUE(Matches(error_of("fit: {learning_rate: 0}"), R"(fit\.learning_rate: expected a positive number)"));
  EXPECT_TRUE(Matches(error_of("input: {synthetic: {span: 0}}"),
                      R"(input\.synthetic\.span: expected 'auto' or an integer >= 1)"));
  EXPECT_TRUE(Matches(error_of("input: {synthetic: {amplitude: -2}}"),
                      R"(input\.synthetic\.amplitude: expected a positive number)"));
  EXPECT_TRUE(Matches(error_of("run: {name: 'a b'}"), R"(run\.name: expected a non-empty name)"));
  EXPECT_TRUE(Matches(error_of("problem: {batch: 1000000, heads: 1000000, length: 1000000, head_dim: 1024}"),
                      R"(problem\.length: .*too large)"));
  // Any length >= 1 is fine, ragged or not.
  EXPECT_EQ(fmattn::parse_deck("problem: {length: 1}", "t.yaml").problem.length, 1);
  EXPECT_EQ(fmattn::parse_deck("problem: {length: 1001}", "t.yaml").problem.length, 1001);
}

TEST(deck, BlockSizeAndRankArePowersOfTwo) {
  EXPECT_TRUE(Matches(file_error_of("attention:\n  block_size: 48\n"),
                      R"(^DECK:2:15: attention\.block_size: expected a power of two, got 48)"));
  EXPECT_TRUE(Matches(error_of("attention: {rank: 3}"),
                      R"(^text\.yaml:1:19: attention\.rank: expected a power of two, got 3)"));
  EXPECT_TRUE(Matches(error_of("attention: {block_size: 0}"), R"(attention\.block_size: expected a power of two)"));
  EXPECT_TRUE(Matches(error_of("attention: {block_size: -64}"), R"(attention\.block_size: expected a power of two)"));
  // rank > block_size names the rank, where the deck sets it.
  EXPECT_TRUE(Matches(file_error_of("attention:\n  block_size: 4\n  rank: 8\n"),
                      R"(^DECK:3:9: attention\.rank: expected rank <= block_size \(4\), got 8)"));
  // ... and also when the rank is the default.
  EXPECT_TRUE(
      Matches(error_of("attention: {block_size: 2}"), R"(attention\.rank: expected rank <= block_size \(2\), got 4)"));
  const Deck equal = fmattn::parse_deck("attention: {block_size: 8, rank: 8}", "t.yaml");
  EXPECT_EQ(equal.attention.rank, 8);
}

TEST(deck, BadEnumValueListsTheChoices) {
  EXPECT_TRUE(Matches(file_error_of("attention:\n  variant: sideways\n"),
                      R"(^DECK:2:12: attention\.variant: expected one of causal \| bidirectional, got 'sideways')"));
  EXPECT_TRUE(Matches(error_of("attention: {method: fast}"), R"(attention\.method: expected one of fma \| exact)"));
  EXPECT_TRUE(Matches(error_of("attention: {downsampling: max}"),
                      R"(attention\.downsampling: expected one of average \| learned)"));
  EXPECT_TRUE(
      Matches(error_of("attention: {boundary: open}"), R"(attention\.boundary: expected one of masked \| zero_sink)"));
  EXPECT_TRUE(
      Matches(error_of("attention: {queries: medium}"), R"(attention\.queries: expected one of fine \| coarse)"));
  EXPECT_TRUE(Matches(error_of("input: {source: csv}"), R"(input\.source: expected one of synthetic \| hdf5)"));
  EXPECT_TRUE(
      Matches(error_of("input: {synthetic: {kind: noise}}"), R"(input\.synthetic\.kind: expected one of gaussian)"));
  // Case matters: the names are fixed.
  EXPECT_TRUE(Matches(error_of("attention: {variant: Causal}"), R"(attention\.variant: expected one of)"));
}

TEST(deck, ZeroSinkNeedsCausalFmaAndLengthBlockTimesPowerOfTwo) {
  EXPECT_TRUE(
      Matches(file_error_of("problem: {length: 4096}\nattention:\n  variant: bidirectional\n  boundary: zero_sink\n"),
              R"(^DECK:4:13: attention\.boundary: zero_sink needs variant causal)"));
  EXPECT_TRUE(Matches(error_of("problem: {length: 4096}\nattention: {method: exact, boundary: zero_sink}"),
                      R"(attention\.boundary: zero_sink applies to method fma)"));
  EXPECT_TRUE(Matches(
      error_of("problem: {length: 300}\nattention: {boundary: zero_sink}"),
      R"(^text\.yaml:2:23: attention\.boundary: zero_sink needs problem\.length = block_size \* 2\^k, got length 300)"));
  EXPECT_TRUE(Matches(error_of("problem: {length: 192}\nattention: {boundary: zero_sink}"),
                      R"(attention\.boundary: zero_sink needs problem\.length)"));
  EXPECT_TRUE(Matches(error_of("problem: {length: 32}\nattention: {boundary: zero_sink}"),
                      R"(attention\.boundary: zero_sink needs problem\.length)"));
  for (const char* ok : {"64", "128", "65536"}) {
    SCOPED_TRACE(ok);
    const Deck d =
        fmattn::parse_deck(std::string("problem: {length: ") + ok + "}\nattention: {boundary: zero_sink}", "t.yaml");
    EXPECT_EQ(d.attention.boundary, fmattn::Boundary::zero_sink);
  }
  EXPECT_TRUE(Matches(error_of("attention: {method: exact, queries: coarse}"),
                      R"(attention\.queries: coarse queries need method fma)"));
}

// Every rule between keys, both sides: what it refuses and what it lets through.
TEST(deck, EveryCrossKeyRuleHasBothSides) {
  // rank <= block_size
  EXPECT_TRUE(
      Matches(error_of("attention: {block_size: 8, rank: 16}"), R"(attention\.rank: expected rank <= block_size)"));
  EXPECT_EQ(fmattn::parse_deck("attention: {block_size: 8, rank: 8}", "t.yaml").attention.rank, 8);
  // coarse queries need method fma
  EXPECT_TRUE(Matches(error_of("attention: {method: exact, queries: coarse}"), R"(coarse queries need method fma)"));
  EXPECT_EQ(fmattn::parse_deck("attention: {method: fma, queries: coarse}", "t.yaml").attention.queries,
            fmattn::Queries::coarse);
  // sequence sharding needs method fma or local and queries fine; heads takes anything
  EXPECT_TRUE(Matches(error_of("parallel: {decomposition: sequence}\nattention: {queries: coarse}"),
                      R"(^text\.yaml:1:\d+: parallel\.decomposition: sequence sharding supports methods fma and local )"
                      R"(with queries fine)"));
  EXPECT_TRUE(
      Matches(error_of("parallel: {decomposition: sequence}\nattention: {method: exact}"),
              R"(parallel\.decomposition: sequence sharding supports methods fma and local with queries fine)"));
  EXPECT_EQ(fmattn::parse_deck("parallel: {decomposition: sequence}\nattention: {method: local}", "t.yaml")
                .parallel.decomposition,
            fmattn::Decomposition::sequence);
  EXPECT_EQ(fmattn::parse_deck("parallel: {decomposition: sequence}", "t.yaml").parallel.decomposition,
            fmattn::Decomposition::sequence);
  for (const char* other : {"attention: {queries: coarse}", "attention: {method: exact}"}) {
    const Deck d = fmattn::parse_deck(std::string("parallel: {decomposition: heads}\n") + other, "t.yaml");
    EXPECT_EQ(d.parallel.decomposition, fmattn::Decomposition::heads) << other;
    EXPECT_EQ(fmattn::parse_deck(other, "t.yaml").resolved_decomposition(), fmattn::Decomposition::heads) << other;
  }
  EXPECT_EQ(fmattn::parse_deck("", "t.yaml").resolved_decomposition(), fmattn::Decomposition::sequence);
  // element counts beyond 2^60 are impossible; 2^60 itself is a size, not a deck error
  EXPECT_TRUE(Matches(error_of("problem: {batch: 1024, heads: 1024, length: 1099511627776, head_dim: 2}"),
                      R"(problem\.length: batch \* heads \* length \* head_dim = .* is too large)"));
  EXPECT_EQ(fmattn::parse_deck("problem: {batch: 1024, heads: 1024, length: 1099511627776, head_dim: 1}", "t.yaml")
                .problem.length,
            std::int64_t(1) << 40);
}

TEST(deck, InputAndWeightsFilesAreChecked) {
  EXPECT_TRUE(Matches(file_error_of("input:\n  source: hdf5\n"), R"(^DECK: input\.file: .*no file)"));
  EXPECT_TRUE(Matches(error_of("input: {source: hdf5, file: ''}"), R"(^text\.yaml:1:\d+: input\.file: .*no file)"));
  EXPECT_TRUE(Matches(file_error_of("input:\n  source: hdf5\n  file: /nonexistent/q.h5\n"),
                      R"(^DECK:3:9: input\.file: cannot open '/nonexistent/q\.h5')"));
  // A file is not looked at while the source is synthetic.
  EXPECT_EQ(fmattn::parse_deck("input: {file: /nonexistent/q.h5}", "t.yaml").input.file, "/nonexistent/q.h5");
  TempPath exists("q.h5", "");
  EXPECT_EQ(fmattn::parse_deck("input: {source: hdf5, file: " + exists.path() + "}", "t.yaml").input.file,
            exists.path());
  {  // weights.file needs learned downsampling
    TempPath w("w.h5", "");
    EXPECT_TRUE(Matches(file_error_of("weights:\n  file: " + w.path() + "\n"),
                        R"(^DECK:2:9: weights\.file: weights are only used with attention\.downsampling: learned)"));
    EXPECT_TRUE(Matches(error_of("attention: {downsampling: learned}\nweights: {file: /nonexistent/w.h5}"),
                        R"(weights\.file: cannot open '/nonexistent/w\.h5')"));
    const Deck d =
        fmattn::parse_deck("attention: {downsampling: learned}\nweights: {file: " + w.path() + "}", "t.yaml");
    EXPECT_EQ(d.weights.file, w.path());
    // Learned downsampling without a file is allowed (it starts from the average operator).
    EXPECT_EQ(fmattn::parse_deck("attention: {downsampling: learned}", "t.yaml").attention.downsampling,
              fmattn::Downsampling::learned);
  }
}

TEST(deck, UnreadableDecksAreNamed) {
  EXPECT_TRUE(Matches(file_error_of("attention: {block_size: 64\n"), R"(^DECK:\d+:\d+: YAML syntax error)"));
  EXPECT_TRUE(Matches(file_error_of("run:\n  name: a\n   seed: 1\n"), R"(^DECK:3:\d+: YAML syntax error)"));
  EXPECT_TRUE(Matches(error_of("problem: [1, 2\nattention: {}\n"), R"(^text\.yaml:\d+:\d+: YAML syntax error)"));
  EXPECT_TRUE(Matches(error_of("run: {name: a}}\n"), R"(^text\.yaml:1:\d+: YAML syntax error)"));
  EXPECT_TRUE(Matches(error_of("run:\n  name: a\n  seed: 1: 2\n"), R"(^text\.yaml:3:\d+: YAML syntax error)"));
  {  // a missing deck file is named
    const std::string path = unique_name("missing.yaml");
    try {
      fmattn::load_deck(path);
      FAIL() << "no InputError";
    } catch (const InputError& e) {
      EXPECT_TRUE(Matches(e.what(), "^" + escaped(path) + ": cannot open"));
    }
  }
}

TEST(deck, SetOverridesAreAppliedTypedAndNested) {
  TempPath deck("deck.yaml", "problem:\n  length: 1000\n  heads: 2\nattention:\n  block_size: 32\n");
  const Deck d =
      fmattn::load_deck(deck.path(), {"problem.length=4096", "attention.count_weighting=false", "attention.scale=0.5",
                                      "run.name=123", "problem.dtype = float64", "attention.block_size=16"});
  EXPECT_EQ(d.problem.length, 4096);
  EXPECT_EQ(d.problem.heads, 2);  // untouched keys stay as in the file
  EXPECT_FALSE(d.attention.count_weighting);
  EXPECT_EQ(d.attention.scale, 0.5);
  EXPECT_EQ(d.run.name, "123");
  EXPECT_EQ(d.problem.dtype, fmattn::Dtype::float64);
  EXPECT_EQ(d.attention.block_size, 16);
  // The last of several overrides of one key wins.
  EXPECT_EQ(fmattn::parse_deck("", "t.yaml", {"problem.heads=3", "problem.heads=5"}).problem.heads, 5);
  // Strings with '=' and spaces survive.
  EXPECT_EQ(fmattn::parse_deck("", "t.yaml", {"output.file=a=b c.h5"}).output.file, "a=b c.h5");
  EXPECT_EQ(fmattn::parse_deck("", "t.yaml", {"input.file="}).input.file, "");
  {  // --set creates nested sections
    const Deck d =
        fmattn::parse_deck("", "t.yaml", {"input.synthetic.kind=piecewise_constant", "input.synthetic.span=8"});
    EXPECT_EQ(d.input.synthetic.kind, fmattn::SyntheticKind::piecewise_constant);
    EXPECT_EQ(d.input.synthetic.span, 8);
    // Into an existing nested section without losing its other keys.
    const Deck e =
        fmattn::parse_deck("input:\n  synthetic:\n    amplitude: 3\n", "t.yaml", {"input.synthetic.kind=smooth"});
    EXPECT_EQ(e.input.synthetic.kind, fmattn::SyntheticKind::smooth);
    EXPECT_EQ(e.input.synthetic.amplitude, 3.0);
  }
}

TEST(deck, BadSetIsNamedAsSuch) {
  for (const char* bad : {"foo", "=1", "attention=1", "attention.=1", ".block_size=1", "attention..rank=2"}) {
    SCOPED_TRACE(bad);
    EXPECT_TRUE(Matches(error_of("", {bad}), "^--set " + escaped(bad) + ": expected section\\.key=value"));
  }
  // Errors in a --set value point at the option, not at a line of the deck.
  EXPECT_TRUE(Matches(error_of("", {"attention.nope=1"}), R"(^--set attention\.nope: unknown key)"));
  EXPECT_TRUE(Matches(error_of("attention: {block_size: 64}", {"attention.block_size=48"}),
                      R"(^--set attention\.block_size: expected a power of two, got 48)"));
  EXPECT_TRUE(Matches(error_of("", {"problem.length=long"}), R"(^--set problem\.length: expected an integer)"));
  EXPECT_TRUE(Matches(error_of("", {"attention.variant=sideways"}), R"(^--set attention\.variant: .*got 'sideways')"));
  EXPECT_TRUE(Matches(error_of("", {"attention.rank=[1"}), R"(^--set attention\.rank=\[1: cannot parse the value)"));
  // Through a file too: the file's line must not be blamed.
  EXPECT_TRUE(Matches(file_error_of("problem:\n  heads: 2\n", {"problem.heads=0"}),
                      R"(^--set problem\.heads: expected an integer >= 1, got 0)"));
}

// Non-scalar mapping keys are reported as bad input like any other typo.
TEST(deck, NonScalarKeyIsAnInputError) {
  EXPECT_TRUE(Matches(error_of("attention:\n  ? [a, b]\n  : 1\n"), R"(^text\.yaml:2:\d+: attention)"));
  EXPECT_TRUE(Matches(error_of("? {a: 1}\n: 1\n"), R"(^text\.yaml:1:\d+:)"));
}

// Typos that YAML would otherwise accept silently.
TEST(deck, DuplicateOctalAndEmptyValuesAreErrors) {
  EXPECT_TRUE(Matches(error_of("attention:\n  block_size: 64\n  block_size: 32\n"),
                      R"(^text\.yaml:3:3: attention\.block_size: duplicate key)"));
  EXPECT_TRUE(Matches(error_of("attention:\n  block_size: 010\n"), R"(attention\.block_size: .*'010'.*decimal)"));
  EXPECT_TRUE(Matches(error_of("attention:\n  block_size: 0x40\n"), R"(attention\.block_size: .*'0x40')"));
  EXPECT_TRUE(Matches(error_of("attention:\n  block_size:\n  rank: 2\n"),
                      R"(^text\.yaml:2:3: attention\.block_size: .*got an empty value)"));
}

TEST(deck, SetErrorsBlameTheOption) {
  EXPECT_TRUE(Matches(error_of("", {"nosection.key=1"}), R"(^--set nosection\.key: nosection: unknown section)"));
  EXPECT_TRUE(Matches(error_of("", {"attention.block_size.x=1"}), R"(^--set attention\.block_size\.x: )"));
  // A relative path is looked up from the working directory, and the message says so.
  EXPECT_TRUE(Matches(error_of("input: {source: hdf5, file: no/such.h5}"),
                      R"(input\.file: cannot open 'no/such\.h5' \(relative to the working directory /)"));
  // The option names the key once.
  EXPECT_EQ(error_of("", {"input.source=hdf5", "input.file=/nonexistent/q.h5"}),
            "--set input.file: cannot open '/nonexistent/q.h5'");
  EXPECT_TRUE(Matches(error_of("", {"problem.heads=0"}), R"(^--set problem\.heads: expected an integer >= 1, got 0$)"));
}

}  // namespace

namespace {

// "Nothing lost, nothing non-finite written, no hang": anchors and aliases are refused at once
// (a "billion laughs" deck would keep every walk over it busy for hours), and a path that can
// name no file (a NUL byte, too long) is refused where the deck gives it, with a short message.
TEST(deck, AnchorsAndAliasesAreRefusedAtOnce) {
  std::string bomb = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (int i = 1; i < 10; ++i) {
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) bomb += (j ? ", *a" : "*a") + std::to_string(i - 1);
    bomb += "]\n";
  }
  EXPECT_TRUE(Matches(error_of(bomb), "^text[.]yaml:1:[0-9]+: an anchor .*no YAML anchors or aliases"));
  EXPECT_TRUE(Matches(error_of("run: {name: x}\ntrain: {batch: *b}\n"), "^text[.]yaml:2:[0-9]+: "));
  EXPECT_TRUE(Matches(error_of("", {"run.name=&a x"}), "^--set run.name=&a x:.*an anchor"));
}

TEST(deck, PathsThatCanNameNoFileAreRefused) {
  EXPECT_TRUE(Matches(error_of("data:\n  train: \"train.bin\\u0000junk\"\n"),
                      "^text[.]yaml:2:10: data[.]train: a path cannot hold a NUL byte"));
  EXPECT_TRUE(Matches(error_of("train: {checkpoint_file: \"x\\0y.h5\"}\n"), "train[.]checkpoint_file: .*NUL byte"));
  const std::string huge = "train: {restart_from: " + std::string(5000, 'a') + ".h5}\n";
  const std::string long_path = error_of(huge);
  EXPECT_TRUE(Matches(long_path, "train[.]restart_from: a path of 5003 characters is longer"));
  EXPECT_LT(long_path.size(), 300u);
  EXPECT_TRUE(Matches(error_of("eval: {output: " + std::string(300, 'o') + ".h5}\n"),
                      "eval[.]output: a file or folder name of 303 characters is longer"));
}

TEST(deck, WindowCountsAreBounded) {
  EXPECT_TRUE(
      Matches(error_of("train: {batch: 4611686018427387904}\n"), "train[.]batch: expected an integer between 1 and 2"));
  EXPECT_TRUE(Matches(error_of("train: {eval_windows: 4611686018427387904}\n"), "train[.]eval_windows: expected"));
  EXPECT_EQ(fmattn::parse_deck("train: {batch: 16777216}\n", "t").train.batch, 16777216);
}

TEST(deck, ModelPositionsAreLearnedOrNone) {
  EXPECT_EQ(fmattn::parse_deck("", "t.yaml").model.positions, fmattn::Positions::learned);
  const Deck d = fmattn::parse_deck("model: {positions: none}\n", "t.yaml");
  EXPECT_EQ(d.model.positions, fmattn::Positions::none);
  expect_round_trip(d);
  EXPECT_TRUE(Matches(fmattn::to_yaml(d), "\n  positions: none\n"));
  EXPECT_TRUE(Matches(file_error_of("model:\n  positions: sinusoidal\n"),
                      R"(^DECK:2:14: model\.positions: expected one of learned \| none, got 'sinusoidal')"));
  EXPECT_TRUE(Matches(error_of("", {"model.positions=false"}), R"(^--set model\.positions: expected one of)"));
}

// generate: the documented defaults, every key set and read back, files not looked at by the
// parser, and every bad value or combination named where the deck gives it.
TEST(deck, GenerateSectionDefaultsAndEveryKey) {
  const Deck d = fmattn::parse_deck("", "t.yaml");
  EXPECT_EQ(d.generate.checkpoint, "");
  EXPECT_EQ(d.generate.prompt, "");
  EXPECT_EQ(d.generate.prompt_file, "");
  EXPECT_EQ(d.generate.length, 1024);
  EXPECT_EQ(d.generate.streams, 1);
  EXPECT_EQ(d.generate.temperature, 1.0);
  EXPECT_EQ(d.generate.top_k, 0);
  EXPECT_EQ(d.generate.top_p, 1.0);
  EXPECT_EQ(d.generate.seed, 1u);
  EXPECT_EQ(d.generate.output, "results/generated");
  const Deck g = fmattn::parse_deck(
      "generate:\n"
      "  checkpoint: /nonexistent/model.h5\n"
      "  prompt: \"Once upon\\na \\\"time\\\"\\t \xC3\xA9\"\n"
      "  length: 1099511627776\n"
      "  streams: 4096\n"
      "  temperature: 0\n"
      "  top_k: 256\n"
      "  top_p: 0.25\n"
      "  seed: 0\n"
      "  output: out/story\n",
      "g.yaml");
  EXPECT_EQ(g.generate.checkpoint, "/nonexistent/model.h5");
  EXPECT_EQ(g.generate.prompt, "Once upon\na \"time\"\t \xC3\xA9");
  EXPECT_EQ(g.generate.length, std::int64_t(1) << 40);
  EXPECT_EQ(g.generate.streams, 4096);
  EXPECT_EQ(g.generate.temperature, 0.0);
  EXPECT_EQ(g.generate.top_k, 256);
  EXPECT_EQ(g.generate.top_p, 0.25);
  EXPECT_EQ(g.generate.seed, 0u);
  EXPECT_EQ(g.generate.output, "out/story");
  expect_round_trip(g);
  const Deck f = fmattn::parse_deck(
      "generate: {prompt_file: /nonexistent/prompt.txt, output: '-', temperature: 0.7, top_p: 1}\n", "f.yaml");
  EXPECT_EQ(f.generate.prompt_file, "/nonexistent/prompt.txt");
  EXPECT_EQ(f.generate.output, "-");
  EXPECT_EQ(f.generate.temperature, 0.7);
  expect_round_trip(f);
  EXPECT_TRUE(Matches(fmattn::to_yaml(f),
                      "\ngenerate:\n  checkpoint: \"\"\n  prompt: \"\"\n  prompt_file: "
                      "\"/nonexistent/prompt.txt\"\n  length: 1024\n  streams: 1\n"));
}

TEST(deck, GenerateBadValuesAreNamed) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"length: 0", R"(^DECK:2:11: generate\.length: expected an integer between 1 and 2\^40, got 0$)"},
      {"length: -3", R"(^DECK:2:11: generate\.length: expected an integer between 1 and 2\^40, got -3$)"},
      {"length: 1099511627777", R"(^DECK:2:11: generate\.length: expected an integer between 1 and 2\^40)"},
      {"length: 1.5", R"(^DECK:2:11: generate\.length: expected an integer between 1 and 2\^40, got '1\.5')"},
      {"streams: 0", R"(^DECK:2:12: generate\.streams: expected an integer between 1 and 4096, got 0$)"},
      {"streams: 4097", R"(^DECK:2:12: generate\.streams: expected an integer between 1 and 4096, got 4097$)"},
      {"temperature: -0.5", R"(^DECK:2:16: generate\.temperature: expected a number >= 0, got -0\.5$)"},
      {"temperature: .nan", R"(^DECK:2:16: generate\.temperature: expected a number >= 0, got '\.nan'$)"},
      {"temperature: .inf", R"(^DECK:2:16: generate\.temperature: expected a number >= 0, got '\.inf'$)"},
      {"temperature: hot", R"(^DECK:2:16: generate\.temperature: expected a number >= 0, got 'hot'$)"},
      {"top_k: -1", R"(^DECK:2:10: generate\.top_k: expected an integer between 0 \(all\) and 256, got -1$)"},
      {"top_k: 257", R"(^DECK:2:10: generate\.top_k: expected an integer between 0 \(all\) and 256, got 257$)"},
      {"top_p: 0", R"(^DECK:2:10: generate\.top_p: expected a number in \(0, 1\], got 0$)"},
      {"top_p: -0.1", R"(^DECK:2:10: generate\.top_p: expected a number in \(0, 1\], got -0\.1$)"},
      {"top_p: 1.5", R"(^DECK:2:10: generate\.top_p: expected a number in \(0, 1\], got 1\.5$)"},
      {"top_p: .nan", R"(^DECK:2:10: generate\.top_p: expected a number in \(0, 1\], got '\.nan'$)"},
      {"seed: -1", R"(^DECK:2:9: generate\.seed: expected an integer >= 0, got -1$)"},
      {"output: ''", R"(^DECK:2:11: generate\.output: expected where the streams go .*, got an empty value$)"},
      {"output:", R"(^DECK:2:3: generate\.output: expected where the streams go)"},
      {"prompt: [a, b]", R"(^DECK:2:11: generate\.prompt: expected a string, got a sequence$)"},
      {"checkpoint: \"m\\0.h5\"", R"(^DECK:2:15: generate\.checkpoint: a path cannot hold a NUL byte)"},
      {"prompt_file: " + std::string(5000, 'p'), R"(^DECK:2:16: generate\.prompt_file: a path of 5000 characters)"},
      {"promt: hello", R"(^DECK:2:3: generate\.promt: unknown key \(allowed in 'generate': checkpoint, prompt, )"},
  };
  for (const auto& [line, regex] : bad) {
    SCOPED_TRACE(line);
    EXPECT_TRUE(Matches(file_error_of("generate:\n  " + line + "\n"), regex));
  }
  // A bare - is a YAML list (in a file, a syntax error): the message says to quote it.
  EXPECT_TRUE(Matches(error_of("", {"generate.output=-"}),
                      R"(^--set generate\.output: expected a file name stem or '-', got a list: write '-' in quotes)"));
  // Inline text and a file, both: the file is named.
  EXPECT_TRUE(
      Matches(file_error_of("generate:\n  prompt: Once\n  prompt_file: p.txt\n"),
              R"(^DECK:3:16: generate\.prompt_file: give generate\.prompt or generate\.prompt_file, not both$)"));
  EXPECT_EQ(fmattn::parse_deck("generate: {prompt: '', prompt_file: p.txt}\n", "t.yaml").generate.prompt_file, "p.txt");
  // stdout takes one stream: the streams are named, wherever they are given.
  EXPECT_TRUE(Matches(file_error_of("generate:\n  output: '-'\n  streams: 2\n"),
                      R"(^DECK:3:12: generate\.streams: expected 1 with generate\.output '-' \(stdout takes one )"
                      R"(stream\), got 2)"));
  EXPECT_TRUE(Matches(error_of("generate: {output: '-'}\n", {"generate.streams=3"}),
                      R"(^--set generate\.streams: expected 1 with generate\.output '-')"));
  EXPECT_EQ(fmattn::parse_deck("generate: {output: '-', streams: 1}\n", "t.yaml").generate.streams, 1);
  EXPECT_EQ(fmattn::parse_deck("generate: {output: '-s', streams: 2}\n", "t.yaml").generate.streams, 2);
}

TEST(deck, KeysKnowWhereTheDeckGivesThem) {
  const Deck d = fmattn::parse_deck("model:\n  context: 128\n", "lm.yaml", {"train.batch=3"});
  EXPECT_EQ(d.where("model.context"), "lm.yaml:2:12: model.context");
  EXPECT_EQ(d.where("train.batch"), "--set train.batch");
  EXPECT_EQ(d.where("model.width"), "model.width");
  EXPECT_TRUE(d.gives("model.context"));
  EXPECT_FALSE(d.gives("model.width"));
}

// Inputs must be regular files: a FIFO as the deck would block in open() for ever.
TEST(deck, AFifoDeckIsRefusedWithoutOpeningIt) {
  TempPath fifo("deck.fifo");
  ASSERT_EQ(::mkfifo(fifo.path().c_str(), 0600), 0);
  try {
    fmattn::load_deck(fifo.path());
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_TRUE(Matches(e.what(), "deck[.]fifo.*it is a FIFO, not a regular file"));
  }
}

}  // namespace
