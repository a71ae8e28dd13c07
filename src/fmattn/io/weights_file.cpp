#include <fmattn/io/weights_file.hpp>

#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/io/provenance.hpp>
#include <fmattn/util/errors.hpp>

#include <cstdio>
#include <stdexcept>

namespace fmattn {

namespace {

std::string level_name(int l) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "level_%02d", l);
  return buf;
}

struct Operator {
  const char* name;
  std::vector<double>* weight;
  std::vector<double>* bias;
};
}  // namespace

DownsamplingWeights load_weights(const std::string& path, const Geometry& g, int d, bool need_q) {
  h5::Handle file = h5::open_read(path);
  // Files written by fmattn say what they are; hand-made ones without a schema are judged by
  // their layout alone.
  if (H5Aexists(file, "schema") > 0) {
    const std::string schema = h5::read_attr_string(file, "schema", path);
    if (schema != weights_schema && schema != checkpoint_schema)
      throw InputError(path + ": not a weights file (schema '" + schema + "', expected '" + weights_schema +
                       "' or a fit checkpoint '" + checkpoint_schema + "')");
  }
  const std::int64_t m = h5::read_attr_int(file, "block_size", path);
  const std::int64_t p = h5::read_attr_int(file, "rank", path);
  const std::int64_t hd = h5::read_attr_int(file, "head_dim", path);
  const std::int64_t N = h5::read_attr_int(file, "length", path);
  auto mismatch = [&](const char* what, std::int64_t got, std::int64_t want) {
    if (got != want)
      throw InputError(path + ": weights were made for " + what + " = " + std::to_string(got) + ", the deck needs " +
                       std::to_string(want));
  };
  mismatch("block_size", m, g.m);
  mismatch("rank", p, g.p);
  mismatch("head_dim", hd, d);
  mismatch("length (padded)", N, g.N);

  DownsamplingWeights w = DownsamplingWeights::average(g, d);
  const bool has_q = h5::exists(file, "downsampling/q");
  if (need_q && !has_q)
    throw InputError(path + ": missing group 'downsampling/q' (attention.queries: coarse with learned downsampling)");
  for (const Operator& op : {Operator{"q", &w.q_weight, &w.q_bias}, Operator{"k", &w.k_weight, &w.k_bias},
                             Operator{"v", &w.v_weight, &w.v_bias}}) {
    if (op.name[0] == 'q' && !has_q) continue;
    read_operator(file, "downsampling/" + std::string(op.name), g, d, *op.weight, *op.bias, path);
  }
  return w;
}

void write_weights(hid_t file, const DownsamplingWeights& w) {
  const Geometry& g = w.geometry;
  const int d = w.head_dim;
  h5::write_attr(file, "block_size", std::int64_t(g.m));
  h5::write_attr(file, "rank", std::int64_t(g.p));
  h5::write_attr(file, "head_dim", std::int64_t(d));
  h5::write_attr(file, "length", std::int64_t(g.N));
  h5::Handle top = h5::create_group(file, "downsampling");
  write_operator(top, "q", g, d, w.q_weight, w.q_bias);
  write_operator(top, "k", g, d, w.k_weight, w.k_bias);
  write_operator(top, "v", g, d, w.v_weight, w.v_bias);
}

void write_operator(hid_t parent, const std::string& name, const Geometry& g, int d, const std::vector<double>& weight,
                    const std::vector<double>& bias) {
  if (weight.size() != std::size_t(g.total_weights(d)) || bias.size() != std::size_t(g.L) * g.p * d)
    throw std::logic_error("write_operator: '" + name + "' does not have the geometry's parameter count");
  h5::Handle grp = h5::create_group(parent, name);
  for (int l = 1; l <= g.L; ++l) {
    h5::Handle lvl = h5::create_group(grp, level_name(l));
    h5::write_dataset(lvl, "weight", {g.p, g.cell_size(l), d}, weight.data() + g.weight_offset(l, d));
    h5::write_dataset(lvl, "bias", {g.p, d}, bias.data() + std::size_t(l - 1) * g.p * d);
  }
}

void read_operator(hid_t file, const std::string& group, const Geometry& g, int d, std::vector<double>& weight,
                   std::vector<double>& bias, const std::string& path) {
  weight.resize(g.total_weights(d));
  bias.resize(std::size_t(g.L) * g.p * d);
  for (int l = 1; l <= g.L; ++l) {
    const std::string grp = group + "/" + level_name(l);
    h5::read_float_dataset(file, grp + "/weight", {g.p, g.cell_size(l), d}, weight.data() + g.weight_offset(l, d),
                           path);
    h5::read_float_dataset(file, grp + "/bias", {g.p, d}, bias.data() + std::size_t(l - 1) * g.p * d, path);
  }
}

void save_weights(const std::string& path, const DownsamplingWeights& w, const std::string& deck_yaml) {
  h5::NewFile file(path);
  write_provenance(file.id(), weights_schema, deck_yaml, 1);
  write_weights(file.id(), w);
  file.commit();
}

}  // namespace fmattn
