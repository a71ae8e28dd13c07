// The fused attention evaluation: one team per (batch·head, query tile). A tile's queries lie in
// one fine block, so they share their interaction lists at every level (spec §3); the tile
// streams its fine key range and its coarse slots through team scratch in chunks and keeps a
// flash-style online softmax (spec §4), so no n×n or n×(m+pL) buffer exists. The exact
// baseline is the same kernel with the whole allowed key range and no coarse slots.
#pragma once

#include "geometry.hpp"
#include "kokkos_compat.hpp"
#include "tile_traits.hpp"

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdint>

namespace fmattn {

template <class ExecSpace, class Scalar>
struct AttentionTiles {
  using Mem = typename ExecSpace::memory_space;
  using In = Kokkos::View<const Scalar***, Kokkos::LayoutRight, Mem>;
  using Out = Kokkos::View<Scalar***, Kokkos::LayoutRight, Mem>;
  using Policy = Kokkos::TeamPolicy<ExecSpace>;
  using Member = typename Policy::member_type;
  using Scratch = typename ExecSpace::scratch_memory_space;
  using Mat = Kokkos::View<Scalar**, Kokkos::LayoutRight, Scratch, Kokkos::MemoryUnmanaged>;
  using Vec = Kokkos::View<Scalar*, Scratch, Kokkos::MemoryUnmanaged>;
  using Pos = Kokkos::View<std::int64_t*, Scratch, Kokkos::MemoryUnmanaged>;
  static constexpr int Tq = TileTraits<ExecSpace>::query_rows;
  static constexpr int Tk = TileTraits<ExecSpace>::key_chunk;

  Geometry g;
  AttentionOptions opt;
  In q, k, v;  // [bh][n][d]
  In kc, vc;   // [bh][coarse tokens][d]; empty for exact
  Out o;       // [bh][n][d]
  int d = 0;
  std::int64_t tiles_per_block = 0, tiles_per_head = 0;

  struct Tile {
    Mat qs, kt, vs, s, acc;  // Q·scale [Tq][d], K^T [d][Tk], V [Tk][d], scores [Tq][Tk], out [Tq][d]
    Vec logw, rmax, rsum;    // slot log-weight [Tk], running max and denominator [Tq]
    Pos kpos;                // fine key position of a slot, for the causal mask [Tk]
    std::int64_t i0;
    int rows;
  };

  static std::size_t scratch_bytes(int d) {
    return Mat::shmem_size(Tq, d) + Mat::shmem_size(d, Tk) + Mat::shmem_size(Tk, d) + Mat::shmem_size(Tq, Tk) +
           Mat::shmem_size(Tq, d) + Vec::shmem_size(Tk) + 2 * Vec::shmem_size(Tq) + Pos::shmem_size(Tk);
  }

  // Scores of the chunk's `len` slots, then the online-softmax update of every row. With
  // `causal`, slot c is seen by row r only when kpos[c] <= i0 + r.
  KOKKOS_INLINE_FUNCTION void process_chunk(const Member& team, const Tile& t, int len, bool causal) const {
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
      Scalar* srow = &t.s(r, 0);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, len), [&](const int c) { srow[c] = t.logw(c); });
      for (int x = 0; x < d; ++x) {
        const Scalar qx = t.qs(r, x);
        const Scalar* ktx = &t.kt(x, 0);
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, len), [&](const int c) { srow[c] += qx * ktx[c]; });
      }
      const int visible = causal ? visible_slots(t, r, len) : len;
      if (visible == 0) return;
      Scalar mx = srow[0];
      for (int c = 1; c < visible; ++c) mx = srow[c] > mx ? srow[c] : mx;
      const Scalar old_sum = t.rsum(r);
      const Scalar new_max = (old_sum > Scalar(0) && t.rmax(r) > mx) ? t.rmax(r) : mx;
      const Scalar rescale = old_sum > Scalar(0) ? Scalar(compat::exp(t.rmax(r) - new_max)) : Scalar(0);
      Scalar sum = 0;
      for (int c = 0; c < visible; ++c) {
        srow[c] = compat::exp(srow[c] - new_max);
        sum += srow[c];
      }
      Scalar* arow = &t.acc(r, 0);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) { arow[x] *= rescale; });
      for (int c = 0; c < visible; ++c) {
        const Scalar pc = srow[c];
        const Scalar* vrow = &t.vs(c, 0);
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) { arow[x] += pc * vrow[x]; });
      }
      Kokkos::single(Kokkos::PerThread(team), [&]() {
        t.rmax(r) = new_max;
        t.rsum(r) = old_sum * rescale + sum;
      });
    });
  }

  // Slots of a fine chunk are in increasing position order, so the visible ones are a prefix.
  KOKKOS_INLINE_FUNCTION int visible_slots(const Tile& t, int r, int len) const {
    const std::int64_t i = t.i0 + r;
    int c = len;
    while (c > 0 && t.kpos(c - 1) > i) --c;
    return c;
  }

  // Copies slot c of the chunk: key row into K^T, value row into V.
  KOKKOS_INLINE_FUNCTION void load_slot(const Member& team, const Tile& t, int c, const Scalar* krow,
                                        const Scalar* vrow) const {
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) {
      t.kt(x, c) = krow[x];
      t.vs(c, x) = vrow[x];
    });
  }

  KOKKOS_INLINE_FUNCTION void fine_range(const Member& team, const Tile& t, std::int64_t bh, std::int64_t lo,
                                         std::int64_t hi, bool causal) const {
    for (std::int64_t c0 = lo; c0 < hi; c0 += Tk) {
      const int len = int(hi - c0 < Tk ? hi - c0 : Tk);
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len), [&](const int c) {
        load_slot(team, t, c, &k(bh, c0 + c, 0), &v(bh, c0 + c, 0));
        Kokkos::single(Kokkos::PerThread(team), [&]() {
          t.kpos(c) = c0 + c;
          t.logw(c) = Scalar(0);
        });
      });
      process_chunk(team, t, len, causal);
    }
  }

  // Streams the tile's coarse slots of all levels, Tk at a time. Returns the total weight of
  // zero_sink far-field slots (cells left of the sequence start).
  KOKKOS_INLINE_FUNCTION double far_field(const Member& team, const Tile& t, std::int64_t bh, std::int64_t B) const {
    double sink = 0;
    int filled = 0;
    for (int l = 1; l <= g.L; ++l) {
      std::int64_t cells[max_far_cells];
      int negative = 0;
      const std::int64_t b = B >> (l - 1);
      const int nc = g.far_cells(l, b, cells, &negative);
      sink += double(negative) * (opt.count_weighting ? double(g.cell_size(l)) : double(g.p));
      const std::int64_t base = g.level_offset(l);
      for (int j = 0; j < nc; ++j) {
        for (int r = 0; r < g.p; ++r) {
          const double cnt = g.count(opt.downsampling, l, cells[j], r);
          if (cnt == 0) continue;  // absent coarse token
          const std::int64_t idx = base + cells[j] * g.p + r;
          const int c = filled++;
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, 1), [&](const int) {
            load_slot(team, t, c, &kc(bh, idx, 0), &vc(bh, idx, 0));
            Kokkos::single(Kokkos::PerThread(team),
                           [&]() { t.logw(c) = opt.count_weighting ? Scalar(compat::log(cnt)) : Scalar(0); });
          });
          if (filled == Tk) {
            process_chunk(team, t, filled, false);
            filled = 0;
          }
        }
      }
    }
    if (filled > 0) process_chunk(team, t, filled, false);
    return sink;
  }

  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    const std::int64_t bh = team.league_rank() / tiles_per_head;
    const std::int64_t tile = team.league_rank() % tiles_per_head;
    const std::int64_t B = tile / tiles_per_block;
    Tile t;
    t.i0 = B * g.m + (tile % tiles_per_block) * Tq;
    const std::int64_t block_end = (B + 1) * g.m < g.n ? (B + 1) * g.m : g.n;
    if (t.i0 >= block_end) return;
    t.rows = int(block_end - t.i0 < Tq ? block_end - t.i0 : Tq);
    const auto& scr = team.team_scratch(0);
    t.qs = Mat(scr, Tq, d);
    t.kt = Mat(scr, d, Tk);
    t.vs = Mat(scr, Tk, d);
    t.s = Mat(scr, Tq, Tk);
    t.acc = Mat(scr, Tq, d);
    t.logw = Vec(scr, Tk);
    t.rmax = Vec(scr, Tq);
    t.rsum = Vec(scr, Tq);
    t.kpos = Pos(scr, Tk);

    const Scalar scale = Scalar(opt.scale);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
      const Scalar* qrow = &q(bh, t.i0 + r, 0);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) {
        t.qs(r, x) = scale * qrow[x];
        t.acc(r, x) = Scalar(0);
      });
      Kokkos::single(Kokkos::PerThread(team), [&]() {
        t.rmax(r) = Scalar(0);
        t.rsum(r) = Scalar(0);
      });
    });

    const bool causal = g.variant == Variant::causal;
    const std::int64_t last_row = t.i0 + t.rows - 1;
    std::int64_t lo = 0, hi = g.n;
    if (opt.method == Method::fma) g.near_range(B, lo, hi);
    if (causal && hi > last_row + 1) hi = last_row + 1;
    fine_range(team, t, bh, lo, hi, causal);

    double sink = 0;
    if (opt.method == Method::fma) {
      sink = far_field(team, t, bh, B);
      if (B == 0) sink += g.m;  // zero_sink: the block left of the start, m slots of σ = 0
      if (opt.boundary != Boundary::zero_sink) sink = 0;
    }
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t.rows), [&](const int r) {
      Scalar denom = t.rsum(r);
      if (sink > 0) {
        // A slot of score 0, weight `sink` and value 0: only the denominator grows.
        const Scalar logw = Scalar(compat::log(sink));
        const Scalar new_max = t.rmax(r) > logw ? t.rmax(r) : logw;
        denom = denom * Scalar(compat::exp(t.rmax(r) - new_max)) + Scalar(compat::exp(logw - new_max));
        const Scalar shrink = Scalar(compat::exp(t.rmax(r) - new_max));
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) { t.acc(r, x) *= shrink; });
      }
      const Scalar inv = Scalar(1) / denom;
      Scalar* orow = &o(bh, t.i0 + r, 0);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, d), [&](const int x) { orow[x] = t.acc(r, x) * inv; });
    });
  }
};

// out = attention(q, k, v) for all batch·heads: FMA when opt.method is fma (kc, vc hold the
// coarse levels), exact attention otherwise.
template <class ExecSpace, class Scalar>
void evaluate_attention(const ExecSpace& space, const Geometry& g, const AttentionOptions& opt,
                        typename AttentionTiles<ExecSpace, Scalar>::In q,
                        typename AttentionTiles<ExecSpace, Scalar>::In k,
                        typename AttentionTiles<ExecSpace, Scalar>::In v,
                        typename AttentionTiles<ExecSpace, Scalar>::In kc,
                        typename AttentionTiles<ExecSpace, Scalar>::In vc,
                        typename AttentionTiles<ExecSpace, Scalar>::Out out) {
  using K = AttentionTiles<ExecSpace, Scalar>;
  K f;
  f.g = g;
  f.opt = opt;
  f.q = q;
  f.k = k;
  f.v = v;
  f.kc = kc;
  f.vc = vc;
  f.o = out;
  f.d = int(q.extent(2));
  f.tiles_per_block = (g.m + K::Tq - 1) / K::Tq;
  f.tiles_per_head = ((g.n + g.m - 1) / g.m) * f.tiles_per_block;
  const std::int64_t league = std::int64_t(q.extent(0)) * f.tiles_per_head;
  if (league == 0) return;
  typename K::Policy policy(space, int(league), Kokkos::AUTO);
  Kokkos::parallel_for("fmattn::attention::tiles", policy.set_scratch_size(0, Kokkos::PerTeam(K::scratch_bytes(f.d))),
                       f);
}

}  // namespace fmattn
