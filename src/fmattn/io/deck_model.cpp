// The deck's sections for the language models of `fmattn train` and `fmattn eval` (README, "Input
// decks"): model, data, train and eval — each key and the values it takes. The defaults are
// deck.hpp's; the rules between keys are deck.cpp's.
#include <fmattn/io/deck_schema.hpp>

#include <string>

namespace fmattn::deck_schema {

Schema model_schema() {
  return {
      {"model",
       {{"layers", [](const Reader& r, const YAML::Node& n, const std::string& p,
                      Deck& d) { d.model.layers = r.integer(n, p, 1, 1024, "an integer between 1 and 1024"); }},
        {"width", [](const Reader& r, const YAML::Node& n, const std::string& p,
                     Deck& d) { d.model.width = r.integer(n, p, 1, 65536, "an integer between 1 and 65536"); }},
        {"heads", [](const Reader& r, const YAML::Node& n, const std::string& p,
                     Deck& d) { d.model.heads = r.integer(n, p, 1, 65536, "an integer between 1 and 65536"); }},
        {"context",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.model.context = r.integer(n, p, 1, std::int64_t(1) << 30, "an integer between 1 and 2^30");
         }},
        {"dtype",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.model.dtype = r.choice<Dtype>(n, p, {{"float32", Dtype::float32}, {"float64", Dtype::float64}});
         }},
        {"positions",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.model.positions = r.choice<Positions>(n, p, {{"learned", Positions::learned}, {"none", Positions::none}});
         }}}},
      {"data",
       {{"train",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) { d.data.train = r.file(n, p); }},
        {"val",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) { d.data.val = r.file(n, p); }}}},
      {"train",
       {{"steps", [](const Reader& r, const YAML::Node& n, const std::string& p,
                     Deck& d) { d.train.steps = positive(r, n, p); }},
        {"batch", [](const Reader& r, const YAML::Node& n, const std::string& p,
                     Deck& d) { d.train.batch = window_count(r, n, p); }},
        {"micro_batch",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.train.micro_batch = r.integer(n, p, 0, std::int64_t(1) << 24, "an integer between 0 (auto) and 2^24");
         }},
        {"learning_rate", [](const Reader& r, const YAML::Node& n, const std::string& p,
                             Deck& d) { d.train.learning_rate = positive_real(r, n, p); }},
        {"min_learning_rate", [](const Reader& r, const YAML::Node& n, const std::string& p,
                                 Deck& d) { d.train.min_learning_rate = non_negative_real(r, n, p); }},
        {"warmup_steps", [](const Reader& r, const YAML::Node& n, const std::string& p,
                            Deck& d) { d.train.warmup_steps = r.integer(n, p, 0, int_max, "an integer >= 0"); }},
        {"weight_decay", [](const Reader& r, const YAML::Node& n, const std::string& p,
                            Deck& d) { d.train.weight_decay = non_negative_real(r, n, p); }},
        {"beta1", [](const Reader& r, const YAML::Node& n, const std::string& p,
                     Deck& d) { d.train.beta1 = unit_interval(r, n, p); }},
        {"beta2", [](const Reader& r, const YAML::Node& n, const std::string& p,
                     Deck& d) { d.train.beta2 = unit_interval(r, n, p); }},
        {"clip_norm", [](const Reader& r, const YAML::Node& n, const std::string& p,
                         Deck& d) { d.train.clip_norm = positive_real(r, n, p); }},
        {"eval_every", [](const Reader& r, const YAML::Node& n, const std::string& p,
                          Deck& d) { d.train.eval_every = positive(r, n, p); }},
        {"eval_windows", [](const Reader& r, const YAML::Node& n, const std::string& p,
                            Deck& d) { d.train.eval_windows = window_count(r, n, p); }},
        {"checkpoint_every", [](const Reader& r, const YAML::Node& n, const std::string& p,
                                Deck& d) { d.train.checkpoint_every = positive(r, n, p); }},
        {"checkpoint_file", [](const Reader& r, const YAML::Node& n, const std::string& p,
                               Deck& d) { d.train.checkpoint_file = r.file(n, p); }},
        {"restart_from", [](const Reader& r, const YAML::Node& n, const std::string& p,
                            Deck& d) { d.train.restart_from = r.file(n, p); }}}},
      {"eval",
       {{"checkpoint",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) { d.eval.checkpoint = r.file(n, p); }},
        {"output",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) { d.eval.output = r.file(n, p); }}}},
  };
}

}  // namespace fmattn::deck_schema
