// What deck.cpp, which reads a deck, shares with the files that define its sections
// (deck_operator.cpp, deck_fit.cpp, deck_model.cpp, deck_generate.cpp): the Reader that turns a YAML value into a
// typed one or an InputError naming file:line:column and the key, a section's table of keys, and
// the value checks several sections use. Internal to the library: not installed.
#pragma once

#include <fmattn/io/deck.hpp>

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace fmattn::deck_schema {

// Where a value came from, for messages: file:line:column, or the --set option.
struct Reader {
  std::string origin;
  std::set<std::string> overridden;
  // yaml-cpp marks an empty value at the start of the next line; report its key instead.
  mutable YAML::Mark key_mark = YAML::Mark::null_mark();

  std::string where(const YAML::Node& node, const std::string& path) const;
  [[noreturn]] void fail(const YAML::Node& node, const std::string& path, const std::string& what) const;

  std::string text(const YAML::Node& node, const std::string& path, const std::string& expected) const;
  std::int64_t integer(const YAML::Node& node, const std::string& path, std::int64_t lo, std::int64_t hi,
                       const std::string& expected) const;
  double real(const YAML::Node& node, const std::string& path, const std::string& expected) const;
  bool boolean(const YAML::Node& node, const std::string& path) const;
  std::string string(const YAML::Node& node, const std::string& path) const;
  // A file name: one that can name a file at all (no NUL byte, within PATH_MAX and NAME_MAX).
  std::string file(const YAML::Node& node, const std::string& path) const;

  template <class E>
  E choice(const YAML::Node& node, const std::string& path,
           const std::vector<std::pair<const char*, E>>& options) const {
    std::string list;
    for (const auto& [name, value] : options) list += (list.empty() ? "" : " | ") + std::string(name);
    const std::string s = text(node, path, "one of " + list);
    for (const auto& [name, value] : options)
      if (s == name) return value;
    fail(node, path, "expected one of " + list + ", got '" + s + "'");
  }
};

inline constexpr std::int64_t int_max = std::numeric_limits<std::int64_t>::max();

// Reads the value of one key (its path, e.g. "attention.rank") into the deck.
using Setter = std::function<void(const Reader&, const YAML::Node&, const std::string&, Deck&)>;
// A section's keys in the order to_yaml prints them; a key without a setter is a section of its
// own ("input.synthetic").
using Section = std::vector<std::pair<std::string, Setter>>;
using Schema = std::map<std::string, Section>;

std::int64_t positive(const Reader& r, const YAML::Node& n, const std::string& p);
// Windows per step or per evaluation: each is a forward (and backward) pass of model.context
// bytes, one after the other; 2^24 of them is already days of work on any node.
std::int64_t window_count(const Reader& r, const YAML::Node& n, const std::string& p);
std::int64_t power_of_two(const Reader& r, const YAML::Node& n, const std::string& p);
double positive_real(const Reader& r, const YAML::Node& n, const std::string& p);
double non_negative_real(const Reader& r, const YAML::Node& n, const std::string& p);
double unit_interval(const Reader& r, const YAML::Node& n, const std::string& p);

// The sections, by the verbs that use them.
Schema operator_schema();  // run, problem, attention, input, weights, validation, output, parallel
Schema fit_schema();       // fit
Schema model_schema();     // model, data, train, eval
Schema generate_schema();  // generate

}  // namespace fmattn::deck_schema
