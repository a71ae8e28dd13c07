#include <fmattn/io/deck.hpp>

#include <fmattn/core/geometry.hpp>
#include <fmattn/io/deck_schema.hpp>
#include <fmattn/io/paths.hpp>
#include <fmattn/util/errors.hpp>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace fmattn {

namespace deck_schema {

std::string Reader::where(const YAML::Node& node, const std::string& path) const {
  for (const std::string& o : overridden)
    if (o == path || o.rfind(path + ".", 0) == 0 || path.rfind(o + ".", 0) == 0) return "--set " + o;
  const YAML::Mark mark = node.IsNull() ? key_mark : node.Mark();
  if (mark.is_null()) return origin;
  return origin + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

void Reader::fail(const YAML::Node& node, const std::string& path, const std::string& what) const {
  const std::string at = where(node, path);
  // "--set input.file" already names the key.
  throw InputError(at == "--set " + path ? at + ": " + what : at + ": " + path + ": " + what);
}

std::string Reader::text(const YAML::Node& node, const std::string& path, const std::string& expected) const {
  if (node.IsNull()) fail(node, path, "expected " + expected + ", got an empty value");
  if (!node.IsScalar()) fail(node, path, "expected " + expected + ", got a " + (node.IsMap() ? "mapping" : "sequence"));
  return node.Scalar();
}

std::int64_t Reader::integer(const YAML::Node& node, const std::string& path, std::int64_t lo, std::int64_t hi,
                             const std::string& expected) const {
  const std::string s = text(node, path, expected);
  std::int64_t value = 0;
  // Decimal only: yaml-cpp would read 010 as octal 8 and 0x40 as 64.
  const std::size_t digits = s.find_first_not_of("+-") == 1 ? 1 : 0;
  const bool decimal = s.size() > digits && s.find_first_not_of("0123456789", digits) == std::string::npos &&
                       (s[digits] != '0' || s.size() == digits + 1);
  if (!decimal || !YAML::convert<std::int64_t>::decode(node, value)) {
    const bool numeric = s.find_first_of("0123456789") != std::string::npos &&
                         s.find_first_not_of("+-0123456789xXabcdefABCDEFoO_") == std::string::npos;
    fail(node, path,
         "expected " + expected + ", got '" + s + "'" +
             (numeric ? " (write integers in decimal, without leading zeros)" : ""));
  }
  if (value < lo || value > hi) fail(node, path, "expected " + expected + ", got " + s);
  return value;
}

double Reader::real(const YAML::Node& node, const std::string& path, const std::string& expected) const {
  const std::string s = text(node, path, expected);
  double value = 0;
  if (!YAML::convert<double>::decode(node, value) || !std::isfinite(value))
    fail(node, path, "expected " + expected + ", got '" + s + "'");
  return value;
}

bool Reader::boolean(const YAML::Node& node, const std::string& path) const {
  const std::string s = text(node, path, "true or false");
  bool value = false;
  if (!YAML::convert<bool>::decode(node, value)) fail(node, path, "expected true or false, got '" + s + "'");
  return value;
}

std::string Reader::string(const YAML::Node& node, const std::string& path) const {
  if (node.IsNull()) return "";
  return text(node, path, "a string");
}

std::string Reader::file(const YAML::Node& node, const std::string& path) const {
  std::string s = string(node, path);
  const std::string problem = path_problem(s);
  if (!problem.empty()) fail(node, path, problem);
  return s;
}

std::int64_t positive(const Reader& r, const YAML::Node& n, const std::string& p) {
  return r.integer(n, p, 1, int_max, "an integer >= 1");
}

std::int64_t window_count(const Reader& r, const YAML::Node& n, const std::string& p) {
  return r.integer(n, p, 1, std::int64_t(1) << 24, "an integer between 1 and 2^24 (16777216)");
}

std::int64_t power_of_two(const Reader& r, const YAML::Node& n, const std::string& p) {
  const std::int64_t v = r.integer(n, p, 1, std::int64_t(1) << 30, "a power of two between 1 and 2^30");
  if (!is_pow2(v)) r.fail(n, p, "expected a power of two, got " + std::to_string(v));
  return v;
}

double positive_real(const Reader& r, const YAML::Node& n, const std::string& p) {
  const double v = r.real(n, p, "a positive number");
  if (!(v > 0)) r.fail(n, p, "expected a positive number, got " + n.Scalar());
  return v;
}

double non_negative_real(const Reader& r, const YAML::Node& n, const std::string& p) {
  const double v = r.real(n, p, "a number >= 0");
  if (!(v >= 0)) r.fail(n, p, "expected a number >= 0, got " + n.Scalar());
  return v;
}

double unit_interval(const Reader& r, const YAML::Node& n, const std::string& p) {
  const double v = r.real(n, p, "a number in [0, 1)");
  if (!(v >= 0 && v < 1)) r.fail(n, p, "expected a number in [0, 1), got " + n.Scalar());
  return v;
}

}  // namespace deck_schema

namespace {

using deck_schema::Reader;
using deck_schema::Schema;
using deck_schema::Section;

// Every section: the groups of deck_operator.cpp, deck_fit.cpp, deck_model.cpp and deck_generate.cpp.
const Schema& schema() {
  static const Schema s = [] {
    Schema all;
    for (Schema group : {deck_schema::operator_schema(), deck_schema::fit_schema(), deck_schema::model_schema(),
                         deck_schema::generate_schema()})
      all.merge(group);
    return all;
  }();
  return s;
}

std::string key_text(const Reader& r, const YAML::Node& key, const std::string& section) {
  if (!key.IsScalar())
    r.fail(key, section, "keys must be plain names, got a " + std::string(key.IsMap() ? "mapping" : "sequence"));
  return key.Scalar();
}

// Walks one mapping of the deck: every key must be in the schema section `section`.
void read_section(const Reader& r, const YAML::Node& node, const std::string& section, Deck& deck) {
  if (node.IsNull()) return;
  if (!node.IsMap()) r.fail(node, section, "expected a mapping of keys");
  const Section& keys = schema().at(section);
  std::set<std::string> seen;
  for (const auto& kv : node) {
    const std::string key = key_text(r, kv.first, section);
    const std::string path = section + "." + key;
    r.key_mark = kv.first.Mark();
    if (!seen.insert(key).second) r.fail(kv.first, path, "duplicate key");
    const auto it = std::find_if(keys.begin(), keys.end(), [&](const auto& k) { return k.first == key; });
    if (it == keys.end()) {
      std::string allowed;
      for (const auto& k : keys) allowed += (allowed.empty() ? "" : ", ") + k.first;
      r.fail(kv.first, path, "unknown key (allowed in '" + section + "': " + allowed + ")");
    }
    if (it->second) {
      it->second(r, kv.second, path, deck);
      const std::string at = r.where(kv.second, path);
      deck.origins[path] = at.rfind("--set ", 0) == 0 ? at : at + ": " + path;
    } else {
      read_section(r, kv.second, path, deck);
    }
    r.key_mark = YAML::Mark::null_mark();
  }
}

// Checks that involve several keys.
// Paths in a deck are relative to the working directory, not to the deck's folder: say so
// where a relative path was not found.
std::string relative_to_cwd(const std::string& path) {
  std::error_code ec;
  if (path.empty() || path[0] == '/') return "";
  const auto cwd = std::filesystem::current_path(ec);
  return ec ? "" : " (relative to the working directory " + cwd.string() + ")";
}

void check_consistency(const Reader& r, const YAML::Node& root, Deck& d) {
  auto node_of = [&](const std::string& path) {
    YAML::Node n = root;
    std::stringstream ss(path);
    std::string part;
    while (std::getline(ss, part, '.')) n = n.IsMap() && n[part] ? YAML::Node(n[part]) : YAML::Node();
    return n;
  };
  auto fail = [&](const std::string& path, const std::string& what) { r.fail(node_of(path), path, what); };

  const auto& a = d.attention;
  if (a.rank > a.block_size)
    fail("attention.rank",
         "expected rank <= block_size (" + std::to_string(a.block_size) + "), got " + std::to_string(a.rank));
  if (a.boundary == Boundary::zero_sink) {
    if (a.method != Method::fma) fail("attention.boundary", "zero_sink applies to method fma only");
    if (a.variant != Variant::causal) fail("attention.boundary", "zero_sink needs variant causal");
    const std::int64_t n = d.problem.length;
    if (n % a.block_size != 0 || !is_pow2(n / a.block_size))
      fail("attention.boundary", "zero_sink needs problem.length = block_size * 2^k, got length " + std::to_string(n) +
                                     " with block_size " + std::to_string(a.block_size));
  }
  if (a.queries == Queries::coarse && a.method != Method::fma)
    fail("attention.queries", "coarse queries need method fma");
  if (d.parallel.decomposition == Decomposition::sequence && (a.method == Method::exact || a.queries != Queries::fine))
    fail("parallel.decomposition",
         "sequence sharding supports methods fma and local with queries fine; exact attention and the linear variant "
         "take heads (fmattn run) or data (train, eval)");
  if (d.input.source == Source::hdf5 && d.input.file.empty())
    fail("input.file", "input.source is hdf5 but no file is given");
  if (d.input.source == Source::hdf5) {
    std::ifstream f(d.input.file);
    if (!f) fail("input.file", "cannot open '" + d.input.file + "'" + relative_to_cwd(d.input.file));
  }
  if (!d.weights.file.empty()) {
    if (a.downsampling != Downsampling::learned)
      fail("weights.file", "weights are only used with attention.downsampling: learned");
    std::ifstream f(d.weights.file);
    if (!f) fail("weights.file", "cannot open '" + d.weights.file + "'" + relative_to_cwd(d.weights.file));
  }
  if (d.model.width % d.model.heads != 0)
    fail("model.heads", "expected a divisor of model.width (" + std::to_string(d.model.width) + "), got " +
                            std::to_string(d.model.heads));
  if (d.train.min_learning_rate > d.train.learning_rate)
    fail("train.min_learning_rate",
         "expected at most train.learning_rate (" + std::to_string(d.train.learning_rate) + ")");
  const auto& g = d.generate;
  if (!g.prompt.empty() && !g.prompt_file.empty())
    fail("generate.prompt_file", "give generate.prompt or generate.prompt_file, not both");
  if (g.output == "-" && g.streams > 1)
    fail("generate.streams", "expected 1 with generate.output '-' (stdout takes one stream), got " +
                                 std::to_string(g.streams) + " (give generate.output a file name instead)");
  // Sizes whose element counts overflow 64 bits are impossible on any machine.
  const long double elems = (long double)d.problem.batch * d.problem.heads * d.problem.length * d.problem.head_dim;
  if (elems > (long double)(std::int64_t(1) << 60))
    fail("problem.length",
         "batch * heads * length * head_dim = " + std::to_string((double)elems) + " elements is too large");
}

// "origin:line:column: ", or "origin: " where the position is unknown.
std::string at(const std::string& origin, const YAML::Mark& mark) {
  if (mark.is_null()) return origin + ": ";
  return origin + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1) + ": ";
}

// yaml-cpp reads a quote left open at the end of a file as a string running to the end of the
// file, swallowing the keys after it. Deck values never need to span lines, so every quoted
// scalar must close on the line where it opens.
void check_quotes_closed(const YAML::Node& node, const std::string& text, const std::string& origin) {
  if (node.IsMap() || node.IsSequence()) {
    for (const auto& item : node) {
      if (node.IsMap()) {
        check_quotes_closed(item.first, text, origin);
        check_quotes_closed(item.second, text, origin);
      } else {
        check_quotes_closed(item, text, origin);
      }
    }
    return;
  }
  const YAML::Mark mark = node.Mark();
  if (!node.IsScalar() || node.Tag() != "!" || mark.is_null() || mark.pos < 0 || std::size_t(mark.pos) >= text.size())
    return;
  const char quote = text[std::size_t(mark.pos)];
  if (quote != '"' && quote != '\'') return;
  for (std::size_t i = std::size_t(mark.pos) + 1; i < text.size() && text[i] != '\n'; ++i) {
    if (quote == '"' && text[i] == '\\') {
      ++i;
    } else if (text[i] == quote) {
      if (quote == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
        ++i;  // '' is an escaped quote inside single quotes
      } else {
        return;
      }
    }
  }
  throw InputError(at(origin, mark) + "unclosed quote: a quoted value must end on the line where it starts");
}

// Anchors and aliases: a deck needs none, and aliases nested in aliases make a few lines of
// YAML stand for billions of nodes (a "billion laughs" deck would keep every walk over it busy
// for hours). Refused before the document is built.
class NoAliases : public YAML::EventHandler {
 public:
  explicit NoAliases(std::string origin) : origin_(std::move(origin)) {}
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t a) override { check(m, a); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { refuse(m, "an alias (*name)"); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t a, const std::string&) override { check(m, a); }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t a, YAML::EmitterStyle::value) override {
    check(m, a);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t a, YAML::EmitterStyle::value) override {
    check(m, a);
  }
  void OnMapEnd() override {}
  void OnAnchor(const YAML::Mark& m, const std::string&) override { refuse(m, "an anchor (&name)"); }

 private:
  std::string origin_;
  void check(const YAML::Mark& m, YAML::anchor_t a) const {
    if (a != YAML::NullAnchor) refuse(m, "an anchor (&name)");
  }
  [[noreturn]] void refuse(const YAML::Mark& m, const std::string& what) const {
    throw InputError(at(origin_, m) + what + ": decks take no YAML anchors or aliases; write each value out");
  }
};

void refuse_aliases(const std::string& text, const std::string& origin) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  NoAliases handler(origin);
  while (parser.HandleNextDocument(handler)) {
  }
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  const auto e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

}  // namespace

Deck parse_deck(const std::string& text, const std::string& origin, const std::vector<std::string>& overrides) {
  Reader r{origin, {}};
  YAML::Node root;
  try {
    refuse_aliases(text, origin);
    const std::vector<YAML::Node> documents = YAML::LoadAll(text);
    if (documents.size() > 1)
      throw InputError(at(origin, documents[1].Mark()) + "a deck is one YAML document; this one holds " +
                       std::to_string(documents.size()) + " (remove the '---' separator)");
    if (!documents.empty()) root = documents[0];
  } catch (const YAML::ParserException& e) {
    throw InputError(at(origin, e.mark) + "YAML syntax error: " + e.msg);
  }
  check_quotes_closed(root, text, origin);
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap())
    throw InputError(at(origin, root.Mark()) + "expected a mapping of sections (run, problem, attention, ...), got a " +
                     (root.IsSequence() ? "sequence" : "single value"));

  for (const std::string& o : overrides) {
    const auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0) throw InputError("--set " + o + ": expected section.key=value");
    const std::string path = trim(o.substr(0, eq));
    std::vector<std::string> parts;
    std::stringstream ss(path);
    for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
    if (parts.size() < 2 || std::count(parts.begin(), parts.end(), std::string()))
      throw InputError("--set " + o + ": expected section.key=value");
    YAML::Node value;
    try {
      refuse_aliases(o.substr(eq + 1), "--set " + o);
      value = YAML::Load(o.substr(eq + 1));
    } catch (const YAML::ParserException& e) {
      throw InputError("--set " + o + ": cannot parse the value: " + e.msg);
    }
    check_quotes_closed(value, o.substr(eq + 1), "--set " + o);
    // Walk down through copies of the handles (yaml-cpp nodes are references into the tree).
    std::vector<YAML::Node> chain{root};
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
      YAML::Node next = chain.back()[parts[i]];
      if (!next.IsMap()) next = YAML::Node(YAML::NodeType::Map);
      chain.back()[parts[i]] = next;
      chain.push_back(chain.back()[parts[i]]);
    }
    chain.back()[parts.back()] = value.IsNull() ? YAML::Node("") : value;
    r.overridden.insert(path);
  }

  Deck deck;
  std::set<std::string> seen;
  for (const auto& kv : root) {
    const std::string section = key_text(r, kv.first, "deck");
    if (!seen.insert(section).second) r.fail(kv.first, section, "duplicate section");
    if (section.find('.') != std::string::npos || !schema().count(section)) {
      std::string allowed;
      for (const auto& s : schema())
        if (s.first.find('.') == std::string::npos) allowed += (allowed.empty() ? "" : ", ") + s.first;
      r.fail(kv.first, section, "unknown section (allowed: " + allowed + ")");
    }
    read_section(r, kv.second, section, deck);
  }
  check_consistency(r, root, deck);
  return deck;
}

Deck load_deck(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw InputError(path + ": is a directory, not a deck file");
  // A FIFO or a device would block in open() or never end.
  check_input_file(path, shown_path(path));
  std::ifstream f(path);
  if (!f) throw InputError(path + ": cannot open the deck");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_deck(ss.str(), path, overrides);
}

std::string Deck::where(const std::string& key) const {
  const auto it = origins.find(key);
  return it == origins.end() ? key : it->second;
}

double Deck::resolved_scale() const {
  return attention.scale > 0 ? attention.scale : 1.0 / std::sqrt(double(problem.head_dim));
}

std::string Deck::resolved_output_file() const {
  return output.file.empty() ? "results/" + run.name + ".h5" : output.file;
}

const char* name_of(Dtype v) { return v == Dtype::float32 ? "float32" : "float64"; }
const char* name_of(Method v) { return v == Method::fma ? "fma" : v == Method::exact ? "exact" : "local"; }
const char* name_of(Variant v) { return v == Variant::causal ? "causal" : "bidirectional"; }
const char* name_of(Downsampling v) { return v == Downsampling::average ? "average" : "learned"; }
const char* name_of(Boundary v) { return v == Boundary::masked ? "masked" : "zero_sink"; }
const char* name_of(Queries v) { return v == Queries::fine ? "fine" : "coarse"; }
const char* name_of(Positions v) { return v == Positions::learned ? "learned" : "none"; }
const char* name_of(Decomposition v) {
  switch (v) {
    case Decomposition::automatic:
      return "auto";
    case Decomposition::sequence:
      return "sequence";
    case Decomposition::heads:
      return "heads";
    default:
      return "data";
  }
}

Decomposition Deck::resolved_decomposition() const {
  if (parallel.decomposition != Decomposition::automatic) return parallel.decomposition;
  return attention.method == Method::fma && attention.queries == Queries::fine ? Decomposition::sequence
                                                                               : Decomposition::heads;
}
const char* name_of(Source v) { return v == Source::synthetic ? "synthetic" : "hdf5"; }
const char* name_of(SyntheticKind v) {
  switch (v) {
    case SyntheticKind::gaussian:
      return "gaussian";
    case SyntheticKind::smooth:
      return "smooth";
    default:
      return "piecewise_constant";
  }
}

std::string to_yaml(const Deck& d) {
  YAML::Emitter e;
  auto num = [](double x) {
    std::ostringstream s;
    s.precision(17);
    s << x;
    return s.str();
  };
  e << YAML::BeginMap;
  e << YAML::Key << "run" << YAML::Value << YAML::BeginMap << YAML::Key << "name" << YAML::Value << d.run.name
    << YAML::Key << "seed" << YAML::Value << d.run.seed << YAML::Key << "progress_seconds" << YAML::Value
    << num(d.run.progress_seconds) << YAML::EndMap;
  e << YAML::Key << "problem" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "batch" << YAML::Value << d.problem.batch << YAML::Key << "heads" << YAML::Value << d.problem.heads
    << YAML::Key << "length" << YAML::Value << d.problem.length << YAML::Key << "head_dim" << YAML::Value
    << d.problem.head_dim << YAML::Key << "dtype" << YAML::Value << name_of(d.problem.dtype) << YAML::EndMap;
  const auto& a = d.attention;
  e << YAML::Key << "attention" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "method" << YAML::Value << name_of(a.method) << YAML::Key << "variant" << YAML::Value
    << name_of(a.variant) << YAML::Key << "block_size" << YAML::Value << a.block_size << YAML::Key << "rank"
    << YAML::Value << a.rank << YAML::Key << "downsampling" << YAML::Value << name_of(a.downsampling) << YAML::Key
    << "count_weighting" << YAML::Value << a.count_weighting << YAML::Key << "boundary" << YAML::Value
    << name_of(a.boundary) << YAML::Key << "queries" << YAML::Value << name_of(a.queries) << YAML::Key << "scale"
    << YAML::Value << (a.scale > 0 ? num(a.scale) : std::string("auto")) << YAML::Comment(num(d.resolved_scale()))
    << YAML::EndMap;
  e << YAML::Key << "input" << YAML::Value << YAML::BeginMap << YAML::Key << "source" << YAML::Value
    << name_of(d.input.source) << YAML::Key << "file" << YAML::Value << YAML::DoubleQuoted << d.input.file << YAML::Key
    << "synthetic" << YAML::Value << YAML::BeginMap << YAML::Key << "kind" << YAML::Value
    << name_of(d.input.synthetic.kind) << YAML::Key << "span" << YAML::Value
    << (d.input.synthetic.span > 0 ? std::to_string(d.input.synthetic.span) : std::string("auto")) << YAML::Key
    << "amplitude" << YAML::Value << num(d.input.synthetic.amplitude) << YAML::EndMap << YAML::EndMap;
  e << YAML::Key << "weights" << YAML::Value << YAML::BeginMap << YAML::Key << "file" << YAML::Value
    << YAML::DoubleQuoted << d.weights.file << YAML::EndMap;
  e << YAML::Key << "validation" << YAML::Value << YAML::BeginMap << YAML::Key << "sample_queries" << YAML::Value
    << d.validation.sample_queries << YAML::EndMap;
  e << YAML::Key << "output" << YAML::Value << YAML::BeginMap << YAML::Key << "file" << YAML::Value
    << YAML::DoubleQuoted << d.resolved_output_file() << YAML::Key << "write_output" << YAML::Value
    << d.output.write_output << YAML::EndMap;
  e << YAML::Key << "parallel" << YAML::Value << YAML::BeginMap << YAML::Key << "decomposition" << YAML::Value
    << name_of(d.parallel.decomposition) << YAML::Comment(name_of(d.resolved_decomposition())) << YAML::EndMap;
  e << YAML::Key << "fit" << YAML::Value << YAML::BeginMap << YAML::Key << "steps" << YAML::Value << d.fit.steps
    << YAML::Key << "learning_rate" << YAML::Value << num(d.fit.learning_rate) << YAML::Key << "sample_queries"
    << YAML::Value << d.fit.sample_queries << YAML::Key << "checkpoint_every" << YAML::Value << d.fit.checkpoint_every
    << YAML::Key << "checkpoint_file" << YAML::Value << YAML::DoubleQuoted << d.fit.checkpoint_file << YAML::Key
    << "restart_from" << YAML::Value << YAML::DoubleQuoted << d.fit.restart_from << YAML::EndMap;
  const auto& m = d.model;
  e << YAML::Key << "model" << YAML::Value << YAML::BeginMap << YAML::Key << "layers" << YAML::Value << m.layers
    << YAML::Key << "width" << YAML::Value << m.width << YAML::Key << "heads" << YAML::Value << m.heads << YAML::Key
    << "context" << YAML::Value << m.context << YAML::Key << "dtype" << YAML::Value << name_of(m.dtype) << YAML::Key
    << "positions" << YAML::Value << name_of(m.positions) << YAML::EndMap;
  e << YAML::Key << "data" << YAML::Value << YAML::BeginMap << YAML::Key << "train" << YAML::Value << YAML::DoubleQuoted
    << d.data.train << YAML::Key << "val" << YAML::Value << YAML::DoubleQuoted << d.data.val << YAML::EndMap;
  const auto& t = d.train;
  e << YAML::Key << "train" << YAML::Value << YAML::BeginMap << YAML::Key << "steps" << YAML::Value << t.steps
    << YAML::Key << "batch" << YAML::Value << t.batch << YAML::Key << "micro_batch" << YAML::Value << t.micro_batch
    << YAML::Key << "learning_rate" << YAML::Value << num(t.learning_rate) << YAML::Key << "min_learning_rate"
    << YAML::Value << num(t.min_learning_rate) << YAML::Key << "warmup_steps" << YAML::Value << t.warmup_steps
    << YAML::Key << "weight_decay" << YAML::Value << num(t.weight_decay) << YAML::Key << "beta1" << YAML::Value
    << num(t.beta1) << YAML::Key << "beta2" << YAML::Value << num(t.beta2) << YAML::Key << "clip_norm" << YAML::Value
    << num(t.clip_norm) << YAML::Key << "eval_every" << YAML::Value << t.eval_every << YAML::Key << "eval_windows"
    << YAML::Value << t.eval_windows << YAML::Key << "checkpoint_every" << YAML::Value << t.checkpoint_every
    << YAML::Key << "checkpoint_file" << YAML::Value << YAML::DoubleQuoted << t.checkpoint_file << YAML::Key
    << "restart_from" << YAML::Value << YAML::DoubleQuoted << t.restart_from << YAML::EndMap;
  e << YAML::Key << "eval" << YAML::Value << YAML::BeginMap << YAML::Key << "checkpoint" << YAML::Value
    << YAML::DoubleQuoted << d.eval.checkpoint << YAML::Key << "output" << YAML::Value << YAML::DoubleQuoted
    << d.eval.output << YAML::EndMap;
  const auto& g = d.generate;
  e << YAML::Key << "generate" << YAML::Value << YAML::BeginMap << YAML::Key << "checkpoint" << YAML::Value
    << YAML::DoubleQuoted << g.checkpoint << YAML::Key << "prompt" << YAML::Value << YAML::DoubleQuoted << g.prompt
    << YAML::Key << "prompt_file" << YAML::Value << YAML::DoubleQuoted << g.prompt_file << YAML::Key << "length"
    << YAML::Value << g.length << YAML::Key << "streams" << YAML::Value << g.streams << YAML::Key << "temperature"
    << YAML::Value << num(g.temperature) << YAML::Key << "top_k" << YAML::Value << g.top_k << YAML::Key << "top_p"
    << YAML::Value << num(g.top_p) << YAML::Key << "seed" << YAML::Value << g.seed << YAML::Key << "output"
    << YAML::Value << YAML::DoubleQuoted << g.output << YAML::EndMap;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace fmattn
