#include <fmattn/io/inputs.hpp>

#include <fmattn/core/geometry.hpp>
#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/util/profiling.hpp>
#include "kernels/allocation.hpp"
#include "kernels/synthetic.hpp"

namespace fmattn {

std::int64_t resolved_span(const Deck& deck) {
  if (deck.input.synthetic.span > 0) return deck.input.synthetic.span;
  const auto& a = deck.attention;
  const Geometry g = make_geometry(deck.problem.length, int(a.block_size), int(a.rank), a.variant);
  const std::int64_t top = g.L > 0 ? g.cell_size(g.L) : g.m;
  return std::max<std::int64_t>(1, top / g.p);
}

namespace {

const char* const tensor_names[3] = {"q", "k", "v"};

// Fills x [heads][rows][d] with tensor t (0 q, 1 k, 2 v) of the deck's input for batch·heads
// [head0, head0 + heads) and positions [token0, token0 + rows). `file` is open for hdf5 input.
template <class Scalar, class ExecSpace>
void fill_input(const Deck& deck, int t, typename QKV<Scalar, ExecSpace>::Tensor x, std::int64_t head0,
                std::int64_t token0, hid_t file) {
  if (deck.input.source == Source::synthetic) {
    const auto& s = deck.input.synthetic;
    const detail::SyntheticPattern pattern = s.kind == SyntheticKind::gaussian ? detail::SyntheticPattern::gaussian
                                             : s.kind == SyntheticKind::smooth
                                                 ? detail::SyntheticPattern::smooth
                                                 : detail::SyntheticPattern::piecewise_constant;
    const detail::SyntheticSource src{
        pattern, deck.run.seed, std::uint64_t(t), deck.problem.length, resolved_span(deck), s.amplitude};
    detail::fill_synthetic<ExecSpace, Scalar>(ExecSpace(), x, src, head0, token0);
    return;
  }
  const std::vector<std::int64_t> shape{deck.problem.batch, deck.problem.heads, deck.problem.length,
                                        deck.problem.head_dim};
  auto host = Kokkos::create_mirror_view(x);
  h5::read_float_rows(file, tensor_names[t], shape, head0, head0 + std::int64_t(x.extent(0)), host.data(),
                      deck.input.file, h5::TokenRange{token0, std::int64_t(x.extent(1))},
                      max_input_magnitude<Scalar>());
  Kokkos::deep_copy(x, host);
}

h5::Handle open_input(const Deck& deck, MPI_Comm comm) {
  return deck.input.source == Source::hdf5 ? h5::open_read(deck.input.file, comm) : h5::Handle();
}

}  // namespace

template <class Scalar, class ExecSpace>
QKV<Scalar, ExecSpace> make_inputs(const Deck& deck, std::int64_t first, std::int64_t last, MPI_Comm comm) {
  ScopedRegion region("fmattn::make_inputs");
  const std::int64_t n = deck.problem.length, d = deck.problem.head_dim, rows = last - first;
  QKV<Scalar, ExecSpace> x;
  using Tensor = typename QKV<Scalar, ExecSpace>::Tensor;
  Tensor* views[3] = {&x.q, &x.k, &x.v};
  h5::Handle file = open_input(deck, comm);
  for (int t = 0; t < 3; ++t) {
    *views[t] = detail::allocate<Tensor>(ExecSpace(), std::string("fmattn::") + tensor_names[t], rows, n, d);
    fill_input<Scalar, ExecSpace>(deck, t, *views[t], first, 0, file);
  }
  Kokkos::fence();
  return x;
}

template <class Scalar, class ExecSpace>
QKV<Scalar, ExecSpace> make_shard_inputs(const Deck& deck, const Geometry& g, const Shard& shard, MPI_Comm comm) {
  ScopedRegion region("fmattn::make_shard_inputs");
  const std::int64_t heads = deck.problem.batch * deck.problem.heads, d = deck.problem.head_dim;
  const std::int64_t own0 = shard.token_begin(g), own = shard.token_end(g) - own0;
  using Tensor = typename QKV<Scalar, ExecSpace>::Tensor;
  QKV<Scalar, ExecSpace> x;
  x.q = detail::allocate<Tensor>(ExecSpace(), "fmattn::q", heads, own, d);
  x.k = detail::allocate_zeroed<Tensor>(ExecSpace(), "fmattn::k", heads, shard.key_end - shard.key_begin, d);
  x.v = detail::allocate_zeroed<Tensor>(ExecSpace(), "fmattn::v", heads, shard.key_end - shard.key_begin, d);
  h5::Handle file = open_input(deck, comm);
  fill_input<Scalar, ExecSpace>(deck, 0, x.q, 0, own0, file);
  // K and V: the own rows; the halo rows come from the neighbours.
  const Tensor rows = detail::allocate<Tensor>(ExecSpace(), "fmattn::input_rows", heads, own, d);
  const auto own_rows = std::make_pair(own0 - shard.key_begin, own0 - shard.key_begin + own);
  for (int t = 1; t < 3; ++t) {
    fill_input<Scalar, ExecSpace>(deck, t, rows, 0, own0, file);
    Kokkos::deep_copy(Kokkos::subview(t == 1 ? x.k : x.v, Kokkos::ALL, own_rows, Kokkos::ALL), rows);
  }
  Kokkos::fence();
  return x;
}

template QKV<float> make_inputs<float>(const Deck&, std::int64_t, std::int64_t, MPI_Comm);
template QKV<double> make_inputs<double>(const Deck&, std::int64_t, std::int64_t, MPI_Comm);
template QKV<float> make_shard_inputs<float>(const Deck&, const Geometry&, const Shard&, MPI_Comm);
template QKV<double> make_shard_inputs<double>(const Deck&, const Geometry&, const Shard&, MPI_Comm);

}  // namespace fmattn
