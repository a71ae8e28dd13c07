// The fmattn command line: run / validate / info / fit / train / eval. MPI first, then Kokkos; only rank 0
// prints. Exit codes: 0 success, 2 bad input, 1 any other failure.
#include <fmattn/app/blas_info.hpp>
#include <fmattn/app/fit.hpp>
#include <fmattn/app/generate.hpp>
#include <fmattn/app/lm_common.hpp>
#include <fmattn/app/run.hpp>
#include <fmattn/app/train.hpp>
#include <fmattn/io/deck.hpp>
#include <fmattn/io/paths.hpp>
#include <fmattn/util/errors.hpp>
#include <fmattn/util/interrupt.hpp>
#include <fmattn/util/log.hpp>
#include <fmattn/version.hpp>

#include <H5public.h>
#include <mpi.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace {

const char* usage = R"(usage: fmattn <command> [options]

commands:
  run DECK.yaml [--set section.key=value ...]       run the attention problem of a deck
  validate DECK.yaml [--set section.key=value ...]  check a deck and print it fully resolved
  info                                              version, build and runtime configuration
  fit DECK.yaml [--set section.key=value ...]       learn the downsampling weights of a deck (fit: section)
  train DECK.yaml [--set section.key=value ...]     train a byte-level language model (model, data, train)
  eval DECK.yaml [--set section.key=value ...]      bits per byte of eval.checkpoint on data.val
  generate DECK.yaml [--set section.key=value ...]  bytes from generate.checkpoint (generate section)

options:
  --set section.key=value   override a deck key (repeatable), e.g. --set problem.length=4096
  --kokkos-...              passed to Kokkos, e.g. --kokkos-num-threads=2
  -h, --help                this text
  --version                 the version
Exit codes: 0 success, 2 bad input (deck, file, option), 3 stopped by a signal after a
checkpoint (fit, train: restart to continue), 1 other failure.
)";

struct Cli {
  std::string command, deck;
  std::vector<std::string> overrides;
  std::vector<char*> kokkos_args;
};

Cli parse(int argc, char** argv) {
  Cli cli;
  cli.kokkos_args.push_back(argv[0]);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--kokkos-", 0) == 0) {
#if KOKKOS_VERSION < 30700
      // Kokkos before 3.7 spells --kokkos-num-threads as --kokkos-threads and ignores the new
      // name silently; keep the user's thread count.
      if (a.rfind("--kokkos-num-threads", 0) == 0) {
        static std::deque<std::string> renamed;  // stable addresses for argv
        renamed.push_back("--kokkos-threads" + a.substr(std::string("--kokkos-num-threads").size()));
        argv[i] = renamed.back().data();
      }
#endif
      cli.kokkos_args.push_back(argv[i]);
    } else if (a == "--set") {
      if (i + 1 >= argc) throw fmattn::InputError("--set needs section.key=value");
      cli.overrides.emplace_back(argv[++i]);
    } else if (a.rfind("--set=", 0) == 0) {
      cli.overrides.push_back(a.substr(6));
    } else if (a == "-h" || a == "--help" || a == "--version") {
      cli.command = a;
    } else if (!a.empty() && a[0] == '-') {
      throw fmattn::InputError("unknown option '" + a + "' (see fmattn --help)");
    } else if (cli.command.empty()) {
      cli.command = a;
    } else if (cli.deck.empty()) {
      cli.deck = a;
    } else {
      throw fmattn::InputError("unexpected argument '" + a + "' (see fmattn --help)");
    }
  }
  if (cli.command.empty()) throw fmattn::InputError("no command given (see fmattn --help)");
  return cli;
}

// True when every rank of `comm` reaches this call within `seconds`.
bool all_ranks_arrive(MPI_Comm comm, double seconds) {
  MPI_Request request;
  MPI_Ibarrier(comm, &request);
  const auto start = std::chrono::steady_clock::now();
  int done = 0;
  while (!done) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done) break;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > seconds) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

std::string os_name() {
  utsname u{};
  if (uname(&u) != 0) return "unknown OS";
  return std::string(u.sysname) + " " + u.release + " " + u.machine;
}

std::string runtime_info(int ranks) {
  std::string s;
  s += "fmattn " + std::string(fmattn::version_string) + " (commit " + fmattn::git_commit + ")\n";
  s += "Kokkos " + std::to_string(KOKKOS_VERSION / 10000) + "." + std::to_string(KOKKOS_VERSION / 100 % 100) + "." +
       std::to_string(KOKKOS_VERSION % 100) + ", default execution space " + Kokkos::DefaultExecutionSpace::name() +
       ", concurrency " + std::to_string(Kokkos::DefaultExecutionSpace().concurrency()) + "\n";
  s += "Kokkos backends:";
#ifdef KOKKOS_ENABLE_SERIAL
  s += " Serial";
#endif
#ifdef KOKKOS_ENABLE_OPENMP
  s += " OpenMP";
#endif
#ifdef KOKKOS_ENABLE_CUDA
  s += " CUDA";
#endif
#ifdef KOKKOS_ENABLE_HIP
  s += " HIP";
#endif
  s += "\n";
  int major = 0, minor = 0, len = 0;
  MPI_Get_version(&major, &minor);
  char lib[MPI_MAX_LIBRARY_VERSION_STRING];
  MPI_Get_library_version(lib, &len);
  std::string libs(lib, len);
  libs = libs.substr(0, libs.find_first_of(",\n"));
  s += "MPI " + std::to_string(major) + "." + std::to_string(minor) + " (" + libs + "), ranks " +
       std::to_string(ranks) + "\n";
  unsigned h5maj = 0, h5min = 0, h5rel = 0;
  H5get_libversion(&h5maj, &h5min, &h5rel);
  s += "HDF5 " + std::to_string(h5maj) + "." + std::to_string(h5min) + "." + std::to_string(h5rel);
#ifdef H5_HAVE_PARALLEL
  s += " (parallel)";
#endif
  s += "\nyaml-cpp " + std::string(fmattn::build_yaml_cpp) + "; Kokkos Kernels " + fmattn::build_kokkos_kernels + "\n";
  s += fmattn::dense_products_info();
  s += "build: " + std::string(fmattn::build_type) + ", " + fmattn::build_compiler + ", flags: " + fmattn::build_flags +
       "\n";
  s += "host: " + cpu_model() + ", " + std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " logical CPUs; " + os_name() +
       "\n";
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(name) + "=" + (v ? v : "(unset)");
  };
  s += "threads: " + env("OMP_NUM_THREADS") + " " + env("OMP_PROC_BIND") + " " + env("OMP_PLACES") + "\n";
  return s;
}

// A warning line when the ranks on rank 0's node times their threads exceed its cores (every
// thread then shares a core, and runs slower than with fewer threads), else "".
std::string oversubscription_warning() {
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int local = 1;
  MPI_Comm_size(node, &local);
  MPI_Comm_free(&node);
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  const long threads = long(Kokkos::DefaultHostExecutionSpace().concurrency());
  if (cores <= 0 || long(local) * threads <= cores) return "";
  const std::string head = "[fmattn] warning: " + std::to_string(local) + " rank(s) x " + std::to_string(threads) +
                           " threads on this node exceed its " + std::to_string(cores) + " cores: ";
  // One thread per rank (a Serial build, or threads already at 1): only fewer ranks help.
  if (threads == 1 || local > cores) return head + "run at most " + std::to_string(cores) + " rank(s) per node\n";
  return head + "set OMP_NUM_THREADS=" + std::to_string(cores / local) + " (or --kokkos-num-threads) for " +
         std::to_string(local) + " rank(s) per node\n";
}

// What training the deck's model on `ranks` ranks needs, for decks that set up training (an
// InputError for a decomposition training cannot use); nothing for others.
std::string train_line(const fmattn::Deck& deck, int ranks) {
  const bool training = std::any_of(deck.origins.begin(), deck.origins.end(), [](const auto& o) {
    return o.first.rfind("model.", 0) == 0 || o.first.rfind("train.", 0) == 0 || o.first.rfind("data.", 0) == 0;
  });
  if (!training) return "";
  const fmattn::TrainNeeds n = fmattn::train_needs(deck, ranks);
  std::string line =
      "# fmattn train on " + std::to_string(ranks) + " rank(s): " +
      (n.sequence
           ? "every window sharded (sequence), " + std::to_string(n.tokens_per_window) + " positions of each on rank 0"
           : "data parallel, up to " + std::to_string(n.windows_per_rank) + " window(s) per rank per step") +
      "; " + fmattn::format_bytes(n.bytes_per_rank) +
      " per rank for parameters, gradients, AdamW moments and activations";
  const double node = fmattn::node_memory_bytes();
  if (node > 0 && n.bytes_per_rank > 0.8 * node)
    line +=
        " (more than this node's " + fmattn::format_bytes(node) + " allow: more ranks, or a smaller train.micro_batch)";
  if (n.sequence)
    line += "; the busiest rank sends " + fmattn::format_bytes(n.sent_per_layer) + " per layer and window, " +
            fmattn::format_bytes(n.sent_per_step) + " per step";
  return line + "\n";
}

}  // namespace

int main(int argc, char** argv) {
  const fmattn::Stopwatch started;  // `done: total` is what the user waited, start-up included
  MPI_Init(&argc, &argv);
  fmattn::interrupt::install();
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  auto say = [&](const std::string& s) {
    if (rank == 0) std::cout << s << std::flush;
  };
  // Failures are agreed on over a communicator of their own, so that the check cannot meet a
  // collective call of the run itself.
  MPI_Comm error_comm;
  MPI_Comm_dup(MPI_COMM_WORLD, &error_comm);
  auto fail = [&](int code, const std::string& msg) {
    if (rank == 0)
      std::cerr << (code == fmattn::Interrupted::exit_code ? "fmattn: stopped: " : "fmattn: error: ") << msg
                << std::endl;
    // Bad input is usually seen by every rank alike: then all finish cleanly with `code`. When
    // some rank does not arrive within a few seconds it is stuck elsewhere: abort, never hang.
    if (ranks > 1 && !all_ranks_arrive(error_comm, 5.0)) {
      if (rank != 0) std::cerr << "fmattn: error (rank " << rank << "): " << msg << std::endl;
      MPI_Abort(MPI_COMM_WORLD, code);
    }
    MPI_Comm_free(&error_comm);
    if (Kokkos::is_initialized()) Kokkos::finalize();
    MPI_Finalize();
    return code;
  };

  Cli cli;
  try {
    cli = parse(argc, argv);
  } catch (const fmattn::InputError& e) {
    return fail(2, e.what());
  }
  if (cli.command == "-h" || cli.command == "--help" || cli.command == "--version") {
    say(cli.command == "--version" ? std::string("fmattn ") + fmattn::version_string + "\n" : std::string(usage));
    MPI_Comm_free(&error_comm);
    MPI_Finalize();
    return 0;
  }
  const bool needs_deck = cli.command == "run" || cli.command == "validate" || cli.command == "fit" ||
                          cli.command == "train" || cli.command == "eval" || cli.command == "generate";
  if (!needs_deck && cli.command != "info") return fail(2, "unknown command '" + cli.command + "' (see fmattn --help)");
  if (needs_deck && cli.deck.empty())
    return fail(2, cli.command + " needs a deck: fmattn " + cli.command + " DECK.yaml");
  if (!needs_deck && (!cli.deck.empty() || !cli.overrides.empty()))
    return fail(2, cli.command + " takes no deck or --set");

  // Kokkos' start-up advice (OMP_PROC_BIND...) matters for runs, not for printing a deck, and
  // once per job, not once per rank.
  char quiet[] = "--kokkos-disable-warnings";
  if (cli.command != "run" || rank != 0) cli.kokkos_args.push_back(quiet);
  int kargc = int(cli.kokkos_args.size());
  Kokkos::initialize(kargc, cli.kokkos_args.data());
  if (cli.command != "info" && cli.command != "validate") say(oversubscription_warning());
  int code = 0;
  try {
    if (cli.command == "info") {
      say(runtime_info(ranks));
    } else {
      const fmattn::Deck deck = fmattn::load_deck(cli.deck, cli.overrides);
      // Every verb's files, before any work: inputs regular files, outputs writable, no output
      // one of the inputs.
      if (cli.command != "validate") fmattn::check_files(deck, fmattn::files_of(deck, cli.command, cli.deck));
      if (cli.command == "validate") {
        const fmattn::RunNeeds needs = fmattn::run_needs(deck, ranks);
        say("# " + cli.deck + ": valid\n# fmattn run on " + std::to_string(ranks) + " rank(s) needs " +
            fmattn::format_bytes(needs.bytes_per_rank) +
            " per rank for q, k, v, output and coarse levels (this node has " + fmattn::format_bytes(needs.node_bytes) +
            "); " + std::to_string(needs.levels) + " coarse levels; output dataset " +
            fmattn::format_bytes(needs.output_bytes) + "\n" + train_line(deck, ranks) + fmattn::to_yaml(deck));
      } else if (cli.command == "train") {
        say("[fmattn] train '" + deck.run.name + "': " + std::to_string(deck.train.steps) + " steps of " +
            std::to_string(deck.train.batch) + " windows, " + std::to_string(ranks) + " rank(s) x " +
            std::to_string(Kokkos::DefaultExecutionSpace().concurrency()) + " threads\n");
        const auto s = fmattn::train_deck(deck, [&](const std::string& line) { say("[fmattn] " + line + "\n"); });
        char buf[512];
        if (s.first_step <= s.last_step)
          std::snprintf(buf, sizeof buf,
                        "[fmattn] done: steps %lld-%lld, loss %.4f -> %.4f bpb, validation %.4f bpb, %.0f tok/s, "
                        "%.1f model GFLOP/s, peak RSS %s, %.1f s -> %s\n",
                        static_cast<long long>(s.first_step), static_cast<long long>(s.last_step), s.first_loss,
                        s.last_loss, s.val_loss, s.tokens_per_second, s.model_flops_per_second * 1e-9,
                        fmattn::format_bytes(double(fmattn::peak_rss_bytes())).c_str(), s.seconds,
                        s.checkpoint.c_str());
        else
          std::snprintf(buf, sizeof buf, "[fmattn] done: no steps left, validation %.4f bpb, %.1f s\n", s.val_loss,
                        s.seconds);
        say(buf);
      } else if (cli.command == "eval") {
        const auto s = fmattn::eval_deck(deck, [&](const std::string& line) { say("[fmattn] " + line + "\n"); });
        char buf[256];
        std::snprintf(buf, sizeof buf, "[fmattn] done: %.4f bits per byte on %lld windows of %lld bytes, %.1f s\n",
                      s.bits_per_byte, static_cast<long long>(s.windows), static_cast<long long>(s.context), s.seconds);
        say(buf);
      } else if (cli.command == "generate") {
        // With the text on standard output, the log goes to standard error.
        const bool text_out = deck.generate.output == "-";
        const auto s = fmattn::generate_deck(deck, [&](const std::string& line) {
          if (text_out)
            std::cerr << "[fmattn] " << line << std::endl;
          else
            say("[fmattn] " + line + "\n");
        });
        char buf[512];
        std::snprintf(
            buf, sizeof buf,
            "[fmattn] done: %lld bytes x %lld stream(s) after a %lld-byte prompt, %.1f bytes/s, %.3f ms/step, "
            "prefill %.3f s, decoder state %s per stream, peak RSS %s\n",
            static_cast<long long>(s.bytes_per_stream), static_cast<long long>(s.streams),
            static_cast<long long>(s.prompt_bytes), s.bytes_per_second, 1e3 * s.seconds_per_step, s.prefill_seconds,
            fmattn::format_bytes(double(s.state_bytes_per_stream)).c_str(),
            fmattn::format_bytes(double(fmattn::peak_rss_bytes())).c_str());
        if (text_out)
          std::cerr << buf;
        else
          say(buf);
      } else if (cli.command == "fit") {
        say("[fmattn] fit '" + deck.run.name + "': n = " + std::to_string(deck.problem.length) + ", batch " +
            std::to_string(deck.problem.batch) + " x heads " + std::to_string(deck.problem.heads) +
            ", d = " + std::to_string(deck.problem.head_dim) + ", " + fmattn::name_of(deck.problem.dtype) + ", " +
            std::to_string(deck.fit.sample_queries) + " rows per head per step, " + std::to_string(ranks) +
            " rank(s)\n");
        const auto s = fmattn::fit_deck(deck, [&](const std::string& line) { say("[fmattn] " + line + "\n"); });
        char buf[512];
        if (s.first_step <= s.last_step)
          std::snprintf(buf, sizeof buf, "[fmattn] done: steps %lld-%lld, loss %.4e -> %.4e, %.3f s -> %s\n",
                        static_cast<long long>(s.first_step), static_cast<long long>(s.last_step), s.first_loss,
                        s.last_loss, s.seconds, s.checkpoint.c_str());
        else
          std::snprintf(buf, sizeof buf, "[fmattn] done: no steps left, %.3f s\n", s.seconds);
        say(buf);
      } else {
        say("[fmattn] " + runtime_info(ranks).substr(0, runtime_info(ranks).find('\n')) + ", " +
            Kokkos::DefaultExecutionSpace::name() + " x" +
            std::to_string(Kokkos::DefaultExecutionSpace().concurrency()) + ", " + std::to_string(ranks) +
            " rank(s)\n");
        say("[fmattn] run '" + deck.run.name + "': n = " + std::to_string(deck.problem.length) + ", batch " +
            std::to_string(deck.problem.batch) + " x heads " + std::to_string(deck.problem.heads) +
            ", d = " + std::to_string(deck.problem.head_dim) + ", " + fmattn::name_of(deck.problem.dtype) + "\n");
        const auto s = fmattn::run_deck(deck, [&](const std::string& line) { say("[fmattn] " + line + "\n"); });
        char error[64] = "validation off";
        if (s.validated) std::snprintf(error, sizeof error, "sampled rel. error max %.3e", s.max_rel_error);
        char buf[512];
        std::snprintf(buf, sizeof buf,
                      "[fmattn] done: total %.3f s, attention %.3f s, %.2f GFLOP/s, peak RSS %s, %s -> %s\n",
                      started.seconds(), s.attention_s, s.gflops, fmattn::format_bytes(double(s.peak_rss)).c_str(),
                      error, s.output_file.c_str());
        say(buf);
      }
    }
  } catch (const fmattn::InputError& e) {
    code = fail(2, e.what());
    return code;
  } catch (const fmattn::Interrupted& e) {
    code = fail(fmattn::Interrupted::exit_code, e.what());
    return code;
  } catch (const std::exception& e) {
    code = fail(1, e.what());
    return code;
  }
  MPI_Comm_free(&error_comm);
  Kokkos::finalize();
  MPI_Finalize();
  return code;
}
