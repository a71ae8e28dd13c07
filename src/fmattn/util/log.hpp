// Log lines for the user. The library never prints: it hands lines to a sink that the CLI
// connects to standard output on rank 0.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace fmattn {

using LogSink = std::function<void(const std::string&)>;

// Wall-clock seconds of named phases, in the order they ran.
class PhaseTimes {
 public:
  void add(const std::string& name, double seconds) { phases_.emplace_back(name, seconds); }
  double get(const std::string& name) const;
  const std::vector<std::pair<std::string, double>>& all() const { return phases_; }

 private:
  std::vector<std::pair<std::string, double>> phases_;
};

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Peak resident memory of this process, bytes.
std::size_t peak_rss_bytes();
// This node's physical memory in bytes (0 when unknown).
double node_memory_bytes();
// "1.23 GiB" style.
std::string format_bytes(double bytes);
// Current UTC time, ISO 8601.
std::string iso8601_now();

}  // namespace fmattn
