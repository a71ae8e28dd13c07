#include <fmattn/io/paths.hpp>

#include <fmattn/io/output_file.hpp>
#include <fmattn/util/errors.hpp>
#include <fmattn/util/log.hpp>

#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace fmattn {

namespace {

std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

std::string quoted(const std::string& path) { return "'" + shown_path(path) + "'"; }

}  // namespace

std::string shown_path(const std::string& path) {
  constexpr std::size_t keep = 96;
  if (path.size() <= 2 * keep + 40) return path;
  return path.substr(0, keep) + "[... " + std::to_string(path.size() - 2 * keep) + " characters ...]" +
         path.substr(path.size() - keep);
}

std::string path_problem(const std::string& path) {
  if (path.find('\0') != std::string::npos) return "a path cannot hold a NUL byte";
  if (path.size() >= PATH_MAX)
    return "a path of " + std::to_string(path.size()) + " characters is longer than this system allows (" +
           std::to_string(PATH_MAX - 1) + ")";
  std::size_t start = 0;
  while (start < path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    if (end - start > NAME_MAX)
      return "a file or folder name of " + std::to_string(end - start) +
             " characters is longer than this system allows (" + std::to_string(NAME_MAX) + ")";
    start = end + 1;
  }
  return "";
}

void check_input_file(const std::string& path, const std::string& label) {
  if (path.empty()) throw InputError(label + ": no file given");
  const std::string problem = path_problem(path);
  if (!problem.empty()) throw InputError(label + ": " + quoted(path) + ": " + problem);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw InputError(label + ": cannot open " + quoted(path) + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    throw InputError(label + ": cannot open " + quoted(path) + ": it is " + kind_of(st.st_mode) +
                     ", not a regular file");
  if (::access(path.c_str(), R_OK) != 0)
    throw InputError(label + ": cannot open " + quoted(path) + ": " + std::strerror(errno));
}

void check_output_file(const std::string& path, const std::string& label) {
  namespace fs = std::filesystem;
  if (path.empty()) throw InputError(label + ": no file given");
  const std::string problem = path_problem(path);
  if (!problem.empty()) throw InputError(label + ": " + quoted(path) + ": " + problem);
  if (path.back() == '/') throw InputError(label + ": " + quoted(path) + " names a folder, not a file");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) throw InputError(label + ": " + quoted(path) + " is a directory");
    if (!S_ISREG(st.st_mode))
      throw InputError(label + ": " + quoted(path) + " is " + kind_of(st.st_mode) + ", not a regular file");
  }
  // The nearest folder on the way that exists: the writer creates the rest.
  fs::path folder = fs::path(path).parent_path();
  if (folder.empty()) folder = ".";
  while (::stat(folder.c_str(), &st) != 0) {
    if (errno != ENOENT || folder == "." || folder.parent_path() == folder)
      throw InputError(label + ": cannot write into " + quoted(folder.string()) + ": " + std::strerror(errno));
    folder = folder.parent_path().empty() ? fs::path(".") : folder.parent_path();
  }
  if (!S_ISDIR(st.st_mode))
    throw InputError(label + ": cannot write into " + quoted(folder.string()) + ": it is " + kind_of(st.st_mode) +
                     ", not a folder");
  // Permissions do not tell (root, read-only mounts, /proc, /sys): create a probe file.
  std::string probe = (folder / ".fmattn-probe-XXXXXX").string();
  const int fd = ::mkstemp(probe.data());
  if (fd < 0) throw InputError(label + ": cannot write into " + quoted(folder.string()) + ": " + std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  const bool ea = ::stat(a.c_str(), &sa) == 0, eb = ::stat(b.c_str(), &sb) == 0;
  if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  std::error_code e1, e2;
  const auto ca = std::filesystem::weakly_canonical(std::filesystem::absolute(a, e1), e1);
  const auto cb = std::filesystem::weakly_canonical(std::filesystem::absolute(b, e2), e2);
  return !e1 && !e2 && ca == cb;
}

std::vector<FileUse> files_of(const Deck& d, const std::string& verb, const std::string& deck_path) {
  std::vector<FileUse> f;
  if (!deck_path.empty()) f.push_back({"", deck_path, false, false, ""});
  auto in = [&](const std::string& key, const std::string& path, bool hdf5) {
    if (!path.empty()) f.push_back({key, path, false, hdf5, ""});
  };
  auto out = [&](const std::string& key, const std::string& path, const std::string& replaces = "") {
    f.push_back({key, path, true, false, replaces});
  };
  if (verb == "run" || verb == "fit") {
    if (d.input.source == Source::hdf5) in("input.file", d.input.file, true);
    in("weights.file", d.weights.file, true);
  }
  if (verb == "run") out("output.file", d.resolved_output_file());
  if (verb == "fit") {
    in("fit.restart_from", d.fit.restart_from, true);
    out("fit.checkpoint_file", d.fit.checkpoint_file, "fit.restart_from");
  }
  if (verb == "train") {
    in("data.train", d.data.train, false);
    in("data.val", d.data.val, false);
    in("train.restart_from", d.train.restart_from, true);
    out("train.checkpoint_file", d.train.checkpoint_file, "train.restart_from");
  }
  if (verb == "eval") {
    in("data.val", d.data.val, false);
    in("eval.checkpoint", d.eval.checkpoint, true);
    if (d.eval.checkpoint.empty()) throw InputError(d.where("eval.checkpoint") + ": no model checkpoint given");
    if (!d.eval.output.empty()) out("eval.output", d.eval.output);
  }
  if (verb == "generate") {
    in("generate.checkpoint", d.generate.checkpoint, true);
    if (d.generate.checkpoint.empty()) throw InputError(d.where("generate.checkpoint") + ": no model checkpoint given");
    in("generate.prompt_file", d.generate.prompt_file, false);
    for (const std::string& path : generated_files(d)) out("generate.output", path);
  }
  return f;
}

std::vector<std::string> generated_files(const Deck& d) {
  const auto& g = d.generate;
  if (g.output == "-") return {};
  if (g.streams == 1) return {g.output + ".txt"};
  std::vector<std::string> paths;
  for (std::int64_t s = 0; s < g.streams; ++s) paths.push_back(g.output + "-" + std::to_string(s) + ".txt");
  return paths;
}

void check_files(const Deck& d, const std::vector<FileUse>& files, MPI_Comm comm) {
  const std::string problem = failure_on_root(comm, [&] {
    auto label = [&](const FileUse& u) { return u.key.empty() ? shown_path(u.path) : d.where(u.key); };
    for (const FileUse& u : files) {
      if (u.output) {
        check_output_file(u.path, label(u));
        continue;
      }
      if (u.key.empty()) continue;  // the deck: read already
      check_input_file(u.path, label(u));
      if (u.hdf5 && H5Fis_hdf5(u.path.c_str()) <= 0)
        throw InputError(label(u) + ": " + shown_path(u.path) + ": not an HDF5 file");
      struct stat st {};
      const double memory = node_memory_bytes();
      if (!u.hdf5 && ::stat(u.path.c_str(), &st) == 0 && memory > 0 && double(st.st_size) > memory / 2)
        throw InputError(label(u) + ": " + quoted(u.path) + " holds " + format_bytes(double(st.st_size)) +
                         ", more than half of this node's memory (" + format_bytes(memory) + ")");
    }
    for (const FileUse& o : files) {
      if (!o.output) continue;
      for (const FileUse& i : files) {
        if (&i == &o || (!i.key.empty() && i.key == o.replaces) || !same_file(o.path, i.path)) continue;
        const std::string other = i.key.empty() ? "the deck " + quoted(i.path) : d.where(i.key);
        throw InputError(label(o) + ": " + quoted(o.path) + " is the same file as " + other +
                         ": writing it would destroy " + (i.output ? "the other output" : "an input of this run"));
      }
    }
  });
  if (!problem.empty()) throw InputError(problem);
}

}  // namespace fmattn
