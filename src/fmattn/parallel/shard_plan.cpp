#include <fmattn/parallel/shard_plan.hpp>

#include <fmattn/util/errors.hpp>

#include <algorithm>
#include <set>
#include <string>
#include <utility>

namespace fmattn {

void balanced_range(std::int64_t count, int part, int parts, std::int64_t& first, std::int64_t& last) {
  const std::int64_t base = count / parts, extra = count % parts;
  first = part * base + std::min<std::int64_t>(part, extra);
  last = first + base + (part < extra ? 1 : 0);
}

int balanced_owner(std::int64_t count, int parts, std::int64_t i) {
  const std::int64_t base = count / parts, extra = count % parts, big = extra * (base + 1);
  return int(i < big ? i / (base + 1) : extra + (i - big) / base);
}

namespace {

// Message tags: halo blocks, reduction partial sums (one shared cell per level and pair of
// ranks), and deliveries (unique per receiver, level, side of its first cell and cell mod 8:
// a rank receives at most four consecutive cells on each side).
constexpr int tag_halo_right = 0, tag_halo_left = 1, tag_reduce = 16, tag_deliver = 16 + max_levels + 2;

// Sorted, disjoint, inclusive intervals of ranks.
class RankSet {
 public:
  void add(int a, int b) {
    iv_.emplace_back(a, b);
    std::sort(iv_.begin(), iv_.end());
    std::vector<std::pair<int, int>> merged;
    for (const auto& x : iv_) {
      if (!merged.empty() && x.first <= merged.back().second + 1)
        merged.back().second = std::max(merged.back().second, x.second);
      else
        merged.push_back(x);
    }
    iv_ = merged;
  }
  void remove(int r) {
    std::vector<std::pair<int, int>> out;
    for (const auto& [a, b] : iv_) {
      if (r < a || r > b) {
        out.emplace_back(a, b);
        continue;
      }
      if (a < r) out.emplace_back(a, r - 1);
      if (r < b) out.emplace_back(r + 1, b);
    }
    iv_ = out;
  }
  std::int64_t size() const {
    std::int64_t s = 0;
    for (const auto& [a, b] : iv_) s += b - a + 1;
    return s;
  }
  int at(std::int64_t j) const {
    for (const auto& [a, b] : iv_) {
      if (j <= b - a) return int(a + j);
      j -= b - a + 1;
    }
    return -1;
  }
  std::int64_t index_of(int r) const {
    std::int64_t j = 0;
    for (const auto& [a, b] : iv_) {
      if (r >= a && r <= b) return j + (r - a);
      j += b - a + 1;
    }
    return -1;
  }

 private:
  std::vector<std::pair<int, int>> iv_;
};

class Planner {
 public:
  Planner(const Geometry& g, int ranks) : g_(g), ranks_(ranks), blocks_(present_blocks(g)) {}

  int owner_of_token(std::int64_t t) const { return balanced_owner(blocks_, ranks_, t / g_.m); }
  // First and last rank owning tokens of cell c of level l (which has present tokens).
  std::pair<int, int> contributors(int l, std::int64_t c) const {
    const std::int64_t w = g_.cell_size(l), end = std::min((c + 1) * w, g_.n);
    return {owner_of_token(c * w), owner_of_token(end - 1)};
  }
  bool present(int l, std::int64_t c) const { return c >= 0 && c < g_.num_cells(l) && c * g_.cell_size(l) < g_.n; }
  // First cell of level l holding a token of rank r.
  std::int64_t first_cell(int r, int l) const {
    std::int64_t b0, b1;
    balanced_range(blocks_, r, ranks_, b0, b1);
    return b0 * g_.m / g_.cell_size(l);
  }
  // Ranks with queries in a cell whose far field lists cell c of level l.
  RankSet needers(int l, std::int64_t c) const {
    RankSet s;
    for (std::int64_t b = c - max_far_cells; b <= c + max_far_cells; ++b) {
      if (!present(l, b)) continue;
      std::int64_t list[max_far_cells];
      const int k = g_.far_cells(l, b, list);
      if (std::find(list, list + k, c) == list + k) continue;
      const auto [a, z] = contributors(l, b);
      s.add(a, z);
    }
    return s;
  }
  int deliver_tag(int receiver, int l, std::int64_t c) const {
    const int side = c > first_cell(receiver, l) ? 1 : 0;
    return tag_deliver + (l * 2 + side) * 8 + int(c % 8);
  }

 private:
  const Geometry& g_;
  int ranks_;
  std::int64_t blocks_;
};

}  // namespace

ShardPlan plan_shard(const Geometry& g, int rank, int ranks) {
  ShardPlan plan;
  plan.rank = rank;
  plan.ranks = ranks;
  const std::int64_t blocks = present_blocks(g);
  if (ranks > blocks)
    throw InputError("too many MPI ranks (" + std::to_string(ranks) + ") to shard a sequence of " +
                     std::to_string(g.n) + " tokens in blocks of attention.block_size = " + std::to_string(g.m) +
                     ": at most " + std::to_string(blocks) +
                     " (one block per rank); fewer ranks, a smaller block_size, or parallel.decomposition: heads "
                     "(whole heads per rank) fit");
  std::int64_t b0, b1;
  balanced_range(blocks, rank, ranks, b0, b1);
  plan.shard = make_shard(g, b0, b1);
  const Planner P(g, ranks);
  const std::int64_t p = g.p;
  auto block_tokens = [&](std::int64_t b) { return std::min((b + 1) * g.m, g.n) - b * g.m; };

  // Near field: the block left of the shard (both variants) and right of it (bidirectional).
  const bool bidirectional = g.variant == Variant::bidirectional;
  if (rank > 0) plan.halo_recv.push_back({rank - 1, b0 - 1, tag_halo_right});
  if (rank + 1 < ranks) plan.halo_send.push_back({rank + 1, b1 - 1, tag_halo_right});
  if (bidirectional && rank + 1 < ranks) plan.halo_recv.push_back({rank + 1, b1, tag_halo_left});
  if (bidirectional && rank > 0) plan.halo_send.push_back({rank - 1, b0, tag_halo_left});
  for (const auto& h : plan.halo_recv) plan.fine_received += block_tokens(h.block);
  for (const auto& h : plan.halo_send) plan.fine_sent += block_tokens(h.block);

  const std::int64_t own0 = b0 * g.m, own1 = std::min(b1 * g.m, g.n);
  for (int l = 1; l <= g.L; ++l) {
    const std::int64_t w = g.cell_size(l), lo = own0 / w, hi = (own1 - 1) / w;
    // Reduction: only the first and last cell of the shard can have other contributors.
    for (std::int64_t c : std::set<std::int64_t>{lo, hi}) {
      const auto [a, z] = P.contributors(l, c);
      if (a == z) continue;
      const std::int64_t j = rank - a;
      ShardPlan::Node node{l, c, j > 0 ? int(a + (j - 1) / 2) : -1, {}, tag_reduce + l};
      for (std::int64_t child = 2 * j + 1; child <= 2 * j + 2 && a + child <= z; ++child)
        node.children.push_back(int(a + child));
      plan.coarse_received += std::int64_t(node.children.size()) * p;
      plan.coarse_sent += node.parent >= 0 ? p : 0;
      plan.reduce_child_tags.emplace_back(node.children.size(), tag_reduce + l);
      plan.reduce.push_back(std::move(node));
    }
    // Delivery: cells within three of the shard's first and last cells (the others are the
    // shard's own and needed by no other rank).
    std::set<std::int64_t> candidates;
    for (std::int64_t c = lo - max_far_cells; c <= lo + max_far_cells; ++c) candidates.insert(c);
    for (std::int64_t c = hi - max_far_cells; c <= hi + max_far_cells; ++c) candidates.insert(c);
    for (std::int64_t c : candidates) {
      if (!P.present(l, c)) continue;
      const int root = P.owner_of_token(c * w);
      RankSet need = P.needers(l, c);
      need.remove(root);
      // Heap index: the root is 0, needer k is 1 + k.
      std::int64_t j = rank == root ? 0 : need.index_of(rank);
      if (rank != root) {
        if (j < 0) continue;  // not needed here
        ++j;
      }
      auto member = [&](std::int64_t k) { return k == 0 ? root : need.at(k - 1); };
      const std::int64_t size = 1 + need.size();
      ShardPlan::Node node{l, c, j > 0 ? member((j - 1) / 2) : -1, {}, P.deliver_tag(rank, l, c)};
      std::vector<int> tags;
      for (std::int64_t child = 2 * j + 1; child <= 2 * j + 2 && child < size; ++child) {
        node.children.push_back(member(child));
        tags.push_back(P.deliver_tag(member(child), l, c));
      }
      if (node.parent < 0 && node.children.empty()) continue;  // nobody else needs it
      plan.coarse_received += node.parent >= 0 ? p : 0;
      plan.coarse_sent += std::int64_t(node.children.size()) * p;
      plan.deliver_child_tags.push_back(std::move(tags));
      plan.deliver.push_back(std::move(node));
    }
  }
  return plan;
}

}  // namespace fmattn
