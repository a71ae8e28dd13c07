#include <fmattn/parallel/sequence_parallel.hpp>

#include <fmattn/util/errors.hpp>
#include <fmattn/util/log.hpp>
#include <fmattn/util/profiling.hpp>

#include "kernels/move_rows.hpp"

#include <algorithm>
#include <vector>

namespace fmattn {

namespace {

template <class Scalar>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}

// Rows [start, start + rows) of a and b (all heads) for every start, to or from a host buffer
// laid out [start][a, b][head][row][d]: the payload of halo blocks and of coarse cells.
template <class Exec, class Tensor, class Scalar>
void move_rows(const Exec& space, const Tensor& a, const Tensor& b, const std::vector<std::int64_t>& starts,
               std::int64_t rows, std::vector<Scalar>& host, bool pack) {
  using Mem = typename Tensor::memory_space;
  const std::int64_t S = std::int64_t(starts.size()), H = a.extent(0), d = a.extent(2);
  const std::int64_t per = 2 * H * rows * d;
  if (pack) host.assign(S * per, Scalar(0));
  if (S == 0 || per == 0) return;
  Kokkos::View<std::int64_t*, Mem> first(Kokkos::view_alloc(space, std::string("fmattn::move_rows_starts")), S);
  Kokkos::deep_copy(first, Kokkos::View<const std::int64_t*, Kokkos::HostSpace, Kokkos::MemoryUnmanaged>(
                               starts.data(), starts.size()));
  Kokkos::View<Scalar*, Mem> buf(
      Kokkos::view_alloc(space, Kokkos::WithoutInitializing, std::string("fmattn::move_rows_buffer")), S * per);
  Kokkos::View<Scalar*, Kokkos::HostSpace, Kokkos::MemoryUnmanaged> hv(host.data(), host.size());
  if (!pack) Kokkos::deep_copy(buf, hv);
  detail::move_row_blocks(space, a, b, first, rows, buf, pack);
  if (pack) Kokkos::deep_copy(hv, buf);
  space.fence();
}

}  // namespace

template <class Scalar>
ShardedAttention<Scalar>::ShardedAttention(const Geometry& g, const AttentionOptions& opt, int head_dim,
                                           std::int64_t heads, MPI_Comm comm, const ExecSpace& space)
    : g_(g),
      opt_(opt),
      d_(head_dim),
      heads_(heads),
      comm_(comm),
      plan_([&] {
        int rank = 0, ranks = 1;
        MPI_Comm_rank(comm, &rank);
        MPI_Comm_size(comm, &ranks);
        return plan_shard(g, rank, ranks);
      }()),
      att_(g, plan_.shard, opt, head_dim, heads, space) {}

template <class Scalar>
void ShardedAttention<Scalar>::reduce(int level) {
  std::vector<std::size_t> nodes;
  for (std::size_t i = 0; i < plan_.reduce.size(); ++i)
    if (level == 0 || plan_.reduce[i].level == level) nodes.push_back(i);
  if (nodes.empty()) return;
  const Shard& s = plan_.shard;
  const std::int64_t p = g_.p, per = 2 * heads_ * p * d_;
  const MPI_Datatype type = mpi_type<Scalar>();
  std::vector<std::int64_t> starts;
  starts.reserve(nodes.size());
  for (std::size_t i : nodes) starts.push_back(s.coarse_index(plan_.reduce[i].level, plan_.reduce[i].cell, 0));
  std::vector<Scalar> sums;
  move_rows(att_.execution_space_instance(), att_.coarse_keys_mutable(), att_.coarse_values_mutable(), starts, p, sums,
            true);
  // Partial sums of the children: received in any order, added in a fixed one.
  std::vector<std::vector<Scalar>> from_children;
  std::vector<MPI_Request> recv;
  for (std::size_t i : nodes)
    for (std::size_t c = 0; c < plan_.reduce[i].children.size(); ++c) {
      from_children.emplace_back(per);
      recv.emplace_back();
      MPI_Irecv(from_children.back().data(), int(per), type, plan_.reduce[i].children[c], plan_.reduce_child_tags[i][c],
                comm_, &recv.back());
      stats_.bytes_received += per * std::int64_t(sizeof(Scalar));
    }
  // Parents are lower ranks than their children, so waiting for all children first cannot
  // deadlock.
  MPI_Waitall(int(recv.size()), recv.data(), MPI_STATUSES_IGNORE);
  std::vector<MPI_Request> send;
  std::vector<std::int64_t> root_starts;
  std::vector<Scalar> complete;
  std::size_t child = 0;
  for (std::size_t j = 0; j < nodes.size(); ++j) {
    const ShardPlan::Node& node = plan_.reduce[nodes[j]];
    Scalar* sum = sums.data() + j * per;
    for (std::size_t c = 0; c < node.children.size(); ++c, ++child)
      for (std::int64_t e = 0; e < per; ++e) sum[e] += from_children[child][e];
    if (node.parent >= 0) {
      send.emplace_back();
      MPI_Isend(sum, int(per), type, node.parent, node.tag, comm_, &send.back());
      stats_.bytes_sent += per * std::int64_t(sizeof(Scalar));
    } else {
      root_starts.push_back(starts[j]);
      complete.insert(complete.end(), sum, sum + per);
    }
  }
  move_rows(att_.execution_space_instance(), att_.coarse_keys_mutable(), att_.coarse_values_mutable(), root_starts, p,
            complete, false);
  MPI_Waitall(int(send.size()), send.data(), MPI_STATUSES_IGNORE);
}

// Every cell of `nodes` from its root, where this rank holds it in (k, v), down its tree to
// each rank there, which keeps it in its own (k, v).
template <class Scalar>
void ShardedAttention<Scalar>::pass_down(const std::vector<ShardPlan::Node>& nodes,
                                         const std::vector<std::vector<int>>& child_tags, Tensor k, Tensor v) {
  const Shard& s = plan_.shard;
  const std::int64_t p = g_.p, per = 2 * heads_ * p * d_;
  const MPI_Datatype type = mpi_type<Scalar>();
  const auto& space = att_.execution_space_instance();
  std::vector<std::int64_t> root_starts, recv_starts;
  std::vector<std::size_t> roots, inner;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const auto& node = nodes[i];
    (node.parent < 0 ? roots : inner).push_back(i);
    (node.parent < 0 ? root_starts : recv_starts).push_back(s.coarse_index(node.level, node.cell, 0));
  }
  std::vector<MPI_Request> send;
  send.reserve(2 * nodes.size());
  auto pass_on = [&](std::size_t i, const Scalar* data) {
    const auto& node = nodes[i];
    for (std::size_t c = 0; c < node.children.size(); ++c) {
      send.emplace_back();
      MPI_Isend(data, int(per), type, node.children[c], child_tags[i][c], comm_, &send.back());
      stats_.bytes_sent += per * std::int64_t(sizeof(Scalar));
    }
  };
  std::vector<Scalar> owned;
  move_rows(space, k, v, root_starts, p, owned, true);
  for (std::size_t j = 0; j < roots.size(); ++j) pass_on(roots[j], owned.data() + j * per);
  std::vector<Scalar> received(inner.size() * per);
  std::vector<MPI_Request> recv(inner.size());
  for (std::size_t j = 0; j < inner.size(); ++j) {
    const auto& node = nodes[inner[j]];
    MPI_Irecv(received.data() + j * per, int(per), type, node.parent, node.tag, comm_, &recv[j]);
    stats_.bytes_received += per * std::int64_t(sizeof(Scalar));
  }
  // A cell is passed on as soon as it arrives: trees of different cells may run through the
  // same ranks in opposite directions.
  for (std::size_t left = inner.size(); left > 0; --left) {
    int j = MPI_UNDEFINED;
    MPI_Waitany(int(recv.size()), recv.data(), &j, MPI_STATUS_IGNORE);
    pass_on(inner[std::size_t(j)], received.data() + std::size_t(j) * per);
  }
  move_rows(space, k, v, recv_starts, p, received, false);
  MPI_Waitall(int(send.size()), send.data(), MPI_STATUSES_IGNORE);
}

template <class Scalar>
void ShardedAttention<Scalar>::gather_coarse_gradients() {
  const Shard& s = plan_.shard;
  const std::int64_t p = g_.p, per = 2 * heads_ * p * d_;
  const MPI_Datatype type = mpi_type<Scalar>();
  const auto& space = att_.execution_space_instance();
  const std::size_t nodes = plan_.deliver.size();
  std::vector<std::int64_t> starts;
  for (const auto& node : plan_.deliver) starts.push_back(s.coarse_index(node.level, node.cell, 0));
  // This rank's terms of every cell, then each child's subtree sums (received in any order,
  // added in child order once all have come).
  std::vector<Scalar> sums;
  move_rows(space, att_.coarse_key_gradients(), att_.coarse_value_gradients(), starts, p, sums, true);
  std::vector<std::vector<Scalar>> from_child;
  std::vector<std::size_t> node_of;
  std::vector<MPI_Request> recv;
  std::vector<std::size_t> waiting(nodes, 0);
  for (std::size_t i = 0; i < nodes; ++i)
    for (std::size_t c = 0; c < plan_.deliver[i].children.size(); ++c) {
      from_child.emplace_back(per);
      node_of.push_back(i);
      recv.emplace_back();
      MPI_Irecv(from_child.back().data(), int(per), type, plan_.deliver[i].children[c], plan_.deliver_child_tags[i][c],
                comm_, &recv.back());
      stats_.bytes_received += per * std::int64_t(sizeof(Scalar));
      ++waiting[i];
    }
  std::vector<std::size_t> first_child(nodes + 1, 0);
  for (std::size_t i = 0; i < nodes; ++i) first_child[i + 1] = first_child[i] + plan_.deliver[i].children.size();
  std::vector<MPI_Request> send;
  send.reserve(nodes);
  std::vector<std::int64_t> root_starts;
  std::vector<Scalar> totals;
  auto complete = [&](std::size_t i) {
    Scalar* sum = sums.data() + i * per;
    for (std::size_t c = first_child[i]; c < first_child[i + 1]; ++c)
      for (std::int64_t e = 0; e < per; ++e) sum[e] += from_child[c][std::size_t(e)];
    const auto& node = plan_.deliver[i];
    if (node.parent >= 0) {
      send.emplace_back();
      MPI_Isend(sum, int(per), type, node.parent, node.tag, comm_, &send.back());
      stats_.bytes_sent += per * std::int64_t(sizeof(Scalar));
    } else {
      root_starts.push_back(starts[i]);
      totals.insert(totals.end(), sum, sum + per);
    }
  };
  for (std::size_t i = 0; i < nodes; ++i)
    if (waiting[i] == 0) complete(i);
  // A subtree's sum goes on as soon as it is complete: trees of different cells run through
  // the same ranks in opposite directions.
  for (std::size_t left = recv.size(); left > 0; --left) {
    int j = MPI_UNDEFINED;
    MPI_Waitany(int(recv.size()), recv.data(), &j, MPI_STATUS_IGNORE);
    if (--waiting[node_of[std::size_t(j)]] == 0) complete(node_of[std::size_t(j)]);
  }
  move_rows(space, att_.coarse_key_gradients(), att_.coarse_value_gradients(), root_starts, p, totals, false);
  MPI_Waitall(int(send.size()), send.data(), MPI_STATUSES_IGNORE);
}

template <class Scalar>
void ShardedAttention<Scalar>::return_halo_gradients(Tensor dk, Tensor dv) {
  const Shard& s = plan_.shard;
  const MPI_Datatype type = mpi_type<Scalar>();
  const auto& space = att_.execution_space_instance();
  auto rows_of = [&](std::int64_t b) { return std::min((b + 1) * g_.m, g_.n) - b * g_.m; };
  // The halo rows' gradients go back the way their keys came; the owner adds them to its own.
  std::vector<std::vector<Scalar>> out(plan_.halo_recv.size()), in(plan_.halo_send.size());
  std::vector<MPI_Request> send(out.size()), recv(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto& h = plan_.halo_send[i];
    in[i].resize(std::size_t(2 * heads_ * rows_of(h.block) * d_));
    MPI_Irecv(in[i].data(), int(in[i].size()), type, h.peer, h.tag, comm_, &recv[i]);
    stats_.bytes_received += std::int64_t(in[i].size() * sizeof(Scalar));
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto& h = plan_.halo_recv[i];
    move_rows(space, dk, dv, {h.block * g_.m - s.key_begin}, rows_of(h.block), out[i], true);
    MPI_Isend(out[i].data(), int(out[i].size()), type, h.peer, h.tag, comm_, &send[i]);
    stats_.bytes_sent += std::int64_t(out[i].size() * sizeof(Scalar));
  }
  MPI_Waitall(int(recv.size()), recv.data(), MPI_STATUSES_IGNORE);
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto& h = plan_.halo_send[i];
    std::vector<Scalar> mine;
    move_rows(space, dk, dv, {h.block * g_.m - s.key_begin}, rows_of(h.block), mine, true);
    for (std::size_t e = 0; e < mine.size(); ++e) mine[e] += in[i][e];
    move_rows(space, dk, dv, {h.block * g_.m - s.key_begin}, rows_of(h.block), mine, false);
  }
  MPI_Waitall(int(send.size()), send.data(), MPI_STATUSES_IGNORE);
}

template <class Scalar>
void ShardedAttention<Scalar>::backward(ConstTensor q, ConstTensor k, ConstTensor v, ConstTensor out,
                                        ConstRowValues lse, ConstTensor dout, Tensor dq, Tensor dk, Tensor dv,
                                        DownsamplingWeights* dweights) {
  ScopedRegion region("fmattn::ShardedAttention::backward");
  double waiting = 0;
  att_.backward(q, k, v, out, lse, dout, dq, dk, dv, dweights, [&] {
    att_.execution_space_instance().fence();
    Stopwatch w;
    gather_coarse_gradients();
    pass_down(plan_.reduce, plan_.reduce_child_tags, att_.coarse_key_gradients(), att_.coarse_value_gradients());
    waiting += w.seconds();
  });
  att_.execution_space_instance().fence();
  Stopwatch w;
  if (dk.extent(0) != 0) return_halo_gradients(dk, dv);
  stats_.seconds += waiting + w.seconds();
}

template <class Scalar>
void ShardedAttention<Scalar>::forward(ConstTensor q, Tensor k, Tensor v, Tensor out,
                                       const std::function<void(double)>& progress, RowValues lse) {
  ScopedRegion region("fmattn::ShardedAttention::forward");
  const Shard& s = plan_.shard;
  const MPI_Datatype type = mpi_type<Scalar>();
  auto rows_of = [&](std::int64_t b) { return std::min((b + 1) * g_.m, g_.n) - b * g_.m; };
  Stopwatch comm;
  // Halo blocks travel while the coarse levels are built.
  std::vector<std::vector<Scalar>> halo_in(plan_.halo_recv.size()), halo_out(plan_.halo_send.size());
  std::vector<MPI_Request> halo_recv(plan_.halo_recv.size()), halo_send(plan_.halo_send.size());
  for (std::size_t i = 0; i < plan_.halo_recv.size(); ++i) {
    const auto& h = plan_.halo_recv[i];
    halo_in[i].resize(2 * heads_ * rows_of(h.block) * d_);
    MPI_Irecv(halo_in[i].data(), int(halo_in[i].size()), type, h.peer, h.tag, comm_, &halo_recv[i]);
    stats_.bytes_received += std::int64_t(halo_in[i].size() * sizeof(Scalar));
  }
  for (std::size_t i = 0; i < plan_.halo_send.size(); ++i) {
    const auto& h = plan_.halo_send[i];
    move_rows(att_.execution_space_instance(), k, v, {h.block * g_.m - s.key_begin}, rows_of(h.block), halo_out[i],
              true);
    MPI_Isend(halo_out[i].data(), int(halo_out[i].size()), type, h.peer, h.tag, comm_, &halo_send[i]);
    stats_.bytes_sent += std::int64_t(halo_out[i].size() * sizeof(Scalar));
  }
  double waiting = comm.seconds();

  if (opt_.method == Method::fma && g_.L > 0) {
    const bool by_level = opt_.downsampling == Downsampling::average;
    for (int l = 1; l <= g_.L; ++l) {
      att_.coarse_sums(l, k, v);
      if (by_level) {
        Kokkos::fence();
        Stopwatch w;
        reduce(l);
        waiting += w.seconds();
      }
    }
    Kokkos::fence();
    Stopwatch w;
    if (!by_level) reduce(0);
    att_.finish_coarse();
    Kokkos::fence();
    pass_down(plan_.deliver, plan_.deliver_child_tags, att_.coarse_keys_mutable(), att_.coarse_values_mutable());
    waiting += w.seconds();
  }
  Stopwatch w;
  MPI_Waitall(int(halo_recv.size()), halo_recv.data(), MPI_STATUSES_IGNORE);
  for (std::size_t i = 0; i < plan_.halo_recv.size(); ++i) {
    const auto& h = plan_.halo_recv[i];
    move_rows(att_.execution_space_instance(), k, v, {h.block * g_.m - s.key_begin}, rows_of(h.block), halo_in[i],
              false);
  }
  waiting += w.seconds();
  att_.evaluate(q, k, v, out, progress, lse);
  Stopwatch w2;
  MPI_Waitall(int(halo_send.size()), halo_send.data(), MPI_STATUSES_IGNORE);
  stats_.seconds += waiting + w2.seconds();
}

template class ShardedAttention<float>;
template class ShardedAttention<double>;

}  // namespace fmattn
