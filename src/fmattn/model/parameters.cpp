#include <fmattn/model/parameters.hpp>

#include <fmattn/core/weights.hpp>
#include <fmattn/util/errors.hpp>
#include "kernels/synthetic.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace fmattn {

namespace {

enum class Init { normal, output_normal, zero, one, basis_weight, basis_bias };

struct Table {
  std::vector<ParameterSlot> slots;
  std::vector<Init> init;
  std::vector<int> level;             // basis slots: their level
  std::vector<std::uint64_t> stream;  // the random stream of a slot's initial values
  std::uint64_t next_stream = 0;
  std::int64_t next = 0;

  void add(const std::string& name, std::vector<std::int64_t> shape, Init how, int lvl = 0, double lr_scale = 1.0,
           std::int64_t row_begin = 0) {
    ParameterSlot s;
    s.row_begin = row_begin;
    s.name = name;
    s.size = 1;
    for (std::int64_t e : shape) s.size *= e;
    s.shape = std::move(shape);
    s.offset = next;
    s.decay = how == Init::normal || how == Init::output_normal;
    s.lr_scale = lr_scale;
    next += s.size;
    slots.push_back(std::move(s));
    init.push_back(how);
    level.push_back(lvl);
    stream.push_back(next_stream++);
  }
};

// With position rows [p0, p1) of the table (the whole table when p1 < 0).
Table table(const ModelConfig& c, std::int64_t p0 = 0, std::int64_t p1 = -1) {
  Table t;
  const std::int64_t W = c.width, F = 4 * std::int64_t(c.width), d = c.head_dim();
  if (p1 < 0) p1 = c.context;
  t.add("embedding", {vocabulary, W}, Init::normal);
  if (c.learned_positions())
    t.add("position", {p1 - p0, W}, Init::normal, 0, 1.0, p0);
  else
    ++t.next_stream;  // every other slot starts as in the learned-positions model
  const Geometry g = c.geometry();
  for (int b = 0; b < c.layers; ++b) {
    const std::string p = block_prefix(b);
    t.add(p + "ln1_gain", {W}, Init::one);
    t.add(p + "ln1_bias", {W}, Init::zero);
    for (const char* m : {"q", "k", "v"}) {
      t.add(p + "w" + m, {W, W}, Init::normal);
      t.add(p + "b" + m, {W}, Init::zero);
    }
    t.add(p + "wo", {W, W}, Init::output_normal);
    t.add(p + "bo", {W}, Init::zero);
    t.add(p + "ln2_gain", {W}, Init::one);
    t.add(p + "ln2_bias", {W}, Init::zero);
    t.add(p + "w1", {W, F}, Init::normal);
    t.add(p + "b1", {F}, Init::zero);
    t.add(p + "w2", {F, W}, Init::output_normal);
    t.add(p + "b2", {W}, Init::zero);
    if (!c.learned_basis()) continue;
    for (const char op : {'k', 'v'})
      for (int l = 1; l <= g.L; ++l) {
        const std::string q = basis_prefix(b, op, l);
        t.add(q + "weight", {g.p, g.cell_size(l), d}, Init::basis_weight, l, double(g.p) / double(g.cell_size(l)));
        t.add(q + "bias", {g.p, d}, Init::basis_bias, l);
      }
  }
  t.add("final_norm/gain", {W}, Init::one);
  t.add("final_norm/bias", {W}, Init::zero);
  return t;
}

// Slot s of t at the average operator: its weights as `average` holds them, its biases 0.
void average_operator(const Table& t, std::size_t s, const Geometry& g, const DownsamplingWeights& average, int d,
                      double* v) {
  const std::int64_t n = t.slots[s].size;
  if (t.init[s] == Init::basis_bias) {
    std::fill(v, v + n, 0.0);
    return;
  }
  const double* w = average.k_weight.data() + g.weight_offset(t.level[s], d);
  std::copy(w, w + n, v);
}

bool same_except_context(const ModelConfig& a, const ModelConfig& b) {
  const AttentionOptions &u = a.attention, &v = b.attention;
  return a.layers == b.layers && a.width == b.width && a.heads == b.heads && a.positions == b.positions &&
         a.block_size == b.block_size && a.rank == b.rank && u.method == v.method && u.downsampling == v.downsampling &&
         u.count_weighting == v.count_weighting && u.boundary == v.boundary && u.scale == v.scale &&
         u.coarse_queries == v.coarse_queries;
}

}  // namespace

std::string block_prefix(int block) {
  char s[32];
  std::snprintf(s, sizeof s, "block_%02d/", block);
  return s;
}

std::string basis_prefix(int block, char op, int level) {
  char s[32];
  std::snprintf(s, sizeof s, "level_%02d/", level);
  return block_prefix(block) + "downsampling/" + op + "/" + s;
}

std::vector<ParameterSlot> parameter_slots(const ModelConfig& c) { return table(c).slots; }

std::vector<ParameterSlot> parameter_slots(const ModelConfig& c, std::int64_t position_begin,
                                           std::int64_t position_end) {
  if (position_begin < 0 || position_end < position_begin || position_end > c.context)
    throw std::invalid_argument("parameter_slots: position rows outside the context");
  return table(c, position_begin, position_end).slots;
}

namespace {

// Calls f(part slot, offset of its row_begin row in `whole`'s slot) for every slot of `part`.
template <class F>
void for_each_part(const std::vector<ParameterSlot>& whole, const std::vector<ParameterSlot>& part, F&& f) {
  for (const ParameterSlot& s : part) {
    const ParameterSlot& w = find_slot(whole, s.name);
    const std::int64_t row = s.shape[0] > 0 ? s.size / s.shape[0] : 0,
                       whole_row = w.shape[0] > 0 ? w.size / w.shape[0] : 0;
    const std::int64_t first = s.row_begin - w.row_begin;
    if (row != whole_row || first < 0 || first + s.shape[0] > w.shape[0])
      throw std::invalid_argument("parameter rows of " + s.name + " are not part of the model's");
    f(s, w.offset + first * row);
  }
}

}  // namespace

std::vector<double> take_rows(const std::vector<ParameterSlot>& whole, const std::vector<double>& x,
                              const std::vector<ParameterSlot>& part) {
  std::vector<double> y(std::size_t(parameter_count(part)));
  for_each_part(whole, part, [&](const ParameterSlot& s, std::int64_t at) {
    std::copy(x.begin() + at, x.begin() + at + s.size, y.begin() + s.offset);
  });
  return y;
}

void put_rows(const std::vector<ParameterSlot>& part, const std::vector<double>& values,
              const std::vector<ParameterSlot>& whole, std::vector<double>& x) {
  for_each_part(whole, part, [&](const ParameterSlot& s, std::int64_t at) {
    std::copy(values.begin() + s.offset, values.begin() + s.offset + s.size, x.begin() + at);
  });
}

std::int64_t parameter_count(const std::vector<ParameterSlot>& slots) {
  return slots.empty() ? 0 : slots.back().offset + slots.back().size;
}

const ParameterSlot& find_slot(const std::vector<ParameterSlot>& slots, const std::string& name) {
  for (const ParameterSlot& s : slots)
    if (s.name == name) return s;
  throw std::logic_error("no parameter slot " + name);
}

std::vector<double> initial_parameters(const ModelConfig& c, const std::vector<ParameterSlot>& slots,
                                       std::uint64_t seed) {
  const Table t = table(c);
  const Geometry g = c.geometry();
  const int d = c.head_dim();
  const DownsamplingWeights average = DownsamplingWeights::average(g, d);
  std::vector<double> x(std::size_t(parameter_count(slots)), 0.0);
  const double output_std = 0.02 / std::sqrt(2.0 * c.layers);
  for (std::size_t s = 0; s < slots.size(); ++s) {
    double* v = x.data() + slots[s].offset;
    const std::int64_t n = slots[s].size,
                       first = slots[s].row_begin * (n / std::max<std::int64_t>(1, slots[s].shape[0]));
    switch (t.init[s]) {
      case Init::normal:
      case Init::output_normal: {
        const double sd = t.init[s] == Init::normal ? 0.02 : output_std;
        for (std::int64_t i = 0; i < n; ++i)
          v[i] = sd * detail::gaussian(detail::hash_key(seed, 0x1a7e5ull, t.stream[s], first + i, 0));
        break;
      }
      case Init::one:
        for (std::int64_t i = 0; i < n; ++i) v[i] = 1.0;
        break;
      case Init::basis_weight:
      case Init::basis_bias:
        average_operator(t, s, g, average, d, v);
        break;
      case Init::zero:
        break;  // x starts at 0
    }
  }
  return x;
}

std::vector<double> adapt_parameters(const ModelConfig& from, const std::vector<double>& x, const ModelConfig& to) {
  if (!same_except_context(from, to))
    throw std::invalid_argument("adapt_parameters: the models differ in more than the context");
  if (from.learned_positions() && from.context != to.context)
    throw std::invalid_argument("adapt_parameters: a model with learned positions (a table of " +
                                std::to_string(from.context) + " rows) cannot run at context " +
                                std::to_string(to.context));
  const std::vector<ParameterSlot> have = parameter_slots(from);
  if (x.size() != std::size_t(parameter_count(have)))
    throw std::invalid_argument("adapt_parameters: " + std::to_string(x.size()) + " values for a model of " +
                                std::to_string(parameter_count(have)) + " parameters");
  const Table t = table(to);
  const Geometry g = to.geometry();
  const int trained_levels = from.geometry().L;
  const DownsamplingWeights average = DownsamplingWeights::average(g, to.head_dim());
  std::vector<double> y(std::size_t(parameter_count(t.slots)));
  for (std::size_t s = 0; s < t.slots.size(); ++s) {
    const ParameterSlot& slot = t.slots[s];
    const auto it = std::find_if(have.begin(), have.end(), [&](const ParameterSlot& h) { return h.name == slot.name; });
    double* v = y.data() + slot.offset;
    if (it != have.end() && it->shape == slot.shape)
      std::copy(x.begin() + it->offset, x.begin() + it->offset + it->size, v);
    else if (it == have.end() && t.level[s] > trained_levels)  // a coarse level the longer context adds
      average_operator(t, s, g, average, to.head_dim(), v);
    else
      throw std::invalid_argument("adapt_parameters: parameter " + slot.name +
                                  (it == have.end() ? " is missing" : " has another shape"));
  }
  return y;
}

}  // namespace fmattn
