// The communication plan of a sharded sequence (MPI-free, so that it can be computed and tested
// for any (n, m, p, P)): which fine blocks each rank owns, the halo blocks of the near field,
// the reduction trees that complete coarse cells shared by several ranks, and the delivery
// trees that bring every completed cell to exactly the ranks whose far fields list it.
//
// Trees are binary heaps over the ranks involved (node j has children 2j+1, 2j+2), rooted at
// the cell's owner — the rank holding its first token. So every rank receives at most two
// partial sums per shared cell, at most two shared cells per level, and each cell it needs
// exactly once; a cell needed by many ranks costs its owner two sends, not many.
#pragma once

#include <fmattn/core/geometry.hpp>
#include <fmattn/core/shard.hpp>

#include <cstdint>
#include <vector>

namespace fmattn {

// Part `part` of `parts` of [0, count): contiguous, sizes differing by at most one.
void balanced_range(std::int64_t count, int part, int parts, std::int64_t& first, std::int64_t& last);
// The part of balanced_range that holds index i.
int balanced_owner(std::int64_t count, int parts, std::int64_t i);

struct ShardPlan {
  int rank = 0, ranks = 1;
  Shard shard;

  // One fine block (K and V rows of all heads) to or from a neighbour.
  struct Halo {
    int peer;
    std::int64_t block;
    int tag;
  };
  std::vector<Halo> halo_recv, halo_send;

  // This rank's node in the tree of one coarse cell (level, cell): receive from `children`,
  // send to `parent` (-1: this rank is the root). Reduction trees add partial sums of the
  // contributors toward the owner; delivery trees pass the completed cell from the owner on.
  struct Node {
    int level;
    std::int64_t cell;
    int parent;
    std::vector<int> children;
    int tag;  // of the message from the parent (delivery) or to the parent (reduction)
  };
  std::vector<Node> reduce, deliver;
  // Tags of the messages from each child, parallel to `children`.
  std::vector<std::vector<int>> reduce_child_tags, deliver_child_tags;

  // Message volume in tokens; one token is K and V rows of every head (2·heads·d values).
  std::int64_t fine_received = 0, fine_sent = 0, coarse_received = 0, coarse_sent = 0;
};

// The plan of `rank` of `ranks`; InputError when there are more ranks than fine blocks.
ShardPlan plan_shard(const Geometry& g, int rank, int ranks);

// The bound the plan keeps (tested for P up to 4096, n up to 2^30): tokens received per rank
// <= 2m + 11pL — halo blocks on both sides, two partial sums for each of at most two shared
// cells per level, and at most seven delivered cells per level.
inline std::int64_t received_token_bound(const Geometry& g) {
  return 2 * std::int64_t(g.m) + 11 * std::int64_t(g.p) * g.L;
}

}  // namespace fmattn
