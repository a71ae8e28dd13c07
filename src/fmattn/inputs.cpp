#include "inputs.hpp"

#include "geometry.hpp"
#include "hdf5_io.hpp"
#include "profiling.hpp"
#include "synthetic.hpp"

namespace fmattn {

std::int64_t resolved_span(const Deck& deck) {
  if (deck.input.synthetic.span > 0) return deck.input.synthetic.span;
  const auto& a = deck.attention;
  const Geometry g = make_geometry(deck.problem.length, int(a.block_size), int(a.rank), a.variant);
  const std::int64_t top = g.L > 0 ? g.cell_size(g.L) : g.m;
  return std::max<std::int64_t>(1, top / g.p);
}

template <class Scalar, class ExecSpace>
QKV<Scalar, ExecSpace> make_inputs(const Deck& deck, std::int64_t first, std::int64_t last, MPI_Comm comm) {
  ScopedRegion region("fmattn::make_inputs");
  const std::int64_t n = deck.problem.length, d = deck.problem.head_dim, rows = last - first;
  QKV<Scalar, ExecSpace> x;
  using Tensor = typename QKV<Scalar, ExecSpace>::Tensor;
  const char* names[3] = {"q", "k", "v"};
  Tensor* views[3] = {&x.q, &x.k, &x.v};
  for (int t = 0; t < 3; ++t)
    *views[t] = Tensor(Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string("fmattn::") + names[t]), rows, n, d);

  if (deck.input.source == Source::synthetic) {
    const auto& s = deck.input.synthetic;
    const SyntheticPattern pattern = s.kind == SyntheticKind::gaussian ? SyntheticPattern::gaussian
                                     : s.kind == SyntheticKind::smooth ? SyntheticPattern::smooth
                                                                       : SyntheticPattern::piecewise_constant;
    for (int t = 0; t < 3; ++t) {
      const SyntheticSource src{pattern, deck.run.seed, std::uint64_t(t), n, resolved_span(deck), s.amplitude};
      fill_synthetic<ExecSpace, Scalar>(ExecSpace(), *views[t], src, first, 0);
    }
  } else {
    const std::vector<std::int64_t> shape{deck.problem.batch, deck.problem.heads, n, d};
    h5::Handle file = h5::open_read(deck.input.file, comm);
    for (int t = 0; t < 3; ++t) {
      auto host = Kokkos::create_mirror_view(*views[t]);
      h5::read_float_rows(file, names[t], shape, first, last, host.data(), deck.input.file);
      Kokkos::deep_copy(*views[t], host);
    }
  }
  Kokkos::fence();
  return x;
}

template QKV<float> make_inputs<float>(const Deck&, std::int64_t, std::int64_t, MPI_Comm);
template QKV<double> make_inputs<double>(const Deck&, std::int64_t, std::int64_t, MPI_Comm);

}  // namespace fmattn
