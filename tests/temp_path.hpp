// Files that tests create in their working directory: names unique per test and process (ctest
// runs several test processes in the same directory), removed when the test ends.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace testing_files {

// <test name>-<pid>-<counter>-<stem>
inline std::string unique_name(const std::string& stem) {
  static int counter = 0;
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info ? info->test_suite_name() : "test") + "-" + (info ? info->name() : "x") + "-" +
                     std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + stem;
  // Parameterised tests are named Prefix/Suite.Test/N: keep the file in the working directory.
  for (char& c : name)
    if (c == '/') c = '_';
  return name;
}

// A path in the working directory (a file written with `text` when given), removed with
// everything under it at the end of the test.
class TempPath {
 public:
  explicit TempPath(const std::string& stem) : path_(unique_name(stem)) {}
  TempPath(const std::string& stem, const std::string& text) : TempPath(stem) { std::ofstream(path_) << text; }
  ~TempPath() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempPath(const TempPath&) = delete;
  TempPath& operator=(const TempPath&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace testing_files
