#include <fmattn/util/interrupt.hpp>

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>

namespace fmattn::interrupt {

namespace {

// Everything the handler touches is preallocated and lock-free: a handler may only call
// async-signal-safe functions (unlink, write, _exit).
constexpr int slots = 8;
constexpr std::size_t path_max = 4096;
char tracked[slots][path_max];
std::atomic<bool> in_use[slots];
std::atomic<int> stop_signal{0};
std::atomic<int> deferred{0};

void say(const char* s) {
  const ssize_t ignored = ::write(STDERR_FILENO, s, std::strlen(s));
  (void)ignored;
}

extern "C" void on_stop(int sig) {
  stop_signal.store(sig);
  if (deferred.load() > 0) return;
  say("fmattn: interrupted by ");
  say(signal_name(sig));
  bool removed = false;
  for (int i = 0; i < slots; ++i)
    if (in_use[i].load() && ::unlink(tracked[i]) == 0) {
      say(removed ? ", " : "; removed the unfinished ");
      say(tracked[i]);
      removed = true;
    }
  say("; nothing more was written\n");
  ::_exit(128 + sig);
}

}  // namespace

void install() {
  struct sigaction action {};
  action.sa_handler = on_stop;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int requested() { return stop_signal.load(); }

const char* signal_name(int signal) { return signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "a signal"; }

void track(const std::string& path) {
  if (path.size() >= path_max) return;
  for (int i = 0; i < slots; ++i) {
    if (in_use[i].load()) continue;
    std::memcpy(tracked[i], path.c_str(), path.size() + 1);
    in_use[i].store(true);
    return;
  }
}

void untrack(const std::string& path) {
  for (int i = 0; i < slots; ++i)
    if (in_use[i].load() && path == tracked[i]) in_use[i].store(false);
}

Deferred::Deferred() { deferred.fetch_add(1); }
Deferred::~Deferred() { deferred.fetch_sub(1); }

}  // namespace fmattn::interrupt
