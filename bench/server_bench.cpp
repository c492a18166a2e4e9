// The gRPC server under measurement, in one process on loopback (server + clients):
//
//   server_bench overhead [--slices 300] [--repeats 2]
//     A 512 x 512 x N int16 CT through Segment vs Predict in-process, same variant (the bundled
//     model's original): end-to-end overhead of streaming, validation and queueing.
//
//   server_bench cluster [--target S] [--requests 3]
//     Three tucker-seg-server processes on loopback with the ramp's model store, one gRPC client
//     channel with round_robin over all three; the load ramps up and down, and one replica is
//     killed (SIGKILL) halfway through a phase. Per phase: requests per replica (from each
//     replica's /metrics), variant mix, p95, retried requests, errors.
//
//   server_bench overload [--seconds 300] [--clients 32] [--load 10] [--target S]
//     One tucker-seg-server process (bundled model, 2 threads, --max-queue 4, --max-streams 16)
//     offered --load times its measured capacity by --clients clients for --seconds. Each client
//     retries RESOURCE_EXHAUSTED after the server's grpc-retry-pushback-ms (up to 20 attempts).
//     Per 30 s window: served, refused attempts, p95 of admitted requests (server-side total),
//     the server's RSS, open streams and queue depth (from its /metrics); then lost requests.
//
//   server_bench open [--target S] [--seconds 40] [--loads 0.5,1,2,4] [--policies auto,original,df0.1]
//     The ramp's model and target, offered open-loop load: Poisson arrivals at each multiple of
//     the original's capacity (1 / one idle request) for --seconds, each request on its own
//     client. Per load and policy: served, refused, share within the target, p95, variant mix and
//     the mean quality served (the variants' agreement Dice).
//
//   server_bench mixed [--target S] [--seconds 30]
//     The ramp's model and target: one client sends a 27-tile CT (256 x 256 x 128 at 1.5 x 1.5 x 3
//     mm) again and again while two clients send the ramp's one-tile CT in a closed loop. Per
//     policy: the one-tile requests' p50/p95 and share within the target, the big CT's times.
//
//   ramp, open and mixed take --model ts-shaped (default: the store below, for speed) or --model
//   bundled (the repository's model store and its variants' measured agreement Dice, on the
//   example CT: the quality served under load).
//
//   server_bench ramp [--target S] [--requests 3] [--levels 1,2,4,8,4,1] [--policies auto,original]
//     A model where Tucker variants are faster on this CPU (TotalSegmentator-shaped 3 mm network,
//     random weights, 64^3 patch, HOSVD variants DF 0.5/0.3/0.1 whose quality is their measured
//     agreement Dice with the original) behind one worker; closed-loop clients ramp up and down.
//     Per level: variant mix, p50/p95 latency, share within the latency target; the same ramp is
//     then run with every request pinned to each variant of --policies; then the server-side
//     stage means per variant.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/utils.h>

#include "client/segmentation_client.h"
#include "image_io/image_io.h"
#include "model_store/compression/compress.h"
#include "model_store/inference/predictor.h"
#include "model_store/training/training_data.h"
#include "server/server.h"
#include "support/http_get.h"
#include "support/subprocess.h"
#include "synthetic_ct.h"
#include "wire/volume_wire.h"

using namespace tucker_seg;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

namespace {

double Since(SteadyClock::time_point t) { return std::chrono::duration<double>(SteadyClock::now() - t).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(std::min<double>(v.size() - 1, std::ceil(p * v.size()) - 1))];
}

std::unique_ptr<server::SegmentationServer> StartServer(const std::string& store, double latency_target) {
  server::ServerOptions o;
  o.model_store = store;
  o.listen = "127.0.0.1:0";
  o.metrics_listen = "127.0.0.1:0";
  o.threads = 2;
  o.max_queue = 32;
  o.latency_target_seconds = latency_target;
  auto s = server::SegmentationServer::Start(o);
  if (!s.ok() || !s.value()->WaitUntilCalibrated().ok()) {
    std::fprintf(stderr, "server: %s\n", s.ok() ? "calibration failed" : s.status().message().c_str());
    std::exit(1);
  }
  return std::move(s.value());
}

std::unique_ptr<client::SegmentationClient> ConnectTo(int port) {
  client::ConnectionOptions o;
  o.target = "127.0.0.1:" + std::to_string(port);
  return std::move(client::SegmentationClient::Connect(o).value());
}

int Overhead(int64_t slices, int repeats) {
  const std::string store = std::string(TUCKER_SEG_SOURCE_DIR) + "/models";
  auto server = StartServer(store, 0);
  const auto catalog = server->state().devices[0]->catalog.Get();
  const auto& model = catalog->models[0];
  const auto* original = model.Find("original");
  // The in-process run sees exactly what the server decodes: int16 voxels.
  const auto wire_ct = bench::SyntheticCt(slices);
  wire::VolumeHeader header;
  header.geometry = wire_ct.geometry;
  header.voxel_type = tuckerseg::v1::VOXEL_TYPE_INT16;
  header.voxels = wire_ct.geometry.NumVoxels();
  header.bytes = header.voxels * 2;
  const CtVolume ct = wire::DecodeCt(header, wire::EncodeCt(wire_ct, tuckerseg::v1::VOXEL_TYPE_INT16)).value();
  auto client = ConnectTo(server->port());
  client::SegmentOptions so;
  so.variant = "original";

  std::vector<double> local, remote;
  tuckerseg::v1::Timings last;
  for (int r = 0; r < repeats; ++r) {
    auto start = SteadyClock::now();
    UNetPatchNetwork net(*original->executor);
    auto p = Predict(original->info, net, ct, {});
    local.push_back(Since(start));
    start = SteadyClock::now();
    auto g = client->Segment(ct, so);
    remote.push_back(Since(start));
    if (!p.ok() || !g.ok() || g.value().labels.voxels != p.value().labels.voxels) {
      std::fprintf(stderr, "mismatch or failure\n");
      return 1;
    }
    last = g.value().timings;
  }
  const double l = Percentile(local, 0.5), g = Percentile(remote, 0.5);
  std::printf("512 x 512 x %ld int16 CT (%.0f MiB on the wire), model %s, variant original, 2 threads, median of %d\n\n",
              static_cast<long>(slices), header.bytes / 1048576.0, model.name.c_str(), repeats);
  std::printf("%-28s %10s\n", "path", "seconds");
  std::printf("%-28s %10.2f\n", "in-process Predict", l);
  std::printf("%-28s %10.2f\n", "gRPC Segment (end to end)", g);
  std::printf("%-28s %9.1f%%\n", "overhead", 100.0 * (g - l) / l);
  std::printf("\nserver-side stages of the last gRPC run: receive %.2f s, queue %.3f s, preprocess %.2f s, network %.2f s, "
              "aggregation %.2f s, export %.2f s, total %.2f s (labels back to the client: the rest)\n",
              last.receive_seconds(), last.queue_wait_seconds(), last.preprocess_seconds(), last.network_seconds(),
              last.aggregation_seconds(), last.export_seconds(), last.total_seconds());
  return 0;
}

// The ramp's model store: TotalSegmentator-shaped network with random weights and its variants.
std::string BuildRampStore(const CtVolume& probe_ct) {
  const fs::path root = fs::temp_directory_path() / "tucker-seg-ramp-store";
  const fs::path dir = root / "totalseg-shaped-random";
  if (fs::exists(dir / "variants/df0.1/manifest.json")) return root.string();
  fs::remove_all(root);
  Model original;
  original.info = LoadModelInfo(std::string(TUCKER_SEG_SOURCE_DIR) + "/models/tucker-abdomen-3mm").value();
  original.info.name = "totalseg-shaped-random";
  original.info.network = ReadArchitectureFile(std::string(TUCKER_SEG_SOURCE_DIR) + "/model_store/architectures/totalseg_3mm_shaped.json").value().network;
  original.info.patch_size = {64, 64, 64};
  original.info.labels.clear();
  for (int64_t i = 0; i < original.info.network.num_classes; ++i) original.info.labels.emplace_back(i, "class_" + std::to_string(i));
  original.weights = PlainConvUNet::RandomWeights(original.info.network, 3);
  if (Status s = SaveModel(original, dir.string()); !s.ok()) std::exit((std::fprintf(stderr, "%s\n", s.message().c_str()), 1));
  const auto reference = PlainConvUNet::Create(original.info.network, original.weights).value();
  const auto ref_labels = Predict(original.info, UNetPatchNetwork(*MakeExecutor(reference)), probe_ct, {}).value().labels;
  LabelValues ref_values;
  ref_values.geometry = ref_labels.geometry;
  ref_values.voxels.assign(ref_labels.voxels.begin(), ref_labels.voxels.end());
  std::vector<int64_t> ids;
  for (const auto& [id, name] : original.info.labels)
    if (id != 0) ids.push_back(id);
  for (double df : {0.5, 0.3, 0.1}) {
    CompressionOptions o;
    o.df = df;
    o.tucker.max_iterations = 0;
    auto v = CompressModel(original, o).value();
    const auto net = PlainConvUNet::Create(v.model.info.network, v.model.weights).value();
    const auto labels = Predict(v.model.info, UNetPatchNetwork(*MakeExecutor(net)), probe_ct, {}).value().labels;
    double agreement = 0;
    const auto dice = DicePerLabel(labels, ref_values, ids);
    for (const auto& [id, d] : dice) agreement += d;
    agreement /= std::max<size_t>(1, dice.size());
    EvaluationCase probe;
    probe.image = "synthetic probe CT";
    probe.agreement_dice = agreement;
    v.manifest.evaluations[kServingEvaluation].cases = {probe};
    auto name = o.VariantName();
    v.manifest.variant = name;
    if (!SaveVariant(v, dir.string()).ok()) std::exit(1);
    std::printf("built %s: agreement Dice with the original %.3f\n", name.c_str(), agreement);
  }
  return root.string();
}

struct Outcome {
  double seconds;
  std::string variant;
  bool ok;
  tuckerseg::v1::Timings timings;  // the server's, per stage
};

// Per variant: mean seconds of each stage the server reports, over every request of a policy.
void PrintStages(const std::vector<Outcome>& outcomes) {
  struct Sums {
    int n = 0;
    double receive = 0, queue = 0, preprocess = 0, network = 0, aggregation = 0, exported = 0, total = 0;
  };
  std::map<std::string, Sums> by_variant;
  for (const auto& o : outcomes) {
    if (!o.ok) continue;
    Sums& s = by_variant[o.variant];
    const auto& t = o.timings;
    ++s.n;
    s.receive += t.receive_seconds(), s.queue += t.queue_wait_seconds(), s.preprocess += t.preprocess_seconds();
    s.network += t.network_seconds(), s.aggregation += t.aggregation_seconds(), s.exported += t.export_seconds(), s.total += t.total_seconds();
  }
  std::printf("%-9s %5s %8s %8s %10s %8s %11s %8s %8s  (server-side means, s)\n", "variant", "n", "receive", "queue", "preprocess",
              "network", "aggregation", "export", "total");
  for (const auto& [v, s] : by_variant) {
    std::printf("%-9s %5d %8.3f %8.3f %10.3f %8.3f %11.3f %8.3f %8.3f\n", v.c_str(), s.n, s.receive / s.n, s.queue / s.n,
                s.preprocess / s.n, s.network / s.n, s.aggregation / s.n, s.exported / s.n, s.total / s.n);
  }
}

// The ramp's store, CT and latency target (3x one idle request with the original unless given).
struct LoadSetup {
  CtVolume ct;
  std::string store;
  double target = 0;
  double idle_original_seconds = 0;
  std::map<std::string, double> quality;  // variant -> agreement Dice with the original
};

// `model`: "ts-shaped" (the ramp's store: speed) or "bundled" (the repository's model and its
// variants with their measured agreement Dice, on the example CT: quality).
LoadSetup PrepareLoad(double target, const std::string& model) {
  LoadSetup setup;
  if (model == "bundled") {
    setup.ct = ReadCt(std::string(TUCKER_SEG_SOURCE_DIR) + "/tests/data/totalsegmentator/example_ct.nii.gz").value();
    setup.store = std::string(TUCKER_SEG_SOURCE_DIR) + "/models";
  } else {
    // A 192 mm cube at 1.5 x 1.5 x 3 mm: one 64^3 tile at 3 mm, little resampling around it.
    setup.ct = bench::SyntheticCt(64, 128, {1.5, 1.5, 3.0});
    setup.store = BuildRampStore(setup.ct);
  }
  auto probe_server = StartServer(setup.store, 0);
  const auto probe_catalog = probe_server->state().devices[0]->catalog.Get();
  for (const auto& v : probe_catalog->models[0].variants) {
    std::printf("calibrated %-8s %.3f s/tile + %.3f s per request, quality %.3f, %s\n", v.name.c_str(), v.seconds_per_tile, v.fixed_seconds,
                v.quality.value_or(0), v.selectable ? "selectable" : v.not_selectable_reason.c_str());
    setup.quality[v.name] = v.quality.value_or(0);
  }
  auto client = ConnectTo(probe_server->port());
  client::SegmentOptions so;
  so.variant = "original";
  (void)client->Segment(setup.ct, so);
  const auto start = SteadyClock::now();
  (void)client->Segment(setup.ct, so);
  setup.idle_original_seconds = Since(start);
  setup.target = target > 0 ? target : 3 * setup.idle_original_seconds;
  return setup;
}

// Variant mix, p50/p95, share within the target over `outcomes`, as one table row's cells.
std::string Summary(const std::vector<Outcome>& outcomes, double target, const std::map<std::string, double>& quality) {
  std::map<std::string, int> mix;
  std::vector<double> seconds;
  int errors = 0, within = 0;
  double quality_sum = 0;
  for (const auto& o : outcomes) {
    if (!o.ok) {
      ++errors;
      continue;
    }
    ++mix[o.variant];
    seconds.push_back(o.seconds);
    within += o.seconds <= target;
    const auto q = quality.find(o.variant);
    quality_sum += q == quality.end() ? 0 : q->second;
  }
  std::ostringstream m;
  for (const auto& [v, n] : mix) m << v << ":" << n << " ";
  char row[256];
  std::snprintf(row, sizeof row, "%-34s %8.2f %8.2f %9.0f%% %8.3f %7d", m.str().c_str(), Percentile(seconds, 0.5), Percentile(seconds, 0.95),
                100.0 * within / std::max<size_t>(1, outcomes.size()), quality_sum / std::max<size_t>(1, seconds.size()), errors);
  return row;
}

std::vector<std::string> Split(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

int Ramp(double target_option, const std::string& model, int requests, const std::vector<int>& levels, const std::vector<std::string>& policies) {
  const LoadSetup setup = PrepareLoad(target_option, model);
  const CtVolume& ct = setup.ct;
  const std::string& store = setup.store;
  const double target = setup.target;
  std::printf("\nlatency target %.2f s (one idle request with the original: %.2f s), 1 worker, 2 threads, %d requests per client per level\n",
              target, setup.idle_original_seconds, requests);

  for (const std::string& policy : policies) {
    auto server = StartServer(store, target);
    std::printf("\nvariant: %s\n%-8s %-34s %8s %8s %10s %8s %7s %8s\n", policy.c_str(), "clients", "variant mix", "p50 s", "p95 s",
                "in target", "quality", "errors", "req/s");
    std::vector<Outcome> all;
    for (int clients : levels) {
      std::mutex mutex;
      std::vector<Outcome> outcomes;
      std::vector<std::thread> threads;
      const auto level_start = SteadyClock::now();
      for (int c = 0; c < clients; ++c) {
        threads.emplace_back([&] {
          auto client = ConnectTo(server->port());
          client::SegmentOptions so;
          so.variant = policy;
          for (int r = 0; r < requests; ++r) {
            const auto start = SteadyClock::now();
            auto result = client->Segment(ct, so);
            std::lock_guard<std::mutex> lock(mutex);
            outcomes.push_back({Since(start), result.ok() ? result.value().variant : "", result.ok(),
                                result.ok() ? result.value().timings : tuckerseg::v1::Timings()});
          }
        });
      }
      for (auto& t : threads) t.join();
      const double level_seconds = Since(level_start);
      std::printf("%-8d %s %8.2f\n", clients, Summary(outcomes, target, setup.quality).c_str(), outcomes.size() / level_seconds);
      all.insert(all.end(), outcomes.begin(), outcomes.end());
    }
    PrintStages(all);
  }
  return 0;
}

int OpenLoop(double target_option, const std::string& model, double seconds, const std::vector<double>& loads, const std::vector<std::string>& policies) {
  const LoadSetup setup = PrepareLoad(target_option, model);
  const double capacity = 1 / setup.idle_original_seconds;
  std::printf("\nlatency target %.2f s; the original's capacity %.2f req/s (one idle request: %.2f s); %.0f s of Poisson arrivals per row\n",
              setup.target, capacity, setup.idle_original_seconds, seconds);
  std::printf("%-6s %-9s %8s %-34s %8s %8s %10s %8s %7s\n", "load", "variant", "offered", "variant mix", "p50 s", "p95 s", "in target",
              "quality", "errors");
  std::mt19937 random(7);
  for (double load : loads) {
    // One stream of arrivals per load, the same for every policy: their rows differ by the policy,
    // not by the luck of the draw.
    std::vector<double> arrivals;
    std::exponential_distribution<double> gap(load * capacity);
    for (double at = gap(random); at < seconds; at += gap(random)) arrivals.push_back(at);
    for (const std::string& policy : policies) {
      auto server = StartServer(setup.store, setup.target);
      std::mutex mutex;
      std::vector<Outcome> outcomes;
      std::vector<std::thread> requests;
      const auto start = SteadyClock::now();
      for (double at : arrivals) {
        std::this_thread::sleep_until(start + std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(at)));
        requests.emplace_back([&] {
          auto client = ConnectTo(server->port());
          client::SegmentOptions so;
          so.variant = policy;
          const auto sent = SteadyClock::now();
          auto result = client->Segment(setup.ct, so);
          std::lock_guard<std::mutex> lock(mutex);
          outcomes.push_back({Since(sent), result.ok() ? result.value().variant : "", result.ok(),
                              result.ok() ? result.value().timings : tuckerseg::v1::Timings()});
        });
      }
      for (auto& r : requests) r.join();
      std::printf("%-6.2g %-9s %8.2f %s\n", load, policy.c_str(), load * capacity, Summary(outcomes, setup.target, setup.quality).c_str());
    }
  }
  return 0;
}

int Mixed(double target_option, const std::string& model, double seconds, const std::vector<std::string>& policies) {
  const LoadSetup setup = PrepareLoad(target_option, model);
  const CtVolume big = bench::SyntheticCt(128, 256, {1.5, 1.5, 3.0});
  std::printf("\nlatency target %.2f s; one client sends a %lldx%lldx%lld CT, two send one-tile CTs, %.0f s per policy\n", setup.target,
              static_cast<long long>(big.geometry.size[0]), static_cast<long long>(big.geometry.size[1]),
              static_cast<long long>(big.geometry.size[2]), seconds);
  std::printf("%-9s %-10s %-34s %8s %8s %10s %8s %7s\n", "variant", "requests", "variant mix", "p50 s", "p95 s", "in target", "quality",
              "errors");
  for (const std::string& policy : policies) {
    auto server = StartServer(setup.store, setup.target);
    std::mutex mutex;
    std::vector<Outcome> small, large;
    std::atomic<bool> stop{false};
    const auto loop = [&](const CtVolume& ct, std::vector<Outcome>* out) {
      auto client = ConnectTo(server->port());
      client::SegmentOptions so;
      so.variant = policy;
      while (!stop) {
        const auto sent = SteadyClock::now();
        auto result = client->Segment(ct, so);
        std::lock_guard<std::mutex> lock(mutex);
        out->push_back({Since(sent), result.ok() ? result.value().variant : "", result.ok(),
                        result.ok() ? result.value().timings : tuckerseg::v1::Timings()});
      }
    };
    std::vector<std::thread> clients;
    clients.emplace_back(loop, std::cref(big), &large);
    for (int c = 0; c < 2; ++c) clients.emplace_back(loop, std::cref(setup.ct), &small);
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop = true;
    for (auto& t : clients) t.join();
    std::printf("%-9s %-10s %s\n", policy.c_str(), "one-tile", Summary(small, setup.target, setup.quality).c_str());
    std::printf("%-9s %-10s %s\n", policy.c_str(), "27-tile", Summary(large, setup.target, setup.quality).c_str());
  }
  return 0;
}

// Sum of tuckerseg_requests_total over all label sets on one replica's /metrics (0 when it is gone).
double RequestsServed(int metrics_port) {
  const auto text = tucker_seg::testing::HttpGet(metrics_port, "/metrics");
  double total = 0;
  if (!text) return total;
  std::istringstream lines(*text);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("tuckerseg_requests_total{", 0) == 0) total += std::stod(line.substr(line.rfind(' ') + 1));
  return total;
}

int Cluster(double target, int requests) {
  const auto ct = bench::SyntheticCt(64, 128, {1.5, 1.5, 3.0});
  const std::string store = BuildRampStore(ct);
  const fs::path logs = fs::temp_directory_path() / "tucker-seg-cluster";
  fs::create_directories(logs);
  constexpr int kReplicas = 3;
  std::vector<int> ports, metrics_ports;
  std::vector<std::unique_ptr<tucker_seg::testing::Subprocess>> replicas;
  std::string target_list;
  for (int r = 0; r < kReplicas; ++r) {
    ports.push_back(tucker_seg::testing::FreeLoopbackPort());
    metrics_ports.push_back(tucker_seg::testing::FreeLoopbackPort());
    target_list += (r ? "," : "") + std::string("127.0.0.1:") + std::to_string(ports.back());
  }
  for (int r = 0; r < kReplicas; ++r) {
    replicas.push_back(std::make_unique<tucker_seg::testing::Subprocess>(
        std::vector<std::string>{std::string(TUCKER_SEG_BINARY_DIR) + "/tucker-seg-server", "--model-store", store, "--listen",
                                 "127.0.0.1:" + std::to_string(ports[r]), "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_ports[r]),
                                 "--threads", "1", "--max-queue", "32", "--calibration-repeats", "1", "--latency-target",
                                 std::to_string(target > 0 ? target : 4.0)},
        (logs / ("replica-" + std::to_string(r) + ".log")).string()));
  }
  for (int r = 0; r < kReplicas; ++r) {
    auto one = ConnectTo(ports[r]);
    const auto serving = one->WaitUntilServing("", 300);
    if (!serving.ok() || !serving.value()) return std::fprintf(stderr, "replica %d never became SERVING\n", r), 1;
  }
  client::ConnectionOptions co;
  co.target = "ipv4:" + target_list;
  co.load_balancing = "round_robin";
  co.max_attempts = 4;
  co.initial_backoff_seconds = 0.2;
  auto client = std::move(client::SegmentationClient::Connect(co).value());
  if (target <= 0) target = 4.0;
  std::printf("3 replicas on loopback (1 thread each, latency target %.1f s), client: round_robin over %s, up to 4 attempts\n",
              target, co.target.c_str());
  std::printf("\n%-24s %-8s %-16s %-34s %8s %8s %7s\n", "phase", "clients", "requests r0/r1/r2", "variant mix", "p95 s", "retried",
              "errors");

  struct Phase {
    const char* name;
    int clients;
    bool kill_replica;
  };
  const Phase phases[] = {{"idle", 1, false},       {"ramp up", 3, false}, {"busy", 6, false}, {"peak", 9, false},
                          {"peak, kill replica 2", 9, true}, {"ramp down", 3, false}, {"idle", 1, false}};
  bool killed = false;
  for (const auto& phase : phases) {
    std::vector<double> before;
    for (int r = 0; r < kReplicas; ++r) before.push_back(RequestsServed(metrics_ports[r]));
    std::mutex mutex;
    std::vector<Outcome> outcomes;
    int retried = 0;
    std::atomic<int> done{0};
    const int total = phase.clients * requests;
    std::vector<std::thread> threads;
    for (int c = 0; c < phase.clients; ++c) {
      threads.emplace_back([&] {
        for (int r = 0; r < requests; ++r) {
          const auto start = SteadyClock::now();
          auto result = client->Segment(ct, {});
          std::lock_guard<std::mutex> lock(mutex);
          outcomes.push_back({Since(start), result.ok() ? result.value().variant : result.status().message(), result.ok(), {}});
          retried += result.ok() && result.value().attempts > 1;
          ++done;
        }
      });
    }
    if (phase.kill_replica) {
      while (done.load() < total / 2) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      replicas[2]->Signal(SIGKILL);
      killed = true;
    }
    for (auto& t : threads) t.join();
    std::string per_replica;
    for (int r = 0; r < kReplicas; ++r) {
      const bool gone = killed && r == 2;
      per_replica += (r ? "/" : "") + (gone && phase.kill_replica ? std::string("killed") : gone ? std::string("-")
                                                                   : std::to_string(static_cast<int>(RequestsServed(metrics_ports[r]) - before[r])));
    }
    std::map<std::string, int> mix;
    std::vector<double> seconds;
    int errors = 0;
    for (const auto& o : outcomes) {
      if (!o.ok) {
        ++errors;
        std::fprintf(stderr, "error: %s\n", o.variant.c_str());
        continue;
      }
      ++mix[o.variant];
      seconds.push_back(o.seconds);
    }
    std::ostringstream m;
    for (const auto& [v, n] : mix) m << v << ":" << n << " ";
    std::printf("%-24s %-8d %-16s %-34s %8.2f %8d %7d\n", phase.name, phase.clients, per_replica.c_str(), m.str().c_str(),
                Percentile(seconds, 0.95), retried, errors);
  }
  return 0;
}

// A gauge or counter of /metrics (the first sample of that name), -1 when absent.
double MetricValue(int metrics_port, const std::string& name) {
  const auto text = tucker_seg::testing::HttpGet(metrics_port, "/metrics");
  if (!text) return -1;
  std::istringstream lines(*text);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(name + " ", 0) == 0 || line.rfind(name + "{", 0) == 0) return std::stod(line.substr(line.rfind(' ') + 1));
  return -1;
}

int Overload(double seconds, int clients, double load, double target) {
  const auto ct = bench::SyntheticCt(48, 128, {1.5, 1.5, 3.0});
  const int port = tucker_seg::testing::FreeLoopbackPort();
  const int metrics_port = tucker_seg::testing::FreeLoopbackPort();
  const fs::path log = fs::temp_directory_path() / "tucker-seg-overload.log";
  if (target <= 0) target = 10;
  tucker_seg::testing::Subprocess server(
      {std::string(TUCKER_SEG_BINARY_DIR) + "/tucker-seg-server", "--model-store", std::string(TUCKER_SEG_SOURCE_DIR) + "/models", "--listen",
       "127.0.0.1:" + std::to_string(port), "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port), "--threads", "2",
       "--max-queue", "4", "--max-streams", "16", "--calibration-repeats", "1", "--latency-target", std::to_string(target)},
      log.string());
  client::ConnectionOptions co;
  co.target = "127.0.0.1:" + std::to_string(port);
  co.max_attempts = 20;
  auto client = std::move(client::SegmentationClient::Connect(co).value());
  const auto serving = client->WaitUntilServing("", 300);
  if (!serving.ok() || !serving.value()) return std::fprintf(stderr, "the server never became SERVING (%s)\n", log.c_str()), 1;
  // Capacity: one request at a time, median of 5.
  std::vector<double> alone;
  for (int i = 0; i < 5; ++i) {
    const auto start = SteadyClock::now();
    if (!client->Segment(ct, {}).ok()) return std::fprintf(stderr, "a lone request failed\n"), 1;
    alone.push_back(Since(start));
  }
  const double capacity = 1 / Percentile(alone, 0.5);
  const double interval = clients / (load * capacity);  // seconds between one client's requests
  std::printf("capacity %.2f requests/s (one at a time, median of 5); offered %.1fx = %.1f requests/s from %d clients for %.0f s; "
              "latency target %.0f s\n\n", capacity, load, load * capacity, clients, seconds, target);
  std::printf("%-9s %7s %8s %9s %9s %8s %8s %7s\n", "window", "served", "refused", "p95 s", "max s", "RSS MiB", "streams", "queue");

  struct Sample {
    double at, seconds;
    int attempts;
    bool ok;
    bool busy;  // still RESOURCE_EXHAUSTED after every attempt: refused, told why, not lost
  };
  std::mutex mutex;
  std::vector<Sample> samples;
  std::atomic<bool> stop{false};
  const auto start = SteadyClock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto next = start + std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(interval * c / clients));
      while (!stop.load()) {
        std::this_thread::sleep_until(next);  // the client's own schedule (open loop while it keeps up)
        next += std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(interval));
        if (stop.load()) break;
        auto result = client->Segment(ct, {});
        std::lock_guard<std::mutex> lock(mutex);
        const bool busy = !result.ok() && result.status().code() == StatusCode::kResourceExhausted;
        samples.push_back({Since(start), result.ok() ? result.value().timings.total_seconds() : 0, result.ok() ? result.value().attempts : co.max_attempts,
                           result.ok(), busy});
        if (!result.ok() && !busy) std::fprintf(stderr, "lost: %s\n", result.status().message().c_str());
      }
    });
  }
  constexpr double kWindow = 30;
  double max_rss = 0;
  for (double w = 0; w < seconds; w += kWindow) {
    double rss = 0, streams = 0, queue = 0;
    while (Since(start) < std::min(seconds, w + kWindow)) {  // sample the server every 2 s
      std::this_thread::sleep_for(std::chrono::seconds(2));
      rss = std::max(rss, MetricValue(metrics_port, "process_resident_memory_bytes"));
      streams = std::max(streams, MetricValue(metrics_port, "tuckerseg_open_streams"));
      queue = std::max(queue, MetricValue(metrics_port, "tuckerseg_queue_depth"));
    }
    max_rss = std::max(max_rss, rss);
    std::vector<double> latencies;
    int refused = 0, served = 0;
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (const auto& s : samples) {
        if (s.at < w || s.at >= w + kWindow || !s.ok) continue;
        ++served;
        refused += s.attempts - 1;
        latencies.push_back(s.seconds);
      }
    }
    std::printf("%3.0f-%3.0f s %7d %8d %9.2f %9.2f %8.0f %8.0f %7.0f\n", w, w + kWindow, served, refused, Percentile(latencies, 0.95),
                latencies.empty() ? 0.0 : *std::max_element(latencies.begin(), latencies.end()), rss / 1048576, streams, queue);
    std::fflush(stdout);
  }
  stop = true;
  for (auto& t : threads) t.join();
  int lost = 0, busy = 0, retried = 0, total = 0;
  std::vector<double> all;
  for (const auto& s : samples) {
    ++total;
    busy += s.busy;
    lost += !s.ok && !s.busy;
    retried += s.ok && s.attempts > 1;
    if (s.ok) all.push_back(s.seconds);
  }
  std::printf("\n%d requests: %d served (%d of them after RESOURCE_EXHAUSTED + pushback), %d still refused after %d attempts "
              "(RESOURCE_EXHAUSTED), %d lost (any other failure); p95 of admitted %.2f s (target %.0f s); peak RSS %.0f MiB\n",
              total, total - lost - busy, retried, busy, co.max_attempts, lost, Percentile(all, 0.95), target, max_rss / 1048576);
  return lost == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: server_bench overhead|ramp|open|mixed|cluster|overload [options]\n");
    return 2;
  }
  const std::string mode = argv[1];
  int64_t slices = 300;
  int repeats = 2, requests = 3, clients = 32;
  double target = 0, seconds = 300, load = 10;
  std::vector<int> levels{1, 2, 4, 8, 4, 1};
  std::vector<double> loads{0.5, 1, 2, 4};
  std::vector<std::string> policies;
  bool seconds_given = false;
  std::string model = "ts-shaped";
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--slices") slices = std::stoll(v);
    else if (k == "--repeats") repeats = std::stoi(v);
    else if (k == "--requests") requests = std::stoi(v);
    else if (k == "--target") target = std::stod(v);
    else if (k == "--seconds") seconds = std::stod(v), seconds_given = true;
    else if (k == "--policies") policies = Split(v);
    else if (k == "--loads") {
      loads.clear();
      for (const auto& l : Split(v)) loads.push_back(std::stod(l));
    }
    else if (k == "--clients") clients = std::stoi(v);
    else if (k == "--model") model = v;
    else if (k == "--load") load = std::stod(v);
    else if (k == "--levels") {
      levels.clear();
      std::stringstream ss(v);
      for (std::string n; std::getline(ss, n, ',');) levels.push_back(std::stoi(n));
    }
  }
  if (mode == "cluster") return Cluster(target, requests);
  if (mode == "mixed") return Mixed(target, model, seconds_given ? seconds : 30, policies.empty() ? Split("auto,original,df0.1") : policies);
  if (mode == "open") return OpenLoop(target, model, seconds_given ? seconds : 40, loads, policies.empty() ? Split("auto,original,df0.1") : policies);
  if (mode == "overload") return Overload(seconds, clients, load, target);
  return mode == "overhead" ? Overhead(slices, repeats) : mode == "ramp" ? Ramp(target, model, requests, levels, policies.empty() ? Split("auto,original") : policies) : 2;
}
