#include <fmattn/io/checkpoint.hpp>

#include <fmattn/io/hdf5_io.hpp>
#include <fmattn/io/provenance.hpp>
#include <fmattn/io/weights_file.hpp>
#include <fmattn/util/errors.hpp>

namespace fmattn {

namespace {

DownsamplingWeights zeros_like(const DownsamplingWeights& w) {
  DownsamplingWeights z = w;
  for (auto* vec : {&z.q_weight, &z.q_bias, &z.k_weight, &z.k_bias, &z.v_weight, &z.v_bias})
    vec->assign(vec->size(), 0.0);
  return z;
}

}  // namespace

FitState FitState::start(const DownsamplingWeights& w, std::uint64_t seed) {
  FitState s;
  s.weights = w;
  s.moment1 = s.moment2 = zeros_like(w);
  s.seed = seed;
  return s;
}

void save_checkpoint(const std::string& path, const FitState& s, const Adam& adam, const std::string& deck_yaml) {
  if (s.loss.size() != std::size_t(s.step))
    throw std::logic_error("save_checkpoint: the loss history must hold one value per step");
  const Geometry& g = s.weights.geometry;
  const int d = s.weights.head_dim;
  h5::NewFile file(path);
  write_provenance(file.id(), checkpoint_schema, deck_yaml, 1);
  write_weights(file.id(), s.weights);
  h5::write_attr(file.id(), "step", s.step);
  {
    h5::Handle opt = h5::create_group(file.id(), "optimizer");
    h5::write_attr(opt, "algorithm", std::string("adam"));
    h5::write_attr(opt, "learning_rate", adam.learning_rate);
    h5::write_attr(opt, "beta1", adam.beta1);
    h5::write_attr(opt, "beta2", adam.beta2);
    h5::write_attr(opt, "epsilon", adam.epsilon);
    for (const auto& [name, m] : {std::pair{"moment1", &s.moment1}, std::pair{"moment2", &s.moment2}}) {
      h5::Handle grp = h5::create_group(opt, name);
      write_operator(grp, "k", g, d, m->k_weight, m->k_bias);
      write_operator(grp, "v", g, d, m->v_weight, m->v_bias);
    }
  }
  {
    h5::Handle fit = h5::create_group(file.id(), "fit");
    h5::write_dataset(fit, "loss", {s.step}, s.loss.data());
    h5::write_attr(fit, "rng", std::string("counter-based: the rows of step t derive from (rng_seed, t)"));
    h5::write_attr(fit, "rng_seed", std::to_string(s.seed));
    h5::write_attr(fit, "rng_next_step", s.step + 1);
  }
  file.commit();
}

FitState load_checkpoint(const std::string& path, const Geometry& g, int d) {
  {
    h5::Handle file = h5::open_read(path);
    const std::string found = h5::read_attr_string(file, "schema", path);
    if (found != checkpoint_schema)
      throw InputError(path + ": not a fit checkpoint (schema '" + found + "', expected '" + checkpoint_schema + "')");
  }
  FitState s;
  s.weights = load_weights(path, g, d);  // checks the geometry
  s.moment1 = s.moment2 = zeros_like(s.weights);
  h5::Handle file = h5::open_read(path);
  s.step = h5::read_attr_int(file, "step", path);
  if (s.step < 1) throw InputError(path + ": attribute 'step' must be >= 1, found " + std::to_string(s.step));
  for (const auto& [name, m] : {std::pair{"moment1", &s.moment1}, std::pair{"moment2", &s.moment2}}) {
    const std::string grp = std::string("optimizer/") + name;
    read_operator(file, grp + "/k", g, d, m->k_weight, m->k_bias, path);
    read_operator(file, grp + "/v", g, d, m->v_weight, m->v_bias, path);
  }
  // The loss history is sized from the file's dataset, checked against `step`, so that a
  // damaged `step` is a mismatch and not an allocation of its size.
  const h5::DatasetInfo loss = h5::dataset_info(file, "fit/loss", path);
  if (loss.shape != std::vector<std::int64_t>{s.step})
    throw InputError(path + ": dataset 'fit/loss' has shape " + h5::shape_string(loss.shape) +
                     ", expected one loss per step: [" + std::to_string(s.step) + "] (attribute 'step')");
  s.loss.resize(s.step);
  h5::read_float_dataset(file, "fit/loss", {s.step}, s.loss.data(), path);
  for (auto* v : {&s.moment2.k_weight, &s.moment2.k_bias, &s.moment2.v_weight, &s.moment2.v_bias})
    for (double x : *v)
      if (x < 0) throw InputError(path + ": optimizer/moment2 holds a negative value (" + std::to_string(x) + ")");
  h5::Handle fit = h5::open_group(file, "fit", path);
  const std::string seed = h5::read_attr_string(fit, "rng_seed", path + ": fit");
  try {
    std::size_t used = 0;
    s.seed = std::stoull(seed, &used);
    if (used != seed.size()) throw std::invalid_argument(seed);
  } catch (const std::exception&) {
    throw InputError(path + ": fit attribute 'rng_seed' is not an unsigned integer: '" + seed + "'");
  }
  return s;
}

}  // namespace fmattn
