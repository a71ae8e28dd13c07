#include <fmattn/core/cost.hpp>

namespace fmattn {

namespace {
// Present coarse slots in the far field of levels l_first..l_last for the cell b_first of
// level l_first.
double far_slots(const Geometry& g, const AttentionOptions& opt, int l_first, int l_last, std::int64_t b_first) {
  double slots = 0;
  for (int l = l_first; l <= l_last; ++l) {
    std::int64_t cells[max_far_cells];
    const int nc = g.far_cells(l, b_first >> (l - l_first), cells);
    for (int j = 0; j < nc; ++j)
      for (int r = 0; r < g.p; ++r) slots += g.count(opt.downsampling, l, cells[j], r) > 0;
  }
  return slots;
}
}  // namespace

AttentionCost attention_cost(const Geometry& g, const AttentionOptions& opt, int d, std::int64_t heads) {
  AttentionCost c;
  const bool causal = g.variant == Variant::causal;
  const double n = double(g.n);
  if (opt.method == Method::exact) {
    c.slots = causal ? n * (n + 1) / 2 : n * n;
  } else {
    for (std::int64_t B = 0; B * g.m < g.n; ++B) {
      std::int64_t lo, hi;
      g.near_range(B, lo, hi);
      const std::int64_t first = B * g.m, last = (B + 1) * g.m < g.n ? (B + 1) * g.m : g.n;
      const double rows = double(last - first);
      // causal: query i sees lo..i, so the block sums (i - lo + 1) over its rows
      c.slots += causal ? rows * double(first - lo + 1) + rows * (rows - 1) / 2 : rows * double(hi - lo);
      if (!opt.coarse_queries && has_far_field(opt.method)) c.slots += rows * far_slots(g, opt, 1, g.L, B);
    }
    if (opt.coarse_queries) {
      // Each present coarse query evaluates its level's far field; each fine query merges one
      // partial sum per level (2·d flops, counted as half a slot).
      for (int l = 1; l <= g.L; ++l)
        for (std::int64_t b = 0; b * g.cell_size(l) < g.n; ++b) {
          int queries = 0;
          for (int r = 0; r < g.p; ++r) queries += g.count(opt.downsampling, l, b, r) > 0;
          c.slots += queries * far_slots(g, opt, l, l, b);
        }
      c.slots += 0.5 * n * g.L;
    }
    const double tensors = opt.coarse_queries ? 3.0 : 2.0;  // (Q,) K and V
    for (int l = 1; has_far_field(opt.method) && l <= g.L; ++l)
      c.downsample_flops += opt.downsampling == Downsampling::average ? n * d : 2.0 * g.p * n * d;
    c.downsample_flops *= tensors * double(heads);
  }
  c.attention_flops = 4.0 * d * c.slots * double(heads);
  return c;
}

}  // namespace fmattn
