// fmattn-bench: the machine's GEMM ceiling in each precision measured (Kokkos Kernels gemm, OpenBLAS
// or cuBLAS underneath when Kokkos Kernels was built with it), then attention forward passes over a sweep of n, printed
// as a table and written as CSV: time, GFLOP/s (the cost model's honest count), % of the
// ceiling, bytes moved, resident memory; the header and CSV also give the memory read bandwidth.
//
//   fmattn_bench [--n-min 12] [--n-max 22] [--exact-max 16] [--d 64,128] [--repeat 3]
//                [--cases fma-causal,fma-bidirectional,linear-causal,exact-causal] [--csv FILE]
//                [--dtype float,double] [--kokkos-num-threads=T]
// Cases `grad-causal`, `grad-bidirectional` (FMA) and `exact-grad-causal`,
// `exact-grad-bidirectional` time the backward pass (dQ, dK, dV for an output gradient on every
// row) given the output and log-sum-exp of a forward, as training runs it; the forward (with
// its lse) is timed in the same run and both are printed. Backward flops are counted the usual
// way for attention: 2.5x the forward's slot flops (five products of the scores' size
// against two).
#include <fmattn/core/attention.hpp>
#include <fmattn/core/cost.hpp>
#include <fmattn/util/log.hpp>
#include "kernels/allocation.hpp"
#include "kernels/bench_probes.hpp"

#include <mpi.h>
#include <unistd.h>
#include <KokkosBlas3_gemm.hpp>
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

const char* usage =
    "usage: fmattn_bench [--n-min 12] [--n-max 22] [--exact-max 16] [--d 64,128] [--repeat 3]\n"
    "                    [--cases fma-causal,fma-bidirectional,linear-causal,exact-causal,grad-causal,\n"
    "                     grad-bidirectional,exact-grad-causal,exact-grad-bidirectional] [--csv FILE]\n"
    "                    [--dtype float,double] [--kokkos-num-threads=T]\n"
    "The GEMM ceiling of each dtype (default float), then attention passes over n = 2^n-min .. 2^n-max (exact up to\n"
    "2^exact-max): time, GFLOP/s, % of the ceiling, bytes moved, resident memory; CSV to FILE\n"
    "(default bench.csv).\n";

struct Options {
  int n_min = 12, n_max = 22, exact_max = 16, repeat = 3;
  std::vector<int> dims{64, 128};
  std::vector<std::string> cases{"fma-causal", "fma-bidirectional", "linear-causal", "exact-causal"};
  std::string csv = "bench.csv";
  std::vector<std::string> dtypes{"float"};
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) out.push_back(x);
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--n-min")
      o.n_min = std::stoi(next());
    else if (a == "--n-max")
      o.n_max = std::stoi(next());
    else if (a == "--exact-max")
      o.exact_max = std::stoi(next());
    else if (a == "--repeat")
      o.repeat = std::stoi(next());
    else if (a == "--csv")
      o.csv = next();
    else if (a == "--cases")
      o.cases = split(next());
    else if (a == "--dtype") {
      o.dtypes = split(next());
      for (const auto& t : o.dtypes)
        if (t != "float" && t != "double") throw std::runtime_error("--dtype takes float and/or double, not " + t);
    } else if (a == "--d") {
      o.dims.clear();
      for (const auto& x : split(next())) o.dims.push_back(std::stoi(x));
    } else if (a.rfind("--kokkos-", 0) != 0) {
      throw std::runtime_error("unknown option " + a);
    }
  }
  return o;
}

std::size_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * std::size_t(sysconf(_SC_PAGE_SIZE));
}

// Best of three 2048³ and three 3072³ GEMMs. OpenBLAS runs its own threads: they must not
// inherit a binding of the Kokkos threads (run with OMP_PROC_BIND=false).
template <class Scalar>
double gemm_ceiling() {
  double best = 0;
  for (int n : {2048, 3072}) {
    Kokkos::View<Scalar**, Kokkos::LayoutLeft> A("A", n, n), B("B", n, n), C("C", n, n);
    Kokkos::deep_copy(A, Scalar(1));
    Kokkos::deep_copy(B, Scalar(0.5));
    KokkosBlas::gemm("N", "N", Scalar(1), A, B, Scalar(0), C);
    for (int r = 0; r < 3; ++r) {
      Kokkos::fence();
      fmattn::Stopwatch w;
      KokkosBlas::gemm("N", "N", Scalar(1), A, B, Scalar(0), C);
      Kokkos::fence();
      best = std::max(best, 2.0 * n * double(n) * n / w.seconds() * 1e-9);
    }
  }
  return best;
}

// Best of three sums over 512 MiB of floats: the memory read bandwidth the phases that stream
// K and V (the upward pass, the fine blocks) meet. Blocks of 4096 values are summed in vector
// lanes so that the sum is limited by memory, not by the latency of one accumulator.
double read_bandwidth() {
  constexpr std::int64_t block = 4096, blocks = (std::int64_t(1) << 27) / block;
  Kokkos::View<float*> x("x", blocks * block);
  Kokkos::deep_copy(x, 1.0f);
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    fmattn::Stopwatch w;
    const float total = fmattn::detail::streaming_sum(Kokkos::DefaultExecutionSpace(), x, block);
    best = std::max(best, double(x.size()) * sizeof(float) / w.seconds() * 1e-9);
    if (total != float(blocks) * float(block)) throw std::runtime_error("read bandwidth: wrong sum");
  }
  return best;
}

struct Case {
  fmattn::AttentionOptions opt;
  fmattn::Variant variant;
  bool backward = false;
};

Case case_of(const std::string& name) {
  Case c;
  const auto dash = name.rfind('-');
  const std::string kind = name.substr(0, dash == std::string::npos ? 0 : dash), variant = name.substr(dash + 1);
  if ((kind != "exact" && kind != "fma" && kind != "linear" && kind != "grad" && kind != "exact-grad") ||
      (variant != "causal" && variant != "bidirectional"))
    throw std::runtime_error("unknown case " + name);
  c.variant = variant == "causal" ? fmattn::Variant::causal : fmattn::Variant::bidirectional;
  c.opt.method = kind.rfind("exact", 0) == 0 ? fmattn::Method::exact : fmattn::Method::fma;
  c.opt.coarse_queries = kind == "linear";
  c.backward = kind == "grad" || kind == "exact-grad";
  return c;
}

// One point of the sweep: case `name` at length n and head width d in precision Scalar.
template <class Scalar>
void measure(const Options& o, const std::string& name, const Case& c, std::int64_t n, int d, int threads,
             double ceiling, double bandwidth, std::ofstream& csv) {
  const char* dtype = sizeof(Scalar) == 4 ? "float" : "double";
  const auto g = fmattn::make_geometry(n, 64, 4, c.variant);
  auto opt = c.opt;
  opt.scale = 1.0 / std::sqrt(double(d));
  using Att = fmattn::Attention<Scalar>;
  // Placed like fmattn run's arrays (huge pages), so that warm and cold runs compare.
  const auto q = fmattn::detail::allocate<typename Att::Tensor>(Kokkos::DefaultExecutionSpace(), "q", 1, n, d),
             k = fmattn::detail::allocate<typename Att::Tensor>(Kokkos::DefaultExecutionSpace(), "k", 1, n, d),
             v = fmattn::detail::allocate<typename Att::Tensor>(Kokkos::DefaultExecutionSpace(), "v", 1, n, d),
             out = fmattn::detail::allocate<typename Att::Tensor>(Kokkos::DefaultExecutionSpace(), "out", 1, n, d);
  // Uniform values of unit variance: the cost does not depend on the values.
  const typename Att::Tensor* views[3] = {&q, &k, &v};
  for (int t = 0; t < 3; ++t) fmattn::detail::fill_unit_variance(Kokkos::DefaultExecutionSpace(), *views[t], t);
  Att att(g, opt, d, 1);
  typename Att::Tensor dq, dk, dv;
  typename Att::RowValues lse;
  if (c.backward) {
    dq = fmattn::detail::allocate_zeroed<typename Att::Tensor>(Kokkos::DefaultExecutionSpace(), "dq", 1, n, d);
    dk = fmattn::detail::allocate_zeroed<typename Att::Tensor>(Kokkos::DefaultExecutionSpace(), "dk", 1, n, d);
    dv = fmattn::detail::allocate_zeroed<typename Att::Tensor>(Kokkos::DefaultExecutionSpace(), "dv", 1, n, d);
    lse = fmattn::detail::allocate_zeroed<typename Att::RowValues>(Kokkos::DefaultExecutionSpace(), "lse", 1, n);
  }
  // q as the output gradient: any nonzero values cost the same.
  auto forward = [&] {
    att.forward(q, k, v, out, lse);
    Kokkos::fence();
  };
  auto backward = [&] {
    att.backward(q, k, v, out, lse, q, dq, dk, dv);
    Kokkos::fence();
  };
  // Warm-up (first touch of the workspace, caches), then the best of `repeat` runs; one
  // run when a run takes seconds.
  auto best_of = [&](const auto& pass) {
    fmattn::Stopwatch warm;
    pass();
    const int repeat = warm.seconds() > 2.0 ? 1 : o.repeat;
    double best = 1e300;
    for (int r = 0; r < repeat; ++r) {
      fmattn::Stopwatch w;
      pass();
      best = std::min(best, w.seconds());
    }
    return best;
  };
  const double forward_s = best_of(forward);
  const double best = c.backward ? best_of(backward) : forward_s;
  const auto cost = fmattn::attention_cost(g, opt, d, 1);
  const double flops = c.backward ? 2.5 * cost.attention_flops : cost.flops();
  const double gflops = flops / best * 1e-9;
  const double bytes = 4.0 * n * d * sizeof(Scalar) + double(att.workspace_bytes()) * 2;
  std::printf("%-18s %-6s %4d %9lld %10.4f %10.2f %7.1f%% %11s %11s", name.c_str(), dtype, d, (long long)n, best,
              gflops, 100 * gflops / ceiling, fmattn::format_bytes(bytes).c_str(),
              fmattn::format_bytes(double(resident_bytes())).c_str());
  if (c.backward)
    std::printf("  forward %.4f s, backward/forward %.2f, backward workspace %.2f n·d values", forward_s,
                best / forward_s, double(att.backward_workspace_bytes()) / sizeof(Scalar) / double(n * d));
  std::printf("\n");
  std::fflush(stdout);
  csv << name << ',' << threads << ',' << d << ',' << n << ',' << best << ',' << gflops << ',' << 100 * gflops / ceiling
      << ',' << ceiling << ',' << flops << ',' << bytes << ',' << resident_bytes() << ',' << bandwidth << ','
      << (c.backward ? forward_s : best) << ',' << dtype << '\n';
  // Each row on disk when measured: a sweep stopped by a time limit keeps what it measured.
  csv.flush();
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "-h" || std::string(argv[i]) == "--help") {
      std::printf("%s", usage);
      return 0;
    }
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  int rc = 0;
  try {
    const Options o = parse(argc, argv);
    const int threads = Kokkos::DefaultExecutionSpace().concurrency();
    const auto wants = [&](const char* t) { return std::find(o.dtypes.begin(), o.dtypes.end(), t) != o.dtypes.end(); };
    // The GEMM ceiling of each precision measured, the percentages of each against its own.
    const double ceilings[2] = {wants("float") ? gemm_ceiling<float>() : 0.0,
                                wants("double") ? gemm_ceiling<double>() : 0.0};
    const double bandwidth = read_bandwidth();
    std::printf(
        "# fmattn-bench: %s x%d, GEMM ceiling (KokkosBlas::gemm) fp32 %.1f fp64 %.1f GFLOP/s, memory read %.1f "
        "GB/s\n",
        Kokkos::DefaultExecutionSpace::name(), threads, ceilings[0], ceilings[1], bandwidth);
    std::printf("%-18s %-6s %4s %9s %10s %10s %8s %11s %11s\n", "case", "dtype", "d", "n", "time_s", "GFLOP/s", "%peak",
                "bytes_moved", "resident");
    std::ofstream csv(o.csv);
    csv << "case,threads,d,n,time_s,gflops,percent_of_ceiling,ceiling_gflops,flops,bytes_moved,resident_bytes,"
           "read_gbs,forward_time_s,dtype\n";
    for (const std::string& dtype : o.dtypes)
      for (const std::string& name : o.cases) {
        const Case c = case_of(name);
        for (int d : o.dims)
          for (int e = o.n_min; e <= (c.opt.method == fmattn::Method::exact ? std::min(o.exact_max, o.n_max) : o.n_max);
               ++e) {
            const std::int64_t n = std::int64_t(1) << e;
            if (dtype == "float")
              measure<float>(o, name, c, n, d, threads, ceilings[0], bandwidth, csv);
            else
              measure<double>(o, name, c, n, d, threads, ceilings[1], bandwidth, csv);
          }
      }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fmattn_bench: %s\n", e.what());
    rc = 2;
  }
  Kokkos::finalize();
  MPI_Finalize();
  return rc;
}
