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

// The backward's coarse-gradient exchange, the forward's two trees run backwards, advanced
// between the pairs' launches: first each cell's terms summed up its delivery tree to its
// owner (a subtree's sum goes on once complete, its children added in a fixed order), then the
// completed gradient handed down its reduction tree to every rank holding some of its tokens.
template <class Scalar>
class CoarseGradientExchange {
 public:
  CoarseGradientExchange(Attention<Scalar>& att, const ShardPlan& plan, std::int64_t p, std::int64_t per, MPI_Comm comm,
                         CommStats& stats)
      : att_(att), plan_(plan), p_(p), per_(per), comm_(comm), stats_(stats) {}

  // Once the shard's queries' terms are in the coarse gradients (fenced).
  void start() {
    const Shard& s = plan_.shard;
    const std::size_t nodes = plan_.deliver.size();
    for (const auto& node : plan_.deliver) starts_.push_back(s.coarse_index(node.level, node.cell, 0));
    pack(starts_, sums_);
    first_child_.assign(nodes + 1, 0);
    waiting_.assign(nodes, 0);
    for (std::size_t i = 0; i < nodes; ++i) {
      const auto& node = plan_.deliver[i];
      first_child_[i + 1] = first_child_[i] + node.children.size();
      for (std::size_t c = 0; c < node.children.size(); ++c) {
        from_child_.emplace_back(per_);
        node_of_.push_back(i);
        receive(from_child_.back().data(), node.children[c], plan_.deliver_child_tags[i][c]);
        ++waiting_[i];
      }
    }
    phase_ = Phase::gather;
    for (std::size_t i = 0; i < nodes; ++i)
      if (waiting_[i] == 0) complete(i);
    progress(false);
  }

  // Handles what has arrived; with `until_done`, waits until the exchange is complete. Nothing
  // to do unless started (no coarse gradient is wanted).
  void progress(bool until_done) {
    while (phase_ == Phase::gather || phase_ == Phase::spread) {
      std::vector<int> arrived(recv_.size());
      int count = MPI_UNDEFINED;
      if (!recv_.empty()) {
        if (until_done)
          MPI_Waitsome(int(recv_.size()), recv_.data(), &count, arrived.data(), MPI_STATUSES_IGNORE);
        else
          MPI_Testsome(int(recv_.size()), recv_.data(), &count, arrived.data(), MPI_STATUSES_IGNORE);
      }
      for (int a = 0; a < (count == MPI_UNDEFINED ? 0 : count); ++a) {
        const std::size_t r = std::size_t(arrived[std::size_t(a)]);
        if (phase_ == Phase::gather) {
          if (--waiting_[node_of_[r]] == 0) complete(node_of_[r]);
        } else {
          pass_on(inner_[r], received_.data() + r * std::size_t(per_));
        }
        ++arrived_;
      }
      if (arrived_ < recv_.size()) {
        if (!until_done) return;
        continue;
      }
      if (phase_ == Phase::gather)
        begin_spread();
      else
        end_spread();
    }
  }

 private:
  enum class Phase { idle, gather, spread, done };

  void pack(const std::vector<std::int64_t>& starts, std::vector<Scalar>& host) {
    move_rows(att_.execution_space_instance(), att_.coarse_key_gradients(), att_.coarse_value_gradients(), starts, p_,
              host, true);
  }
  void unpack(const std::vector<std::int64_t>& starts, std::vector<Scalar>& host) {
    move_rows(att_.execution_space_instance(), att_.coarse_key_gradients(), att_.coarse_value_gradients(), starts, p_,
              host, false);
  }
  void receive(Scalar* into, int from, int tag) {
    recv_.emplace_back();
    MPI_Irecv(into, int(per_), mpi_type<Scalar>(), from, tag, comm_, &recv_.back());
    stats_.bytes_received += per_ * std::int64_t(sizeof(Scalar));
  }
  void send(const Scalar* data, int to, int tag) {
    send_.emplace_back();
    MPI_Isend(data, int(per_), mpi_type<Scalar>(), to, tag, comm_, &send_.back());
    stats_.bytes_sent += per_ * std::int64_t(sizeof(Scalar));
  }

  // Delivery node i has all its children's sums: its subtree's goes to its parent, or (the
  // owner) is the cell's gradient.
  void complete(std::size_t i) {
    Scalar* sum = sums_.data() + i * std::size_t(per_);
    for (std::size_t c = first_child_[i]; c < first_child_[i + 1]; ++c)
      for (std::int64_t e = 0; e < per_; ++e) sum[e] += from_child_[c][std::size_t(e)];
    const auto& node = plan_.deliver[i];
    if (node.parent >= 0) {
      send(sum, node.parent, node.tag);
    } else {
      root_starts_.push_back(starts_[i]);
      totals_.insert(totals_.end(), sum, sum + per_);
    }
  }

  // Every cell this rank owns is complete: down the reduction trees.
  void begin_spread() {
    unpack(root_starts_, totals_);
    const Shard& s = plan_.shard;
    recv_.clear();
    arrived_ = 0;
    std::vector<std::int64_t> roots_starts;
    std::vector<std::size_t> roots;
    for (std::size_t i = 0; i < plan_.reduce.size(); ++i) {
      const auto& node = plan_.reduce[i];
      if (node.parent < 0) {
        roots.push_back(i);
        roots_starts.push_back(s.coarse_index(node.level, node.cell, 0));
      } else {
        inner_.push_back(i);
        inner_starts_.push_back(s.coarse_index(node.level, node.cell, 0));
      }
    }
    received_.resize(inner_.size() * std::size_t(per_));
    for (std::size_t j = 0; j < inner_.size(); ++j) {
      const auto& node = plan_.reduce[inner_[j]];
      receive(received_.data() + j * std::size_t(per_), node.parent, node.tag);
    }
    pack(roots_starts, owned_);
    for (std::size_t j = 0; j < roots.size(); ++j) pass_on(roots[j], owned_.data() + j * std::size_t(per_));
    phase_ = Phase::spread;
  }

  void pass_on(std::size_t i, const Scalar* data) {
    const auto& node = plan_.reduce[i];
    for (std::size_t c = 0; c < node.children.size(); ++c) send(data, node.children[c], plan_.reduce_child_tags[i][c]);
  }

  void end_spread() {
    unpack(inner_starts_, received_);
    MPI_Waitall(int(send_.size()), send_.data(), MPI_STATUSES_IGNORE);
    phase_ = Phase::done;
  }

  Attention<Scalar>& att_;
  const ShardPlan& plan_;
  std::int64_t p_, per_;
  MPI_Comm comm_;
  CommStats& stats_;
  Phase phase_ = Phase::idle;
  std::vector<MPI_Request> recv_, send_;
  std::size_t arrived_ = 0;
  // Gather: per delivery node its start, this rank's terms then the subtree's sum, and the
  // children's sums in child order; the owned cells' totals.
  std::vector<std::int64_t> starts_, root_starts_;
  std::vector<Scalar> sums_, totals_;
  std::vector<std::vector<Scalar>> from_child_;
  std::vector<std::size_t> node_of_, first_child_, waiting_;
  // Spread: the reduction nodes with a parent, their starts and the gradients received.
  std::vector<std::size_t> inner_;
  std::vector<std::int64_t> inner_starts_;
  std::vector<Scalar> received_, owned_;
};

// The gradients of the halo rows go back the way their keys came; the owner adds them to its
// own rows' (in plan order).
template <class Scalar>
class HaloGradients {
 public:
  HaloGradients(Attention<Scalar>& att, const ShardPlan& plan, const Geometry& g, std::int64_t heads, int d,
                MPI_Comm comm, CommStats& stats)
      : att_(att), plan_(plan), g_(g), heads_(heads), d_(d), comm_(comm), stats_(stats) {}

  // Once the pairs are done: the halo rows' gradients are complete.
  template <class Tensor>
  void start(const Tensor& dk, const Tensor& dv) {
    in_.resize(plan_.halo_send.size());
    out_.resize(plan_.halo_recv.size());
    recv_.resize(in_.size());
    send_.resize(out_.size());
    for (std::size_t i = 0; i < in_.size(); ++i) {
      const auto& h = plan_.halo_send[i];
      in_[i].resize(std::size_t(2 * heads_ * rows_of(h.block) * d_));
      MPI_Irecv(in_[i].data(), int(in_[i].size()), mpi_type<Scalar>(), h.peer, h.tag, comm_, &recv_[i]);
      stats_.bytes_received += std::int64_t(in_[i].size() * sizeof(Scalar));
    }
    for (std::size_t i = 0; i < out_.size(); ++i) {
      const auto& h = plan_.halo_recv[i];
      move_rows(att_.execution_space_instance(), dk, dv, {first_row(h.block)}, rows_of(h.block), out_[i], true);
      MPI_Isend(out_[i].data(), int(out_[i].size()), mpi_type<Scalar>(), h.peer, h.tag, comm_, &send_[i]);
      stats_.bytes_sent += std::int64_t(out_[i].size() * sizeof(Scalar));
    }
  }

  template <class Tensor>
  void finish(const Tensor& dk, const Tensor& dv) {
    MPI_Waitall(int(recv_.size()), recv_.data(), MPI_STATUSES_IGNORE);
    for (std::size_t i = 0; i < in_.size(); ++i) {
      const auto& h = plan_.halo_send[i];
      std::vector<Scalar> mine;
      move_rows(att_.execution_space_instance(), dk, dv, {first_row(h.block)}, rows_of(h.block), mine, true);
      for (std::size_t e = 0; e < mine.size(); ++e) mine[e] += in_[i][e];
      move_rows(att_.execution_space_instance(), dk, dv, {first_row(h.block)}, rows_of(h.block), mine, false);
    }
    MPI_Waitall(int(send_.size()), send_.data(), MPI_STATUSES_IGNORE);
  }

 private:
  std::int64_t rows_of(std::int64_t b) const { return std::min((b + 1) * g_.m, g_.n) - b * g_.m; }
  std::int64_t first_row(std::int64_t b) const { return b * g_.m - plan_.shard.key_begin; }

  Attention<Scalar>& att_;
  const ShardPlan& plan_;
  const Geometry& g_;
  std::int64_t heads_;
  int d_;
  MPI_Comm comm_;
  CommStats& stats_;
  std::vector<std::vector<Scalar>> in_, out_;
  std::vector<MPI_Request> recv_, send_;
};

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

template <class Scalar>
void ShardedAttention<Scalar>::deliver() {
  const Shard& s = plan_.shard;
  const std::int64_t p = g_.p, per = 2 * heads_ * p * d_;
  const MPI_Datatype type = mpi_type<Scalar>();
  std::vector<std::int64_t> root_starts, recv_starts;
  std::vector<std::size_t> roots, inner;
  for (std::size_t i = 0; i < plan_.deliver.size(); ++i) {
    const auto& node = plan_.deliver[i];
    (node.parent < 0 ? roots : inner).push_back(i);
    (node.parent < 0 ? root_starts : recv_starts).push_back(s.coarse_index(node.level, node.cell, 0));
  }
  std::vector<MPI_Request> send;
  send.reserve(2 * plan_.deliver.size());
  auto pass_on = [&](std::size_t i, const Scalar* data) {
    const auto& node = plan_.deliver[i];
    for (std::size_t c = 0; c < node.children.size(); ++c) {
      send.emplace_back();
      MPI_Isend(data, int(per), type, node.children[c], plan_.deliver_child_tags[i][c], comm_, &send.back());
      stats_.bytes_sent += per * std::int64_t(sizeof(Scalar));
    }
  };
  std::vector<Scalar> owned;
  move_rows(att_.execution_space_instance(), att_.coarse_keys_mutable(), att_.coarse_values_mutable(), root_starts, p,
            owned, true);
  for (std::size_t j = 0; j < roots.size(); ++j) pass_on(roots[j], owned.data() + j * per);
  std::vector<Scalar> received(inner.size() * per);
  std::vector<MPI_Request> recv(inner.size());
  for (std::size_t j = 0; j < inner.size(); ++j) {
    const auto& node = plan_.deliver[inner[j]];
    MPI_Irecv(received.data() + j * per, int(per), type, node.parent, node.tag, comm_, &recv[j]);
    stats_.bytes_received += per * std::int64_t(sizeof(Scalar));
  }
  // A cell is passed on as soon as it arrives: trees of different cells may run through the
  // same ranks in opposite directions.
  for (std::size_t left = inner.size(); left > 0; --left) {
    int j = MPI_UNDEFINED;
    MPI_Waitany(int(recv.size()), recv.data(), &j, MPI_STATUS_IGNORE);
    pass_on(inner[j], received.data() + std::size_t(j) * per);
  }
  move_rows(att_.execution_space_instance(), att_.coarse_keys_mutable(), att_.coarse_values_mutable(), recv_starts, p,
            received, false);
  MPI_Waitall(int(send.size()), send.data(), MPI_STATUSES_IGNORE);
}

template <class Scalar>
void ShardedAttention<Scalar>::backward(ConstTensor q, ConstTensor k, ConstTensor v, ConstTensor out,
                                        ConstRowValues lse, ConstTensor dout, Tensor dq, Tensor dk, Tensor dv,
                                        DownsamplingWeights* dweights) {
  ScopedRegion region("fmattn::ShardedAttention::backward");
  const auto& space = att_.execution_space_instance();
  CoarseGradientExchange<Scalar> coarse(att_, plan_, g_.p, 2 * heads_ * g_.p * d_, comm_, stats_);
  HaloGradients<Scalar> halo(att_, plan_, g_, heads_, d_, comm_, stats_);
  double waiting = 0;
  auto timed = [&](auto&& f) {
    Stopwatch w;
    f();
    waiting += w.seconds();
  };
  typename Attention<Scalar>::BackwardHooks hooks;
  // The coarse gradients travel while the first launch of the pairs runs (the pairs no longer
  // read them), and are completed after it: a tree's inner ranks pass sums on only when they
  // handle their messages, so waiting for the last launch made every hop wait for a whole
  // launch on some rank (measured: 2-3 s of a 25 s step on 4 ranks here, against 1 s). The
  // halo rows' gradients, complete with the pairs, travel while the keys add their shares.
  hooks.coarse_formed = [&] {
    space.fence();
    timed([&] { coarse.start(); });
  };
  hooks.between_pairs = [&] {
    space.fence();
    timed([&] { coarse.progress(true); });
  };
  hooks.pairs_done = [&] {
    space.fence();
    timed([&] {
      coarse.progress(true);
      if (dk.extent(0) != 0) halo.start(dk, dv);
    });
  };
  att_.backward(q, k, v, out, lse, dout, dq, dk, dv, dweights, hooks);
  space.fence();
  timed([&] {
    if (dk.extent(0) != 0) halo.finish(dk, dv);
  });
  stats_.seconds += waiting;
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
    deliver();
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
