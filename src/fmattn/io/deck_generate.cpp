// The deck's section for `fmattn generate` (README, "Input decks"): each key of generate and the
// values it takes. The defaults are deck.hpp's; the rules between keys are deck.cpp's. Whether
// the checkpoint and the prompt file exist is the command's to check, when it runs.
#include <fmattn/io/deck_schema.hpp>

#include <string>

namespace fmattn::deck_schema {

Schema generate_schema() {
  return {
      {"generate",
       {{"checkpoint", [](const Reader& r, const YAML::Node& n, const std::string& p,
                          Deck& d) { d.generate.checkpoint = r.file(n, p); }},
        {"prompt", [](const Reader& r, const YAML::Node& n, const std::string& p,
                      Deck& d) { d.generate.prompt = r.string(n, p); }},
        {"prompt_file", [](const Reader& r, const YAML::Node& n, const std::string& p,
                           Deck& d) { d.generate.prompt_file = r.file(n, p); }},
        {"length",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.generate.length = r.integer(n, p, 1, std::int64_t(1) << 40, "an integer between 1 and 2^40");
         }},
        {"streams", [](const Reader& r, const YAML::Node& n, const std::string& p,
                       Deck& d) { d.generate.streams = r.integer(n, p, 1, 4096, "an integer between 1 and 4096"); }},
        {"temperature", [](const Reader& r, const YAML::Node& n, const std::string& p,
                           Deck& d) { d.generate.temperature = non_negative_real(r, n, p); }},
        {"top_k",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.generate.top_k = r.integer(n, p, 0, vocabulary, "an integer between 0 (all) and 256");
         }},
        {"top_p",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           d.generate.top_p = r.real(n, p, "a number in (0, 1]");
           if (!(d.generate.top_p > 0 && d.generate.top_p <= 1))
             r.fail(n, p, "expected a number in (0, 1], got " + n.Scalar());
         }},
        {"seed", [](const Reader& r, const YAML::Node& n, const std::string& p,
                    Deck& d) { d.generate.seed = std::uint64_t(r.integer(n, p, 0, int_max, "an integer >= 0")); }},
        {"output",
         [](const Reader& r, const YAML::Node& n, const std::string& p, Deck& d) {
           if (n.IsSequence() && n.size() == 1 && n[0].IsNull())  // how YAML reads a bare -
             r.fail(n, p, "expected a file name stem or '-', got a list: write '-' in quotes for stdout");
           d.generate.output = r.file(n, p);
           if (d.generate.output.empty())
             r.fail(n, p, "expected where the streams go (a file name stem, or '-' for stdout), got an empty value");
         }}}},
  };
}

}  // namespace fmattn::deck_schema
