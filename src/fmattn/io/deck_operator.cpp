// The deck's sections for `fmattn run` (README, "Input decks"): run, problem, attention, input,
// weights, validation, output and parallel — each key and the values it takes. The defaults are
// deck.hpp's; the rules between keys are deck.cpp's.
#include <fmattn/io/deck_schema.hpp>

#include <string>

namespace fmattn::deck_schema {

Schema operator_schema() {
  return {
      {"run",
       {{"name",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.run.name = r.text(n, p, "a name");
           const bool ok =
               !d.run.name.empty() &&
               d.run.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
                   std::string::npos;
           if (!ok)
             r.fail(n, p, "expected a non-empty name of letters, digits, '_', '.', '-', got '" + d.run.name + "'");
         }},
        {"seed", [](const Reader& r, const YAML::Node& n, const std::string& p,
                    Deck& d) { d.run.seed = std::uint64_t(r.integer(n, p, 0, int_max, "an integer >= 0")); }},
        {"progress_seconds",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.run.progress_seconds = r.real(n, p, "a number of seconds >= 0");
           if (d.run.progress_seconds < 0) r.fail(n, p, "expected a number of seconds >= 0, got " + n.Scalar());
         }}}},
      {"problem",
       {{"batch", [](const Reader& r, const YAML::Node& n, const std::string& p,
                     Deck& d) { d.problem.batch = positive(r, n, p); }},
        {"heads", [](const Reader& r, const YAML::Node& n, const std::string& p,
                     Deck& d) { d.problem.heads = positive(r, n, p); }},
        {"length", [](const Reader& r, const YAML::Node& n, const std::string& p,
                      Deck& d) { d.problem.length = positive(r, n, p); }},
        {"head_dim", [](const Reader& r, const YAML::Node& n, const std::string& p,
                        Deck& d) { d.problem.head_dim = r.integer(n, p, 1, 1024, "an integer between 1 and 1024"); }},
        {"dtype",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.problem.dtype = r.choice<Dtype>(n, p, {{"float32", Dtype::float32}, {"float64", Dtype::float64}});
         }}}},
      {"attention",
       {{"method",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.attention.method =
               r.choice<Method>(n, p, {{"fma", Method::fma}, {"exact", Method::exact}, {"local", Method::local}});
         }},
        {"variant",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.attention.variant =
               r.choice<Variant>(n, p, {{"causal", Variant::causal}, {"bidirectional", Variant::bidirectional}});
         }},
        {"block_size", [](const Reader& r, const YAML::Node& n, const std::string& p,
                          Deck& d) { d.attention.block_size = power_of_two(r, n, p); }},
        {"rank", [](const Reader& r, const YAML::Node& n, const std::string& p,
                    Deck& d) { d.attention.rank = power_of_two(r, n, p); }},
        {"downsampling",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.attention.downsampling =
               r.choice<Downsampling>(n, p, {{"average", Downsampling::average}, {"learned", Downsampling::learned}});
         }},
        {"count_weighting", [](const Reader& r, const YAML::Node& n, const std::string& p,
                               Deck& d) { d.attention.count_weighting = r.boolean(n, p); }},
        {"boundary",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.attention.boundary =
               r.choice<Boundary>(n, p, {{"masked", Boundary::masked}, {"zero_sink", Boundary::zero_sink}});
         }},
        {"queries",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.attention.queries = r.choice<Queries>(n, p, {{"fine", Queries::fine}, {"coarse", Queries::coarse}});
         }},
        {"scale",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           if (n.IsScalar() && n.Scalar() == "auto") {
             d.attention.scale = 0;
             return;
           }
           d.attention.scale = r.real(n, p, "'auto' or a positive number");
           if (!(d.attention.scale > 0)) r.fail(n, p, "expected 'auto' or a positive number, got " + n.Scalar());
         }}}},
      {"input",
       {{"source",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.input.source = r.choice<Source>(n, p, {{"synthetic", Source::synthetic}, {"hdf5", Source::hdf5}});
         }},
        {"file",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) { d.input.file = r.file(n, p); }},
        {"synthetic", nullptr}}},
      {"input.synthetic",
       {{"kind",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.input.synthetic.kind =
               r.choice<SyntheticKind>(n, p,
                                       {{"gaussian", SyntheticKind::gaussian},
                                        {"smooth", SyntheticKind::smooth},
                                        {"piecewise_constant", SyntheticKind::piecewise_constant}});
         }},
        {"span",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           if (n.IsScalar() && n.Scalar() == "auto") {
             d.input.synthetic.span = 0;
             return;
           }
           d.input.synthetic.span = r.integer(n, p, 1, int_max, "'auto' or an integer >= 1");
         }},
        {"amplitude",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           // Synthetic values stay within 32 amplitudes: the bound keeps them inside what the
           // attention accepts of float32 inputs (2^56).
           const char* expected = "a positive number up to 1e15";
           d.input.synthetic.amplitude = r.real(n, p, expected);
           const double a = d.input.synthetic.amplitude;
           if (!(a > 0 && a <= 1e15)) r.fail(n, p, std::string("expected ") + expected + ", got " + n.Scalar());
         }}}},
      {"weights",
       {{"file",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) { d.weights.file = r.file(n, p); }}}},
      {"validation",
       {{"sample_queries",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.validation.sample_queries = r.integer(n, p, 0, int_max, "an integer >= 0");
         }}}},
      {"output",
       {{"file",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) { d.output.file = r.file(n, p); }},
        {"write_output", [](const Reader& r, const YAML::Node& n, const std::string& p,
                            Deck& d) { d.output.write_output = r.boolean(n, p); }}}},
      {"parallel",
       {{"decomposition",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.parallel.decomposition = r.choice<Decomposition>(n, p,
                                                              {{"auto", Decomposition::automatic},
                                                               {"sequence", Decomposition::sequence},
                                                               {"heads", Decomposition::heads},
                                                               {"data", Decomposition::data}});
         }}}},
  };
}

}  // namespace fmattn::deck_schema
