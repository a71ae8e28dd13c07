// The deck's section for `fmattn fit` (README, "Input decks"): each key of fit and the values it
// takes. The defaults are deck.hpp's.
#include <fmattn/io/deck_schema.hpp>

#include <string>

namespace fmattn::deck_schema {

Schema fit_schema() {
  return {
      {"fit",
       {{"steps",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) { d.fit.steps = positive(r, n, p); }},
        {"learning_rate",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.fit.learning_rate = r.real(n, p, "a positive number");
           if (!(d.fit.learning_rate > 0)) r.fail(n, p, "expected a positive number, got " + n.Scalar());
         }},
        {"sample_queries", [](const Reader& r, const YAML::Node& n, const std::string& p,
                              Deck& d) { d.fit.sample_queries = positive(r, n, p); }},
        {"checkpoint_every", [](const Reader& r, const YAML::Node& n, const std::string& p,
                                Deck& d) { d.fit.checkpoint_every = positive(r, n, p); }},
        {"checkpoint_file", [](const Reader& r, const YAML::Node& n, const std::string& p,
                               Deck& d) { d.fit.checkpoint_file = r.file(n, p); }},
        {"restart_from", [](const Reader& r, const YAML::Node& n, const std::string& p,
                            Deck& d) { d.fit.restart_from = r.file(n, p); }}}},
  };
}

}  // namespace fmattn::deck_schema
