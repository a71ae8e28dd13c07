#include "cost.hpp"

namespace fmattn {

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
      for (int l = 1; l <= g.L; ++l) {
        std::int64_t cells[max_far_cells];
        const int nc = g.far_cells(l, B >> (l - 1), cells);
        for (int j = 0; j < nc; ++j)
          for (int r = 0; r < g.p; ++r)
            if (g.count(opt.downsampling, l, cells[j], r) > 0) c.slots += rows;
      }
    }
    for (int l = 1; l <= g.L; ++l)
      c.downsample_flops += opt.downsampling == Downsampling::average ? n * d : 2.0 * g.p * n * d;
    c.downsample_flops *= 2.0 * double(heads);  // K and V
  }
  c.attention_flops = 4.0 * d * c.slots * double(heads);
  return c;
}

}  // namespace fmattn
