// The communication plan of a sharded sequence, for many (n, m, p, P) up to P = 4096 and
// n = 2^30, without MPI: blocks are balanced and covered, halos pair up, every shared cell has
// one reduction tree over exactly its contributors, every rank receives every coarse cell its
// far fields need and does not complete itself exactly once (and nothing else), senders and
// receivers agree on peers and tags, and the tokens received per rank stay below the stated
// bound 2m + 11pL.
#include <fmattn/parallel/shard_plan.hpp>
#include <fmattn/util/errors.hpp>

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <tuple>

namespace {

using fmattn::Geometry;
using fmattn::ShardPlan;

struct Case {
  std::int64_t n;
  int m, p, ranks;
};

// (level, cell, rank) → node, for the cross-rank checks.
using Key = std::tuple<int, std::int64_t, int>;

void check_plans(const Case& k, fmattn::Variant variant, bool brute_force) {
  const Geometry g = fmattn::make_geometry(k.n, k.m, k.p, variant);
  SCOPED_TRACE("n " + std::to_string(k.n) + " m " + std::to_string(k.m) + " p " + std::to_string(k.p) + " P " +
               std::to_string(k.ranks) + (variant == fmattn::Variant::causal ? " causal" : " bidirectional"));
  const std::int64_t blocks = fmattn::present_blocks(g);
  std::vector<ShardPlan> plans;
  for (int r = 0; r < k.ranks; ++r) plans.push_back(fmattn::plan_shard(g, r, k.ranks));

  std::map<Key, const ShardPlan::Node*> reduce, deliver;
  std::map<Key, int> reduce_tag_from_child, deliver_tag_to_child;
  std::int64_t next = 0, sent = 0, received = 0, worst = 0;
  for (const ShardPlan& pl : plans) {
    const auto& s = pl.shard;
    ASSERT_EQ(s.block_begin, next);
    ASSERT_GT(s.block_end, s.block_begin);
    EXPECT_LE(s.block_end - s.block_begin, blocks / k.ranks + 1);
    next = s.block_end;
    for (const auto& x : pl.reduce) {
      EXPECT_TRUE(reduce.emplace(Key{x.level, x.cell, pl.rank}, &x).second) << "two reduce nodes for one cell";
    }
    for (std::size_t i = 0; i < pl.reduce.size(); ++i)
      for (std::size_t c = 0; c < pl.reduce[i].children.size(); ++c)
        reduce_tag_from_child[{pl.reduce[i].level, pl.reduce[i].cell, pl.reduce[i].children[c]}] =
            pl.reduce_child_tags[i][c];
    for (const auto& x : pl.deliver)
      EXPECT_TRUE(deliver.emplace(Key{x.level, x.cell, pl.rank}, &x).second) << "a cell delivered twice";
    for (std::size_t i = 0; i < pl.deliver.size(); ++i)
      for (std::size_t c = 0; c < pl.deliver[i].children.size(); ++c)
        deliver_tag_to_child[{pl.deliver[i].level, pl.deliver[i].cell, pl.deliver[i].children[c]}] =
            pl.deliver_child_tags[i][c];
    sent += pl.fine_sent + pl.coarse_sent;
    received += pl.fine_received + pl.coarse_received;
    worst = std::max(worst, pl.fine_received + pl.coarse_received);
    EXPECT_LE(pl.fine_received + pl.coarse_received, fmattn::received_token_bound(g));
  }
  EXPECT_EQ(next, blocks);
  EXPECT_EQ(sent, received) << "every message has a receiver";

  auto owner = [&](std::int64_t t) { return fmattn::balanced_owner(blocks, k.ranks, t / g.m); };
  for (const ShardPlan& pl : plans) {
    const int R = pl.rank;
    // Halo: the left neighbour's last block, and (bidirectional) the right neighbour's first.
    for (const auto& h : pl.halo_recv) {
      const auto& peer = plans[h.peer];
      bool matched = false;
      for (const auto& x : peer.halo_send) matched = matched || (x.peer == R && x.block == h.block && x.tag == h.tag);
      EXPECT_TRUE(matched) << "halo block " << h.block << " to rank " << R;
      EXPECT_EQ(owner(h.block * g.m), h.peer);
    }
    EXPECT_EQ(pl.halo_recv.size(),
              std::size_t((R > 0) + (variant == fmattn::Variant::bidirectional && R + 1 < k.ranks)));

    const std::int64_t own0 = pl.shard.token_begin(g), own1 = pl.shard.token_end(g);
    for (int l = 1; l <= g.L; ++l) {
      const std::int64_t w = g.cell_size(l), lo = own0 / w, hi = (own1 - 1) / w;
      // Reduction: the ranks holding tokens of a shared cell form one tree rooted at the owner.
      for (std::int64_t c : {lo, hi}) {
        const int a = owner(c * w), z = owner(std::min((c + 1) * w, g.n) - 1);
        const auto it = reduce.find({l, c, R});
        if (a == z) {
          EXPECT_EQ(it, reduce.end());
          continue;
        }
        ASSERT_NE(it, reduce.end()) << "level " << l << " cell " << c;
        const auto* node = it->second;
        if (R == a) {
          EXPECT_EQ(node->parent, -1);
        } else {
          ASSERT_GE(node->parent, a);
          ASSERT_LT(node->parent, R);
          const auto* up = reduce.at({l, c, node->parent});
          EXPECT_NE(std::find(up->children.begin(), up->children.end(), R), up->children.end());
          EXPECT_EQ(reduce_tag_from_child.at({l, c, R}), node->tag);
        }
        for (int child : node->children) {
          EXPECT_GT(child, R);
          EXPECT_LE(child, z);
        }
      }
      // Delivery: exactly the needed cells that this rank does not complete itself.
      std::set<std::int64_t> needed;
      std::vector<std::int64_t> query_cells;
      if (brute_force) {
        for (std::int64_t b = lo; b <= hi; ++b) query_cells.push_back(b);
      } else {  // cells further inside list only cells this rank owns
        for (std::int64_t b = lo; b <= hi && b <= lo + 3; ++b) query_cells.push_back(b);
        for (std::int64_t b = std::max(lo + 4, hi - 3); b <= hi; ++b) query_cells.push_back(b);
      }
      for (std::int64_t b : query_cells) {
        std::int64_t list[fmattn::max_far_cells];
        const int nc = g.far_cells(l, b, list);
        for (int j = 0; j < nc; ++j)
          if (list[j] * w < g.n && owner(list[j] * w) != R) needed.insert(list[j]);
      }
      std::set<std::int64_t> delivered;
      for (const auto& x : pl.deliver)
        if (x.level == l && x.parent >= 0) {
          delivered.insert(x.cell);
          const auto* up = deliver.at({l, x.cell, x.parent});
          EXPECT_NE(std::find(up->children.begin(), up->children.end(), R), up->children.end());
          EXPECT_EQ(deliver_tag_to_child.at({l, x.cell, R}), x.tag);
        } else if (x.level == l) {
          EXPECT_EQ(owner(x.cell * w), R) << "only the owner roots a delivery";
        }
      EXPECT_EQ(delivered, needed) << "level " << l;
    }
  }
  // No two messages between the same ranks in one phase share a tag.
  for (const ShardPlan& pl : plans) {
    std::set<std::pair<int, int>> in;
    for (const auto& x : pl.reduce)
      for (std::size_t c = 0; c < x.children.size(); ++c) EXPECT_TRUE(in.insert({x.children[c], x.tag}).second);
    std::set<std::pair<int, int>> din;
    for (const auto& x : pl.deliver) {
      if (x.parent >= 0) {
        EXPECT_TRUE(din.insert({x.parent, x.tag}).second);
      }
    }
  }
  std::printf("  n %lld m %d p %d L %d P %d: max tokens received per rank %lld (bound %lld)\n",
              static_cast<long long>(k.n), k.m, k.p, g.L, k.ranks, static_cast<long long>(worst),
              static_cast<long long>(fmattn::received_token_bound(g)));
}

TEST(ShardPlan, SmallCasesAgainstBruteForce) {
  const std::vector<Case> cases = {{1, 4, 1, 1},      {100, 4, 2, 1},    {100, 4, 2, 3},
                                   {1000, 8, 4, 7},   {1000, 8, 4, 125}, {4096, 16, 4, 5},
                                   {5000, 16, 2, 64}, {777, 2, 2, 389},  {65536, 64, 4, 3}};
  for (const Case& c : cases)
    for (auto v : {fmattn::Variant::causal, fmattn::Variant::bidirectional}) check_plans(c, v, true);
}

TEST(ShardPlan, LargeSequencesAndManyRanks) {
  const std::int64_t n30 = std::int64_t(1) << 30;
  const std::vector<Case> cases = {{n30, 64, 4, 4096}, {n30 - 12345, 64, 8, 4095}, {n30, 128, 16, 1000}};
  for (const Case& c : cases)
    for (auto v : {fmattn::Variant::causal, fmattn::Variant::bidirectional}) check_plans(c, v, false);
}

TEST(ShardPlan, MoreRanksThanBlocksIsAnInputError) {
  const Geometry g = fmattn::make_geometry(1000, 64, 4, fmattn::Variant::causal);  // 16 blocks
  EXPECT_NO_THROW(fmattn::plan_shard(g, 15, 16));
  try {
    fmattn::plan_shard(g, 0, 17);
    ADD_FAILURE() << "no error";
  } catch (const fmattn::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("too many MPI ranks (17)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("at most 16"), std::string::npos) << e.what();
  }
}

TEST(ShardPlan, BalancedRangesCoverAndOwnersInvert) {
  for (std::int64_t count : {1, 5, 12, 97, 1000})
    for (int parts = 1; parts <= count && parts <= 40; ++parts) {
      std::int64_t next = 0;
      for (int r = 0; r < parts; ++r) {
        std::int64_t a, b;
        fmattn::balanced_range(count, r, parts, a, b);
        EXPECT_EQ(a, next);
        EXPECT_GE(b - a, count / parts);
        EXPECT_LE(b - a, count / parts + 1);
        for (std::int64_t i = a; i < b; ++i) EXPECT_EQ(fmattn::balanced_owner(count, parts, i), r);
        next = b;
      }
      EXPECT_EQ(next, count);
    }
}

}  // namespace
