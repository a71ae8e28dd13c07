#include <fmattn/app/generate.hpp>

#include <fmattn/app/lm_common.hpp>
#include <fmattn/io/paths.hpp>
#include <fmattn/model/decoder.hpp>
#include <fmattn/model/sampler.hpp>
#include <fmattn/util/errors.hpp>
#include <fmattn/util/interrupt.hpp>
#include <fmattn/util/profiling.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>

namespace fmattn {

namespace {

// The prompt's bytes: generate.prompt_file, else generate.prompt; with neither, one line break
// (a model predicts from at least one byte: the text starts as after a line break).
std::vector<std::uint8_t> read_prompt(const Deck& deck) {
  const auto& g = deck.generate;
  if (!g.prompt_file.empty()) {
    std::ifstream f(g.prompt_file, std::ios::binary);
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (!f.eof() && f.fail())
      throw InputError(deck.where("generate.prompt_file") + ": cannot read '" + shown_path(g.prompt_file) + "'");
    if (bytes.empty())
      throw InputError(deck.where("generate.prompt_file") + ": '" + shown_path(g.prompt_file) +
                       "' is empty (leave generate.prompt_file and generate.prompt empty to start without a prompt)");
    return bytes;
  }
  if (!g.prompt.empty()) return {g.prompt.begin(), g.prompt.end()};
  return {std::uint8_t('\n')};
}

// One stream's bytes: a temporary file next to the final one, renamed by commit() (a failure or
// a stop removes it), or standard output, flushed at every byte.
class ByteSink {
 public:
  explicit ByteSink(std::string path) : path_(std::move(path)) {
    if (path_.empty()) {
      file_ = stdout;
      return;
    }
    tmp_ = path_ + ".tmp-" + std::to_string(::getpid());
    interrupt::track(tmp_);
    file_ = std::fopen(tmp_.c_str(), "wb");
    if (!file_) {
      interrupt::untrack(tmp_);
      throw std::runtime_error("cannot create " + shown_path(tmp_));
    }
  }
  ~ByteSink() {
    if (tmp_.empty()) return;
    if (file_) std::fclose(file_);
    std::remove(tmp_.c_str());
    interrupt::untrack(tmp_);
  }
  ByteSink(const ByteSink&) = delete;
  ByteSink& operator=(const ByteSink&) = delete;

  void put(std::uint8_t b) {
    if (std::fputc(b, file_) == EOF) throw std::runtime_error("writing " + shown_path(name()) + " failed");
    if (tmp_.empty()) std::fflush(file_);
  }
  void commit() {
    if (tmp_.empty()) return;
    const bool ok = std::fclose(file_) == 0;
    file_ = nullptr;
    if (!ok || std::rename(tmp_.c_str(), path_.c_str()) != 0)
      throw std::runtime_error("writing " + shown_path(path_) + " failed");
    interrupt::untrack(tmp_);
    tmp_.clear();
  }

 private:
  std::string name() const { return tmp_.empty() ? "standard output" : tmp_; }
  std::string path_, tmp_;
  std::FILE* file_ = nullptr;
};

template <class S>
GenerateSummary generate_typed(const Deck& deck, const ModelState& state, const std::vector<std::uint8_t>& prompt,
                               const LogSink& log) {
  const auto& g = deck.generate;
  const ModelConfig& c = state.config;
  LanguageModel<S> model(c, state.seed, 1);
  model.set_parameters(state.params);
  GenerateSummary s;
  s.prompt_bytes = std::int64_t(prompt.size());
  s.streams = g.streams;
  // The last byte is predicted from the positions before it and never fed back: a model of
  // `limit` positions writes texts of up to limit + 1 bytes.
  const std::int64_t limit = Decoder<S>::positions_limit(c);
  if (s.prompt_bytes > limit)
    throw InputError(deck.where(g.prompt_file.empty() ? "generate.prompt" : "generate.prompt_file") + ": a prompt of " +
                     std::to_string(s.prompt_bytes) + " bytes is longer than the model's context (" +
                     std::to_string(limit) + " positions, model.positions " +
                     (c.positions == Positions::learned ? "learned" : "none with the zero_sink boundary") + ")");
  s.bytes_per_stream = g.length;
  if (g.length > limit + 1 - s.prompt_bytes) {
    s.bytes_per_stream = limit + 1 - s.prompt_bytes;
    s.stopped_at_context = true;
    log("warning    the model has " + std::to_string(limit) + " positions (its context: learned positions" +
        std::string(c.attention.boundary == Boundary::zero_sink ? " or the zero_sink boundary" : "") +
        "): generating " + std::to_string(s.bytes_per_stream) + " of the " + std::to_string(g.length) +
        " bytes asked for (a model trained with model.positions: none generates at any length)");
  }
  const std::int64_t capacity = s.prompt_bytes + s.bytes_per_stream - 1;
  const double state_bytes = double(Decoder<S>::state_bytes(c, capacity)) * double(g.streams),
               memory = node_memory_bytes();
  if (memory > 0 && state_bytes > 0.8 * memory)
    throw InputError(deck.where(g.length > 1 ? "generate.length" : "generate.streams") + ": " +
                     std::to_string(g.streams) + " stream(s) of " + std::to_string(capacity) + " positions need " +
                     format_bytes(state_bytes) + " of decoder state (" + name_of(c.attention.method) +
                     " attention), more than this node's " + format_bytes(memory) + " allows");
  Decoder<S> decoder(model, g.streams, capacity);
  s.state_bytes_per_stream = decoder.state_bytes_per_stream();
  Stopwatch prefill;
  // A prompt beyond the context goes through the forward as far as half this node's memory
  // holds its activations (the decoder steps through the rest, a step per byte).
  if (memory > 0)
    decoder.prefill(prompt, std::size_t(memory / 2));
  else
    decoder.prefill(prompt);
  s.prefill_seconds = prefill.seconds();
  char line[300];
  std::snprintf(line, sizeof line, "prefill    %lld prompt bytes through the forward in %.3f s; state %s per stream",
                static_cast<long long>(s.prompt_bytes), s.prefill_seconds,
                format_bytes(double(s.state_bytes_per_stream)).c_str());
  log(line);

  std::vector<std::unique_ptr<ByteSink>> sinks;
  s.outputs = generated_files(deck);
  if (s.outputs.empty())
    sinks.push_back(std::make_unique<ByteSink>(""));
  else
    for (const std::string& path : s.outputs) sinks.push_back(std::make_unique<ByteSink>(path));
  const SamplingOptions options{g.temperature, int(g.top_k), g.top_p, g.seed};
  std::vector<std::uint8_t> bytes(std::size_t(g.streams));
  Stopwatch decode;
  double last_progress = 0, halfway = 0;
  std::int64_t last_bytes = 0;
  for (std::int64_t i = 0; i < s.bytes_per_stream; ++i) {
    const std::vector<double>& logits = decoder.logits();
    for (double x : logits)
      if (!std::isfinite(x))
        throw std::runtime_error(
            "generate: the model gives non-finite logits at position " + std::to_string(decoder.position()) +
            " (a diverged or damaged checkpoint: " + shown_path(g.checkpoint) + "); nothing was written");
    for (std::int64_t st = 0; st < g.streams; ++st) {
      bytes[std::size_t(st)] =
          std::uint8_t(sample_byte(logits.data() + st * vocabulary, options, st, decoder.position()));
      sinks[std::size_t(st)]->put(bytes[std::size_t(st)]);
    }
    if (i + 1 < s.bytes_per_stream) decoder.step(bytes);
    const double now = decode.seconds();
    if (i + 1 == s.bytes_per_stream / 2) halfway = now;
    if (deck.run.progress_seconds > 0 && now - last_progress >= deck.run.progress_seconds) {
      // The rate since the last line: flat in the position for FMA, falling for exact.
      const std::int64_t done = i + 1;
      const double steps = double(done - last_bytes), seconds = now - last_progress;
      std::snprintf(
          line, sizeof line, "progress   %lld/%lld bytes per stream, position %lld: %.0f bytes/s, %.3f ms/step",
          static_cast<long long>(done), static_cast<long long>(s.bytes_per_stream),
          static_cast<long long>(decoder.position()), steps * double(g.streams) / seconds, 1e3 * seconds / steps);
      log(line);
      last_progress = now;
      last_bytes = done;
    }
  }
  s.decode_seconds = decode.seconds();
  for (auto& sink : sinks) sink->commit();
  s.bytes_per_second = double(s.bytes_per_stream) * double(g.streams) / s.decode_seconds;
  s.seconds_per_step = s.decode_seconds / double(s.bytes_per_stream);
  // The first steps after a prefill run from cold caches: the halves show the steady rate, and
  // whether it stays flat as the position grows.
  const std::int64_t half = s.bytes_per_stream / 2;
  if (half > 0) {
    s.seconds_per_step_second_half = (s.decode_seconds - halfway) / double(s.bytes_per_stream - half);
    std::snprintf(
        line, sizeof line, "decode     %lld steps: %.3f ms/step over the first half, %.3f ms/step over the second",
        static_cast<long long>(s.bytes_per_stream), 1e3 * halfway / double(half), 1e3 * s.seconds_per_step_second_half);
    log(line);
  }
  for (const std::string& path : s.outputs) log("wrote      " + path);
  return s;
}

}  // namespace

GenerateSummary generate_deck(const Deck& deck, const LogSink& log, MPI_Comm comm) {
  ScopedRegion region("fmattn::generate");
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);
  if (ranks > 1)
    throw InputError("fmattn generate runs on one rank (got " + std::to_string(ranks) +
                     "): its streams share one node's threads");
  const std::vector<std::uint8_t> prompt = read_prompt(deck);
  const ModelState state = load_checkpoint(deck, "generate.checkpoint", deck.generate.checkpoint);
  const ModelConfig& c = state.config;
  char line[300];
  std::snprintf(line, sizeof line,
                "model      %s: step %lld, %d layers, width %d, %d heads, context %d, %s positions, %s, %s attention",
                shown_path(deck.generate.checkpoint).c_str(), static_cast<long long>(state.step), c.layers, c.width,
                c.heads, c.context, c.positions == Positions::learned ? "learned" : "no", name_of(state.dtype),
                name_of(c.attention.method));
  log(line);
  return state.dtype == Dtype::float32 ? generate_typed<float>(deck, state, prompt, log)
                                       : generate_typed<double>(deck, state, prompt, log);
}

}  // namespace fmattn
