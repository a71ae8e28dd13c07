#include <fmattn/io/model_file.hpp>

#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/io/provenance.hpp>
#include <fmattn/model/flops.hpp>
#include <fmattn/util/errors.hpp>

#include <cmath>
#include <limits>
#include <set>

namespace fmattn {

namespace {

// Creates the groups on the way to `name` ("params/block_00/wq" → params, params/block_00).
void make_parents(hid_t file, const std::string& name, std::set<std::string>& made) {
  for (std::size_t at = name.find('/'); at != std::string::npos; at = name.find('/', at + 1)) {
    const std::string group = name.substr(0, at);
    if (made.insert(group).second) h5::create_group(file, group);
  }
}

// The slots of x (laid out as `slots`, a part of the model's `whole` slots) as datasets of the
// whole shape: a slot held whole is written by rank 0 alone; a slot of some rows (a sharded
// rank's rows of P) by every rank, its own rows, collectively.
template <class T>
void write_flat(hid_t file, const std::string& group, const std::vector<ParameterSlot>& slots,
                const std::vector<ParameterSlot>& whole, const std::vector<double>& x, std::set<std::string>& made,
                int rank, bool collective) {
  for (const ParameterSlot& s : slots) {
    const std::string name = group + "/" + s.name;
    const ParameterSlot& w = find_slot(whole, s.name);
    make_parents(file, name, made);
    std::vector<T> v(x.begin() + s.offset, x.begin() + s.offset + s.size);
    if (s.shape == w.shape)
      h5::write_dataset(file, name, w.shape, v.data(), rank == 0);
    else
      h5::write_leading_rows(file, name, w.shape, s.row_begin, s.shape[0], v.data(), collective);
  }
}

// The slots `slots` (a part of the model's `whole` slots) from datasets of the whole shape.
template <class T>
std::vector<double> read_flat(hid_t file, const std::string& group, const std::vector<ParameterSlot>& slots,
                              const std::vector<ParameterSlot>& whole, const std::string& path) {
  std::vector<double> x(std::size_t(parameter_count(slots)));
  for (const ParameterSlot& s : slots) {
    const std::string name = group + "/" + s.name;
    if (!h5::exists(file, name)) throw InputError(path + ": model checkpoint without dataset '" + name + "'");
    const ParameterSlot& w = find_slot(whole, s.name);
    std::vector<T> v(std::size_t(s.size));
    if (s.shape == w.shape)
      h5::read_float_dataset(file, name, w.shape, v.data(), path);
    else
      h5::read_float_leading_rows(file, name, w.shape, s.row_begin, s.shape[0], v.data(), path);
    std::copy(v.begin(), v.end(), x.begin() + s.offset);
  }
  return x;
}

void write_series(hid_t grp, const char* name, const std::vector<double>& v, bool participate) {
  h5::write_dataset(grp, name, {std::int64_t(v.size())}, v.data(), participate);
}

std::vector<double> read_series(hid_t file, const std::string& name, std::int64_t expect, const std::string& path) {
  if (!h5::exists(file, name)) throw InputError(path + ": model checkpoint without dataset '" + name + "'");
  const h5::DatasetInfo info = h5::dataset_info(file, name, path);
  if (info.shape.size() != 1 || (expect >= 0 && info.shape[0] != expect))
    throw InputError(path + ": dataset '" + name + "' has shape " + h5::shape_string(info.shape) + ", expected [" +
                     (expect >= 0 ? std::to_string(expect) : std::string("n")) + "]");
  std::vector<double> v(std::size_t(info.shape[0]));
  h5::read_float_dataset(file, name, info.shape, v.data(), path);
  return v;
}

std::string config_difference(const ModelState& a, const ModelState& b) {
  const ModelConfig &x = a.config, &y = b.config;
  auto num = [](const char* key, std::int64_t u, std::int64_t v) {
    return u == v ? std::string()
                  : std::string(key) + " " + std::to_string(u) + " (the deck has " + std::to_string(v) + ")";
  };
  auto str = [](const char* key, const std::string& u, const std::string& v) {
    return u == v ? std::string() : std::string(key) + " " + u + " (the deck has " + v + ")";
  };
  for (const std::string& d :
       {num("model.layers", x.layers, y.layers), num("model.width", x.width, y.width),
        num("model.heads", x.heads, y.heads), str("model.positions", name_of(x.positions), name_of(y.positions)),
        num("model.context", x.context, y.context), str("model.dtype", name_of(a.dtype), name_of(b.dtype)),
        str("attention.method", name_of(x.attention.method), name_of(y.attention.method)),
        str("attention.downsampling", name_of(x.attention.downsampling), name_of(y.attention.downsampling)),
        num("attention.block_size", x.block_size, y.block_size), num("attention.rank", x.rank, y.rank),
        num("attention.count_weighting", x.attention.count_weighting, y.attention.count_weighting),
        str("attention.boundary", name_of(x.attention.boundary), name_of(y.attention.boundary)),
        x.attention.scale == y.attention.scale ? std::string()
                                               : "attention.scale " + std::to_string(x.attention.scale) +
                                                     " (the deck has " + std::to_string(y.attention.scale) + ")"})
    if (!d.empty()) return d;
  return "";
}

template <class E>
E parse_choice(const std::string& s, const std::vector<std::pair<const char*, E>>& options, const std::string& what) {
  for (const auto& [name, value] : options)
    if (s == name) return value;
  throw InputError(what + ": unknown value '" + s + "'");
}

}  // namespace

void save_model(const std::string& path, const ModelState& s, const std::string& deck_yaml, int mpi_ranks,
                MPI_Comm comm, const std::vector<ParameterSlot>* part) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  const std::vector<ParameterSlot> whole = parameter_slots(s.config);
  const std::vector<ParameterSlot>& slots = part ? *part : whole;
  const bool first = rank == 0;
  const TrainHistory& h = s.history;
  for (const std::vector<double>* series : {&h.loss, &h.learning_rate, &h.grad_norm, &h.tokens_per_second})
    if (series->size() != std::size_t(s.step))
      throw std::logic_error("save_model: the training history must hold one value per step");
  // No file fmattn writes holds a non-finite number (the check happens before the file exists).
  const std::pair<const char*, const std::vector<double>*> arrays[] = {
      {"params", &s.params},          {"optimizer/moment1", &s.moment1},         {"optimizer/moment2", &s.moment2},
      {"train/loss", &h.loss},        {"train/learning_rate", &h.learning_rate}, {"train/grad_norm", &h.grad_norm},
      {"train/val_loss", &h.val_loss}};
  std::string bad;
  for (const auto& [name, values] : arrays)
    for (double v : *values)
      if (!std::isfinite(v) || (s.dtype == Dtype::float32 && std::abs(v) > double(std::numeric_limits<float>::max())))
        bad = name;
  // Every rank of a collective write decides alike.
  int fine = bad.empty(), all_fine = fine;
  MPI_Allreduce(&fine, &all_fine, 1, MPI_INT, MPI_MIN, comm);
  if (!all_fine)
    throw std::runtime_error((bad.empty() ? std::string("another rank's part of the model") : bad) +
                             " holds a non-finite value: not written, " + path + " is as it was");
  h5::NewFile file(path, comm);
  write_provenance(file.id(), model_schema, deck_yaml, mpi_ranks);
  const ModelConfig& c = s.config;
  h5::write_attr(file.id(), "step", s.step);
  h5::write_attr(file.id(), "layers", std::int64_t(c.layers));
  h5::write_attr(file.id(), "width", std::int64_t(c.width));
  h5::write_attr(file.id(), "heads", std::int64_t(c.heads));
  h5::write_attr(file.id(), "context", std::int64_t(c.context));
  h5::write_attr(file.id(), "positions", std::string(name_of(c.positions)));
  h5::write_attr(file.id(), "vocab", std::int64_t(vocabulary));
  h5::write_attr(file.id(), "block_size", std::int64_t(c.block_size));
  h5::write_attr(file.id(), "rank", std::int64_t(c.rank));
  h5::write_attr(file.id(), "dtype", std::string(name_of(s.dtype)));
  h5::write_attr(file.id(), "method", std::string(name_of(c.attention.method)));
  h5::write_attr(file.id(), "downsampling", std::string(name_of(c.attention.downsampling)));
  h5::write_attr(file.id(), "count_weighting", std::int64_t(c.attention.count_weighting ? 1 : 0));
  h5::write_attr(file.id(), "boundary", std::string(name_of(c.attention.boundary)));
  h5::write_attr(file.id(), "scale", c.attention.scale);
  std::set<std::string> made;
  auto write = [&](const std::string& group, const std::vector<double>& x) {
    if (s.dtype == Dtype::float32)
      write_flat<float>(file.id(), group, slots, whole, x, made, rank, ranks > 1);
    else
      write_flat<double>(file.id(), group, slots, whole, x, made, rank, ranks > 1);
  };
  write("params", s.params);
  {
    h5::Handle opt = h5::create_group(file.id(), "optimizer");
    made.insert("optimizer");
    h5::write_attr(opt, "algorithm", std::string("adamw"));
  }
  write("optimizer/moment1", s.moment1);
  write("optimizer/moment2", s.moment2);
  h5::Handle train = h5::create_group(file.id(), "train");
  write_series(train, "loss", h.loss, first);
  write_series(train, "learning_rate", h.learning_rate, first);
  write_series(train, "grad_norm", h.grad_norm, first);
  write_series(train, "tokens_per_second", h.tokens_per_second, first);
  // Model FLOP/s: derived from tokens/s (so not read back), for the analysis of a run.
  const double flops_per_token = training_flops_per_token(c);
  h5::write_attr(train, "flops_per_token", flops_per_token);
  std::vector<double> flops(h.tokens_per_second);
  for (double& f : flops) f *= flops_per_token;
  write_series(train, "model_flops_per_second", flops, first);
  write_series(train, "val_loss", h.val_loss, first);
  h5::write_dataset(train, "val_step", {std::int64_t(h.val_step.size())}, h.val_step.data(), first);
  // Counter based: the windows of step t derive from (seed, t) alone.
  const std::int64_t rng[2] = {std::int64_t(s.seed), s.step + 1};
  h5::write_dataset(train, "rng_state", {2}, rng, first);
  h5::write_attr(train, "rng",
                 std::string("counter-based: windows of step t from (rng_state[0], t); next t = rng_state[1]"));
  file.commit();
}

ModelState load_model(const std::string& path, const ModelState* expect, const PartOf& part) {
  h5::Handle file = h5::open_read(path);
  const std::string schema = h5::read_attr_string(file, "schema", path);
  if (schema != model_schema)
    throw InputError(path + ": not a model checkpoint (schema '" + schema + "', expected '" + model_schema + "')");
  ModelState s;
  ModelConfig& c = s.config;
  auto positive = [&](const char* name, std::int64_t hi) {
    const std::int64_t v = h5::read_attr_int(file, name, path);
    if (v < 1 || v > hi) throw InputError(path + ": attribute '" + name + "' out of range: " + std::to_string(v));
    return int(v);
  };
  c.layers = positive("layers", 1 << 16);
  c.width = positive("width", 1 << 20);
  c.heads = positive("heads", c.width);
  c.context = positive("context", 1 << 30);
  // Checkpoints from before positions: none hold a position table and no attribute.
  if (H5Aexists(file, "positions") > 0)
    c.positions =
        parse_choice<Positions>(h5::read_attr_string(file, "positions", path),
                                {{"learned", Positions::learned}, {"none", Positions::none}}, path + ": positions");
  c.block_size = positive("block_size", 1 << 30);
  c.rank = positive("rank", c.block_size);
  if (c.width % c.heads != 0 || !is_pow2(c.block_size) || !is_pow2(c.rank))
    throw InputError(path + ": inconsistent model attributes (width % heads, block_size and rank powers of two)");
  s.dtype = parse_choice<Dtype>(h5::read_attr_string(file, "dtype", path),
                                {{"float32", Dtype::float32}, {"float64", Dtype::float64}}, path + ": dtype");
  c.attention.method = parse_choice<Method>(h5::read_attr_string(file, "method", path),
                                            {{"fma", Method::fma}, {"exact", Method::exact}, {"local", Method::local}},
                                            path + ": method");
  c.attention.downsampling = parse_choice<Downsampling>(
      h5::read_attr_string(file, "downsampling", path),
      {{"average", Downsampling::average}, {"learned", Downsampling::learned}}, path + ": downsampling");
  c.attention.count_weighting = h5::read_attr_int(file, "count_weighting", path) != 0;
  c.attention.boundary =
      parse_choice<Boundary>(h5::read_attr_string(file, "boundary", path),
                             {{"masked", Boundary::masked}, {"zero_sink", Boundary::zero_sink}}, path + ": boundary");
  c.attention.scale = h5::read_attr_double(file, "scale", path);
  if (!(c.attention.scale > 0) || !std::isfinite(c.attention.scale))
    throw InputError(path + ": attribute 'scale' must be a positive number");
  if (expect) {
    const std::string diff = config_difference(s, *expect);
    if (!diff.empty()) throw InputError(path + ": a checkpoint of another model: " + diff);
  }
  s.step = h5::read_attr_int(file, "step", path);
  if (s.step < 0) throw InputError(path + ": attribute 'step' must be >= 0, found " + std::to_string(s.step));
  const std::vector<ParameterSlot> whole = parameter_slots(c);
  const std::vector<ParameterSlot> slots = part ? part(c) : whole;
  if (!h5::exists(file, "params")) throw InputError(path + ": model checkpoint without group 'params'");
  auto read = [&](const std::string& group) {
    return s.dtype == Dtype::float32 ? read_flat<float>(file, group, slots, whole, path)
                                     : read_flat<double>(file, group, slots, whole, path);
  };
  s.params = read("params");
  s.moment1 = read("optimizer/moment1");
  s.moment2 = read("optimizer/moment2");
  for (double v : s.moment2)
    if (v < 0) throw InputError(path + ": optimizer/moment2 holds a negative value");
  for (const auto* x : {&s.params, &s.moment1, &s.moment2})
    for (double v : *x)
      if (!std::isfinite(v)) throw InputError(path + ": the model or its optimizer moments hold a non-finite value");
  TrainHistory& h = s.history;
  h.loss = read_series(file, "train/loss", s.step, path);
  h.learning_rate = read_series(file, "train/learning_rate", s.step, path);
  h.grad_norm = read_series(file, "train/grad_norm", s.step, path);
  h.tokens_per_second = read_series(file, "train/tokens_per_second", s.step, path);
  h.val_loss = read_series(file, "train/val_loss", -1, path);
  const std::int64_t evaluations = std::int64_t(h.val_loss.size());
  if (!h5::exists(file, "train/val_step") ||
      h5::dataset_info(file, "train/val_step", path).shape != std::vector<std::int64_t>{evaluations})
    throw InputError(path + ": dataset 'train/val_step' missing or not of the shape of 'train/val_loss'");
  h.val_step.resize(std::size_t(evaluations));
  if (!h5::exists(file, "train/rng_state"))
    throw InputError(path + ": model checkpoint without dataset 'train/rng_state'");
  h5::Handle ds(H5Dopen2(file, "train/val_step", H5P_DEFAULT), H5Dclose);
  std::int64_t rng[2] = {0, 0};
  h5::Handle rs(H5Dopen2(file, "train/rng_state", H5P_DEFAULT), H5Dclose);
  if ((evaluations > 0 && H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, h.val_step.data()) < 0) ||
      rs.get() < 0 || h5::dataset_info(file, "train/rng_state", path).shape != std::vector<std::int64_t>{2} ||
      H5Dread(rs, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, rng) < 0)
    throw InputError(path + ": cannot read 'train/val_step' or 'train/rng_state'");
  if (rng[0] < 0 || rng[1] != s.step + 1)
    throw InputError(path + ": 'train/rng_state' does not match the checkpoint's step");
  s.seed = std::uint64_t(rng[0]);
  return s;
}

}  // namespace fmattn
