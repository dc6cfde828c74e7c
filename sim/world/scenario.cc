#include "sim/world/scenario.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/cl/learner.h"
#include "core/cl/methods/sema/sema_method.h"
#include "core/ood/detector_registry.h"
#include "proto/federation_convert.h"
#include "proto/fl_config.h"
#include "proto/text_format.h"
#include "sim/world/cl_tasks.h"

namespace fedcl::sim {
namespace {

constexpr int kMaxClients = 10'000'000;

absl::Status Invalid(absl::string_view source, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("scenario '", source, "': ", message));
}

std::string Directory(absl::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == absl::string_view::npos ? std::string(".")
                                          : std::string(path.substr(0, slash + 1));
}

std::string Resolve(absl::string_view source, const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  return base::JoinPath(Directory(source), path);
}

void ApplyContinualDefaults(v1::SimScenario& c) {
  v1::ContinualConfig* k = c.mutable_continual();
  if (k->method_size() == 0) {
    for (const char* m : {"linear_head", "simple_cil", "fed_simple_cil", "sequential_adapter",
                          "lae", "sema", "sema_replay", "fedins"})
      k->add_method(m);
  }
  if (k->joint_method().empty()) k->set_joint_method("sequential_adapter");
  if (k->rounds_per_task() == 0) k->set_rounds_per_task(30);
  if (k->steps_per_round() == 0) k->set_steps_per_round(4);
  if (k->joint_steps() == 0) {
    const int tasks = k->kind() == "domains" ? k->shift_size() + 1 : k->task_size();
    k->set_joint_steps(tasks * k->rounds_per_task() * k->steps_per_round());
  }
  if (k->batch_size() == 0) k->set_batch_size(32);
  if (k->max_delay_rounds() == 0) k->set_max_delay_rounds(k->rounds_per_task() / 3);
  if (k->samples_per_task() == 0) k->set_samples_per_task(1000);
  if (k->eval_samples() == 0) k->set_eval_samples(1000);
  if (k->eval_devices() == 0) k->set_eval_devices(4);
  v1::ClLearnerConfig* l = k->mutable_learner();
  if (l->learning_rate() == 0) l->set_learning_rate(0.01f);
  if (l->expansion_tau() == 0) l->set_expansion_tau(2.0);
  if (l->new_module_steps() == 0) l->set_new_module_steps(150);
  if (l->adapter_bottleneck() == 0) l->set_adapter_bottleneck(8);
  if (l->descriptor_bottleneck() == 0) l->set_descriptor_bottleneck(16);
  if (l->max_adapters_per_block() == 0) l->set_max_adapters_per_block(4);
  if (l->confirm_batches() == 0) l->set_confirm_batches(2);
  if (l->sema_trigger().empty()) l->set_sema_trigger("cusum");
  if (l->sema_trigger_score().empty()) l->set_sema_trigger_score("energy");
  if (l->sema_calibration_samples() == 0) l->set_sema_calibration_samples(512);
  if (l->sema_false_alarms_per_10k() == 0) l->set_sema_false_alarms_per_10k(1.0);
  if (l->lae_fraction_per_task() == 0) l->set_lae_fraction_per_task(0.1);
  if (l->fedins_pool_size() == 0) l->set_fedins_pool_size(8);
  if (l->fedins_top_k() == 0) l->set_fedins_top_k(2);
  v1::ClPoolConfig* pool = k->mutable_pool();
  if (pool->divergence_threshold() == 0) pool->set_divergence_threshold(0.5);
  if (pool->round_window() == 0) pool->set_round_window(30);
  if (pool->capacity() == 0) pool->set_capacity(32);
  const int tasks = k->kind() == "domains" ? k->shift_size() + 1 : k->task_size();
  if (c.rounds() == 0) c.set_rounds(int64_t{tasks} * k->rounds_per_task());
}

void ApplyDefaults(v1::SimScenario& c) {
  if (c.has_continual()) {
    if (c.model().backbone().empty()) c.mutable_model()->set_backbone("vit");
    ApplyContinualDefaults(c);
  }
  v1::SimModelConfig* m = c.mutable_model();
  if (m->backbone().empty()) m->set_backbone("mlp");
  if (m->backbone() == "mlp" && m->mlp_hidden_size() == 0) m->add_mlp_hidden(64);
  if (c.module_size() == 0) {
    v1::ModuleConfig* backbone = c.add_module();
    backbone->set_name("backbone");
    backbone->set_role("backbone");
    v1::ModuleConfig* head = c.add_module();
    head->set_name("head");
    head->set_role("head");
  }
  v1::SimDataConfig* d = c.mutable_data();
  if (d->dir().empty()) d->set_dir("/usr/share/datasets/fashion-mnist");
  if (d->partition().empty()) d->set_partition("dirichlet");
  if (d->alpha() == 0) d->set_alpha(0.1);
  if (d->samples_per_client() == 0) d->set_samples_per_client(600);
  v1::ParticipationConfig* p = c.mutable_participation();
  if (p->probabilities().empty()) p->set_probabilities("label_correlated");
  if (p->alpha() == 0) p->set_alpha(0.1);
  if (p->p_mean() == 0) p->set_p_mean(0.1);
  if (p->p_min() == 0) p->set_p_min(0.02);
  if (p->pattern_size() == 0) p->add_pattern("bernoulli");
  proto::ApplyRecipeDefaults(*c.mutable_recipe());
  if (c.method_size() == 0) {
    v1::SimMethod* fedau = c.add_method();
    fedau->set_label("fedau");
  }
  for (v1::SimMethod& method : *c.mutable_method())
    proto::ApplyAggregatorDefaults(*method.mutable_aggregator());
  if (c.seed_size() == 0) c.add_seed(1);
  if (c.eval_every() == 0) c.set_eval_every(10);
  if (c.heatmap_clients() == 0) c.set_heatmap_clients(100);
  if (c.has_tuning()) {
    v1::TuningConfig* t = c.mutable_tuning();
    if (t->validation_fraction() == 0) t->set_validation_fraction(0.1);
    if (t->seed_size() == 0) t->add_seed(c.seed(0));
    if (t->rounds() == 0) t->set_rounds(c.rounds());
  }
}

// The scenario's recipe with a method's non-zero fields laid over it.
v1::Recipe Overlay(const v1::Recipe& base, const v1::Recipe& over) {
  v1::Recipe recipe = base;
  if (over.local_steps() != 0) recipe.set_local_steps(over.local_steps());
  if (over.batch_size() != 0) recipe.set_batch_size(over.batch_size());
  if (over.learning_rate() != 0) recipe.set_learning_rate(over.learning_rate());
  if (!over.optimizer().empty()) recipe.set_optimizer(over.optimizer());
  if (over.momentum() != 0) recipe.set_momentum(over.momentum());
  if (over.weight_decay() != 0) recipe.set_weight_decay(over.weight_decay());
  if (over.clip_grad_norm() != 0) recipe.set_clip_grad_norm(over.clip_grad_norm());
  return recipe;
}

absl::Status ValidateContinual(Scenario& s, absl::string_view source) {
  const v1::ContinualConfig& k = s.config.continual();
  if (s.model.backbone != nn::BackboneKind::kVit || s.checkpoint_path.empty())
    return Invalid(source, "continual: needs model { backbone: \"vit\" checkpoint: ... }");
  if (absl::Status tasks = ValidateTasks(k, 10); !tasks.ok())
    return Invalid(source, tasks.message());
  absl::flat_hash_set<std::string> methods;
  for (const std::string& m : k.method()) {
    if (m == "recipe")
      return Invalid(source, "continual.method: recipe is the federated simulator's device method");
    const cl::LearnerOptions options = LearnerOptionsFor(k, m, 1);
    absl::StatusOr<std::unique_ptr<cl::Method>> method =
        cl::CreateMethod({.name = m, .options = options.method_options});
    if (!method.ok())
      return Invalid(source, absl::StrCat("continual.method: ", method.status().message()));
    if (!methods.insert(m).second)
      return Invalid(source, absl::StrCat("continual.method '", m, "' appears twice"));
  }
  {
    const cl::LearnerOptions options = LearnerOptionsFor(k, k.joint_method(), 1);
    absl::StatusOr<std::unique_ptr<cl::Method>> method =
        cl::CreateMethod({.name = k.joint_method(), .options = options.method_options});
    if (!method.ok())
      return Invalid(source, absl::StrCat("continual.joint_method: ", method.status().message()));
    if (k.joint_steps() < 1) return Invalid(source, "continual.joint_steps must be >= 1");
  }
  for (const std::string& d : k.detector()) {
    absl::StatusOr<const ood::DetectorInfo*> info = ood::FindDetector(d);
    if (!info.ok())
      return Invalid(source, absl::StrCat("continual.detector: ", info.status().message()));
  }
  if (k.rounds_per_task() < 1 || k.steps_per_round() < 1 || k.batch_size() < 1 ||
      k.samples_per_task() < 1 || k.eval_samples() < 2 || k.eval_devices() < 1)
    return Invalid(source,
                   "continual: rounds_per_task, steps_per_round, batch_size, "
                   "samples_per_task and eval_devices must be >= 1, eval_samples >= 2");
  if (k.max_delay_rounds() < 0 || k.max_delay_rounds() >= k.rounds_per_task())
    return Invalid(source, "continual.max_delay_rounds must be in [0, rounds_per_task)");
  const int tasks = k.kind() == "domains" ? k.shift_size() + 1 : k.task_size();
  if (s.config.rounds() != int64_t{tasks} * k.rounds_per_task())
    return Invalid(source, absl::StrCat("rounds must be tasks × rounds_per_task = ",
                                        int64_t{tasks} * k.rounds_per_task(),
                                        " in a continual scenario (or left out)"));
  cl::LearnerOptions options = LearnerOptionsFor(k, "sema", 1);
  if (absl::Status valid = options.Validate(); !valid.ok())
    return Invalid(source, absl::StrCat("continual.learner: ", valid.message()));
  return absl::OkStatus();
}

absl::Status ValidateModel(Scenario& s, absl::string_view source) {
  const v1::SimScenario& c = s.config;
  absl::StatusOr<nn::BackboneKind> backbone = nn::ParseBackboneKind(c.model().backbone());
  if (!backbone.ok())
    return Invalid(source, absl::StrCat("model.backbone: ", backbone.status().message()));
  s.model.backbone = *backbone;
  s.model.mlp.hidden.assign(c.model().mlp_hidden().begin(), c.model().mlp_hidden().end());
  if (absl::Status valid = s.model.Validate(); !valid.ok())
    return Invalid(source, absl::StrCat("model: ", valid.message()));
  s.checkpoint_path = Resolve(source, c.model().checkpoint());
  absl::flat_hash_set<std::string> names;
  for (const v1::ModuleConfig& m : c.module()) {
    absl::StatusOr<fl::ModuleSpec> spec = proto::ModuleSpecFromProto(m);
    if (!spec.ok()) return Invalid(source, spec.status().message());
    if (!names.insert(spec->name).second)
      return Invalid(source, absl::StrCat("module name '", spec->name, "' appears twice"));
    s.modules.push_back(*spec);
  }
  return absl::OkStatus();
}

absl::Status ValidateData(Scenario& s, absl::string_view source) {
  const v1::SimDataConfig& d = s.config.data();
  if (d.partition() == "dirichlet") {
    s.partition = PartitionKind::kDirichlet;
  } else if (d.partition() == "iid") {
    s.partition = PartitionKind::kIid;
  } else if (d.partition() == "on_demand") {
    s.partition = PartitionKind::kOnDemand;
  } else {
    return Invalid(source, absl::StrCat("data.partition '", d.partition(),
                                        "' (expected dirichlet, iid or on_demand)"));
  }
  if (!(d.alpha() > 0) || !std::isfinite(d.alpha()))
    return Invalid(source, "data.alpha must be > 0");
  if (d.samples_per_client() < 1) return Invalid(source, "data.samples_per_client must be >= 1");
  if (d.max_train_samples() < 0 || d.max_test_samples() < 0)
    return Invalid(source, "data.max_train_samples and data.max_test_samples must be >= 0");
  const int npy_files = !d.train_images().empty() + !d.train_labels().empty() +
                        !d.test_images().empty() + !d.test_labels().empty();
  if (npy_files != 0 && npy_files != 4) {
    return Invalid(source,
                   "data.train_images, train_labels, test_images and test_labels go together");
  }
  if (d.num_classes() < 0 || d.num_classes() > 65536)
    return Invalid(source, "data.num_classes must be in [1, 65536] (0 = 10)");
  return absl::OkStatus();
}

// The list of p_n (probabilities: "list"), one per client, each in (0, 1].
absl::Status ValidateProbabilityList(const v1::ParticipationConfig& p, int n,
                                     absl::string_view source) {
  if (p.probabilities() != "list") {
    if (p.probability_size() == 0) return absl::OkStatus();
    return Invalid(source, "participation.probability is only for probabilities: \"list\"");
  }
  if (p.probability_size() != n) {
    return Invalid(source, absl::StrCat("participation.probability has ", p.probability_size(),
                                        " entries for ", n, " clients"));
  }
  for (int i = 0; i < n; ++i) {
    if (!(p.probability(i) > 0 && p.probability(i) <= 1))
      return Invalid(source, absl::StrCat("participation.probability[", i, "] must be in (0, 1]"));
  }
  return absl::OkStatus();
}

absl::Status ValidateParticipation(Scenario& s, absl::string_view source) {
  const int n = s.config.population().num_clients();
  if (n < 1 || n > kMaxClients)
    return Invalid(source,
                   absl::StrCat("population.num_clients must be in [1, ", kMaxClients, "]"));
  const v1::ParticipationConfig& p = s.config.participation();
  if (p.probabilities() != "label_correlated" && p.probabilities() != "uniform" &&
      p.probabilities() != "list") {
    return Invalid(source, absl::StrCat("participation.probabilities '", p.probabilities(),
                                        "' (expected label_correlated, uniform or list)"));
  }
  if (!(p.alpha() > 0) || !std::isfinite(p.alpha()))
    return Invalid(source, "participation.alpha must be > 0");
  if (!(p.p_mean() > 0 && p.p_mean() <= 1))
    return Invalid(source, "participation.p_mean must be in (0, 1]");
  if (!(p.p_min() > 0 && p.p_min() <= 1))
    return Invalid(source, "participation.p_min must be in (0, 1]");
  FEDCL_RETURN_IF_ERROR(ValidateProbabilityList(p, n, source));
  for (const std::string& text : p.pattern()) {
    absl::StatusOr<PatternSpec> pattern = ParsePattern(text);
    if (!pattern.ok()) return Invalid(source, pattern.status().message());
    if (pattern->kind == PatternKind::kTrace && p.trace_file().empty())
      return Invalid(source, "pattern 'trace' needs participation.trace_file");
    s.patterns.push_back(*pattern);
  }
  s.trace_path = Resolve(source, p.trace_file());
  return absl::OkStatus();
}

absl::Status ValidateDevices(Scenario& s, absl::string_view source) {
  const v1::DeviceConfig& dev = s.config.devices();
  if (dev.default_ms_per_sample() < 0 || dev.default_bandwidth_kbps() < 0 ||
      dev.round_deadline_s() < 0) {
    return Invalid(source, "devices: times, bandwidths and the deadline must be >= 0");
  }
  if (!(dev.dropout_probability() >= 0 && dev.dropout_probability() < 1))
    return Invalid(source, "devices.dropout_probability must be in [0, 1)");
  if (!(dev.slowdown_max() == 0 || (dev.slowdown_max() >= 1 && dev.slowdown_max() <= 1e6)))
    return Invalid(source, "devices.slowdown_max must be 0 (none) or in [1, 10^6]");
  if (!(dev.async_tick_s() >= 0 && dev.async_tick_s() <= 1e9))
    return Invalid(source, "devices.async_tick_s must be in [0, 10^9] (0 = the median round time)");
  s.profile_path = Resolve(source, dev.profile_file());
  return absl::OkStatus();
}

// A method's asynchronous round policy; InvalidArgument naming the field for a synchronous or
// unknown policy, bad options, or a buffer that could never fill: each device has at most one
// update in a buffer, so buffer_size must not exceed the population.
absl::StatusOr<fl::RoundPolicyConfig> AsynchronousPolicy(const v1::SimMethod& m, int num_clients,
                                                         absl::string_view where) {
  fl::RoundPolicyConfig round;
  round.name = m.round_policy();
  round.options = m.round_options();
  absl::StatusOr<std::unique_ptr<fl::RoundPolicy>> policy = fl::CreateRoundPolicy(round);
  if (!policy.ok())
    return absl::InvalidArgumentError(absl::StrCat(where, policy.status().message()));
  if ((*policy)->buffer_size() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "round_policy '", round.name,
                     "' is synchronous; the simulator runs synchronous methods without one"));
  }
  if ((*policy)->buffer_size() > num_clients) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "round_options buffer_size ", (*policy)->buffer_size(), " exceeds the ", num_clients,
        " clients: a device has at most one update in a buffer, so it could never fill"));
  }
  return round;
}

absl::Status ValidateMethods(Scenario& s, absl::string_view source) {
  absl::flat_hash_set<std::string> labels;
  for (const v1::SimMethod& m : s.config.method()) {
    MethodSpec method;
    method.label = m.label();
    if (method.label.empty()) return Invalid(source, "every method needs a label");
    if (!labels.insert(method.label).second)
      return Invalid(source, absl::StrCat("method label '", method.label, "' appears twice"));
    const std::string where = absl::StrCat("method '", method.label, "': ");
    absl::StatusOr<fl::RuleConfig> rule = proto::RuleConfigFromProto(m.aggregator());
    if (!rule.ok()) return Invalid(source, absl::StrCat(where, rule.status().message()));
    method.aggregator = *std::move(rule);
    absl::StatusOr<fl::Recipe> recipe = proto::FromProto(Overlay(s.config.recipe(), m.recipe()));
    if (!recipe.ok()) return Invalid(source, absl::StrCat(where, recipe.status().message()));
    if (absl::Status valid = recipe->Validate(); !valid.ok())
      return Invalid(source, absl::StrCat(where, valid.message()));
    method.recipe = *recipe;
    method.note = m.note();
    if (!m.upload_compression().empty()) {
      absl::StatusOr<fl::CompressionSpec> upload = fl::ParseCompressionSpec(m.upload_compression());
      if (!upload.ok()) return Invalid(source, absl::StrCat(where, upload.status().message()));
      method.upload = *upload;
    }
    if (!m.round_policy().empty()) {
      absl::StatusOr<fl::RoundPolicyConfig> round = AsynchronousPolicy(m, s.num_clients(), where);
      if (!round.ok()) return Invalid(source, round.status().message());
      method.round = *std::move(round);
    } else if (!m.round_options().empty()) {
      return Invalid(source, absl::StrCat(where, "round_options without a round_policy"));
    }
    s.methods.push_back(std::move(method));
  }
  return absl::OkStatus();
}

// A learning-rate grid: finite, positive, no value twice.
absl::Status ValidateGrid(const google::protobuf::RepeatedField<double>& grid,
                          absl::string_view field, absl::string_view source) {
  absl::flat_hash_set<double> values;
  for (double v : grid) {
    if (!(std::isfinite(v) && v > 0 && v <= 1e6)) {
      return Invalid(source, absl::StrCat(field, " values must be in (0, 10^6], got ", v));
    }
    if (!values.insert(v).second)
      return Invalid(source, absl::StrCat(field, " lists ", v, " twice"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTuning(const v1::SimScenario& c, absl::string_view source) {
  for (const v1::SimMethod& m : c.method()) {
    if (m.tune_global_learning_rate_size() > 0 && !c.has_tuning()) {
      return Invalid(source, absl::StrCat("method '", m.label(),
                                          "': tune_global_learning_rate without a tuning block"));
    }
    FEDCL_RETURN_IF_ERROR(
        ValidateGrid(m.tune_global_learning_rate(),
                     absl::StrCat("method '", m.label(), "': tune_global_learning_rate"), source));
  }
  if (!c.has_tuning()) return absl::OkStatus();
  const v1::TuningConfig& t = c.tuning();
  if (c.has_continual()) return Invalid(source, "tuning applies to federated scenarios only");
  FEDCL_RETURN_IF_ERROR(ValidateGrid(t.learning_rate(), "tuning.learning_rate", source));
  FEDCL_RETURN_IF_ERROR(
      ValidateGrid(t.global_learning_rate(), "tuning.global_learning_rate", source));
  if (!(t.validation_fraction() > 0 && t.validation_fraction() <= 0.5)) {
    return Invalid(source, absl::StrCat("tuning.validation_fraction must be in (0, 0.5], got ",
                                        t.validation_fraction()));
  }
  if (t.rounds() < 1 || t.rounds() > 100'000'000) {
    return Invalid(source, "tuning.rounds must be in [1, 10^8]");
  }
  absl::flat_hash_set<uint64_t> seeds;
  for (uint64_t seed : t.seed()) {
    if (!seeds.insert(seed).second) {
      return Invalid(source, absl::StrCat("tuning.seed ", seed, " appears twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSchedule(const v1::SimScenario& c, absl::string_view source) {
  if (c.rounds() < 1 || c.rounds() > 100'000'000)
    return Invalid(source, "rounds must be in [1, 10^8]");
  if (c.eval_every() < 1) return Invalid(source, "eval_every must be >= 1");
  if (c.threads() < 0) return Invalid(source, "threads must be >= 0");
  if (c.heatmap_clients() < 1) return Invalid(source, "heatmap_clients must be >= 1");
  absl::flat_hash_set<uint64_t> seeds;
  for (uint64_t seed : c.seed()) {
    if (!seeds.insert(seed).second)
      return Invalid(source, absl::StrCat("seed ", seed, " appears twice"));
  }
  return ValidateTuning(c, source);
}

// Every section in the order a reader meets them, each naming the field it rejects.
absl::Status Validate(Scenario& s, absl::string_view source) {
  if (s.config.name().empty()) return Invalid(source, "name is required");
  FEDCL_RETURN_IF_ERROR(ValidateModel(s, source));
  FEDCL_RETURN_IF_ERROR(ValidateData(s, source));
  FEDCL_RETURN_IF_ERROR(ValidateParticipation(s, source));
  FEDCL_RETURN_IF_ERROR(ValidateDevices(s, source));
  FEDCL_RETURN_IF_ERROR(ValidateMethods(s, source));
  if (s.config.has_continual()) FEDCL_RETURN_IF_ERROR(ValidateContinual(s, source));
  return ValidateSchedule(s.config, source);
}

}  // namespace

double DeviceSlowdown(const Scenario& scenario, uint64_t seed, uint32_t client) {
  const double max = scenario.config.devices().slowdown_max();
  if (max <= 1.0) return 1.0;
  constexpr uint64_t kSlowdownStream = 0x534c4f57444f574e;
  const double u = base::Rng::ForStream(seed, {kSlowdownStream, client}).Uniform();
  return std::exp(u * std::log(max));
}

absl::StatusOr<Scenario> ParseScenario(absl::string_view text, absl::string_view source) {
  Scenario scenario;
  if (absl::Status parsed = proto::ParseTextFormat(text, &scenario.config); !parsed.ok()) {
    return Invalid(source, parsed.message());
  }
  ApplyDefaults(scenario.config);
  FEDCL_RETURN_IF_ERROR(Validate(scenario, source));
  return scenario;
}

absl::StatusOr<Scenario> LoadScenario(const base::FileSystem& fs, absl::string_view path) {
  FEDCL_ASSIGN_OR_RETURN(std::string text, fs.ReadFile(path, 64 << 20));
  return ParseScenario(text, path);
}

const MethodSpec* FindMethod(const Scenario& scenario, absl::string_view label) {
  for (const MethodSpec& method : scenario.methods) {
    if (method.label == label) return &method;
  }
  return nullptr;
}

const PatternSpec* FindPattern(const Scenario& scenario, absl::string_view name) {
  for (const PatternSpec& pattern : scenario.patterns) {
    if (pattern.name == name) return &pattern;
  }
  return nullptr;
}

cl::LearnerOptions LearnerOptionsFor(const v1::ContinualConfig& config, const std::string& method,
                                     uint64_t seed) {
  const v1::ClLearnerConfig& l = config.learner();
  cl::LearnerOptions o;
  o.method = method;
  o.learning_rate = l.learning_rate();
  o.seed = seed;
  auto number = [](double v) { return absl::StrFormat("%.17g", v); };
  std::vector<std::pair<std::string, std::string>> knobs;
  if (method == "sema" || method == "sema_replay") {
    knobs = {{"expansion_tau", number(l.expansion_tau())},
             {"new_module_steps", absl::StrCat(l.new_module_steps())},
             {"adapter_bottleneck", absl::StrCat(l.adapter_bottleneck())},
             {"descriptor_bottleneck", absl::StrCat(l.descriptor_bottleneck())},
             {"max_adapters_per_block", absl::StrCat(l.max_adapters_per_block())},
             {"confirm_batches", absl::StrCat(l.confirm_batches())},
             {"trigger", absl::StrCat("\"", l.sema_trigger(), "\"")},
             {"trigger_score", absl::StrCat("\"", l.sema_trigger_score(), "\"")},
             {"calibration_samples", absl::StrCat(l.sema_calibration_samples())},
             {"false_alarms_per_10k", number(l.sema_false_alarms_per_10k())}};
  } else if (method == "lae") {
    // A task is R rounds of about p·R·steps steps; LAE's α spreads the fraction over that.
    const int64_t steps_per_task =
        std::max<int64_t>(1, int64_t{config.rounds_per_task()} * config.steps_per_round() / 2);
    knobs = {{"adapter_bottleneck", absl::StrCat(l.adapter_bottleneck())},
             {"fraction_per_task", number(l.lae_fraction_per_task())},
             {"steps_per_task", absl::StrCat(steps_per_task)},
             {"warmup_steps", absl::StrCat(steps_per_task / 10)}};
  } else if (method == "sequential_adapter") {
    knobs = {{"adapter_bottleneck", absl::StrCat(l.adapter_bottleneck())}};
  } else if (method == "fedins") {
    knobs = {{"pool_size", absl::StrCat(l.fedins_pool_size())},
             {"top_k", absl::StrCat(l.fedins_top_k())}};
  }
  for (const auto& [key, value] : knobs) absl::StrAppend(&o.method_options, key, ": ", value, " ");
  return o;
}

absl::StatusOr<fl::ModulePoolOptions> ContinualPoolOptions(const v1::ContinualConfig& config,
                                                           const cl::LearnerOptions& learner,
                                                           int statistics_dim) {
  FEDCL_ASSIGN_OR_RETURN(cl::SemaOptions sema,
                         cl::SemaOptions::Parse(learner.method_options, false));
  v1::PoolConfig pool;
  pool.mutable_expandable_blocks()->Assign(sema.expandable_blocks.begin(),
                                           sema.expandable_blocks.end());
  pool.set_capacity(config.pool().capacity());
  pool.set_round_window(config.pool().round_window());
  pool.set_divergence_threshold(config.pool().divergence_threshold());
  pool.set_expert_bottleneck(sema.adapter_bottleneck);
  return proto::PoolOptionsFromProto(pool, statistics_dim);
}

}  // namespace fedcl::sim
