// The PACS round trip against a real Orthanc (Debian `orthanc` + `orthanc-dicomweb`) on loopback:
// the example series is uploaded, `tucker-seg pacs` fetches it over DICOMweb, segments it
// through a running server and stores a DICOM SEG, which Orthanc then lists in the study.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "image_io/dicom_series.h"
#include "server/server.h"
#include "support/http_get.h"
#include "support/loopback_server.h"
#include "support/run_command.h"
#include "support/subprocess.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

namespace fs = std::filesystem;
constexpr char kOrthanc[] = "/usr/sbin/Orthanc";
constexpr char kDicomWebPlugin[] = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

TEST(Pacs, SegmentsAStudyFromOrthancAndStoresTheDicomSeg) {
  ASSERT_TRUE(fs::exists(kOrthanc) && fs::exists(kDicomWebPlugin)) << "install orthanc and orthanc-dicomweb (scripts/install-deps.sh)";
  const auto dir = tucker_seg::testing::TempDir("orthanc");
  const int http_port = tucker_seg::testing::FreeLoopbackPort();
  int dicom_port = tucker_seg::testing::FreeLoopbackPort();
  while (dicom_port == http_port) dicom_port = tucker_seg::testing::FreeLoopbackPort();
  const nlohmann::json config = {{"Name", "tucker-seg-test"},
                                 {"HttpPort", http_port},
                                 {"DicomPort", dicom_port},
                                 {"StorageDirectory", (dir / "storage").string()},
                                 {"IndexDirectory", (dir / "index").string()},
                                 {"RemoteAccessAllowed", false},
                                 {"AuthenticationEnabled", false},
                                 {"Plugins", {kDicomWebPlugin}},
                                 {"DicomWeb", {{"Enable", true}, {"Root", "/dicom-web/"}}}};
  std::ofstream(dir / "orthanc.json") << config.dump(2);
  tucker_seg::testing::Subprocess orthanc({kOrthanc, (dir / "orthanc.json").string()}, (dir / "orthanc.log").string());
  ASSERT_TRUE(orthanc.started());
  // Orthanc answers /system once it is up (bounded wait).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!tucker_seg::testing::HttpGet(http_port, "/system") && orthanc.running() && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // poll interval
  ASSERT_TRUE(tucker_seg::testing::HttpGet(http_port, "/system").has_value()) << "Orthanc did not start; see " << (dir / "orthanc.log");

  const auto series = ScanDicomSeries(tucker_seg::testing::ExampleDicomSeries().string());
  ASSERT_TRUE(series.ok());
  for (const auto& slice : series.value().slices) {
    std::ifstream in(slice.path, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    ASSERT_TRUE(tucker_seg::testing::HttpRequest(http_port, "POST", "/instances", bytes.str(), "application/dicom").has_value());
  }
  const std::string study = series.value().study_instance_uid;

  auto server = server::SegmentationServer::Start(tucker_seg::testing::LoopbackServerOptions());
  ASSERT_TRUE(server.ok()) << server.status().message();
  ASSERT_TRUE(server.value()->WaitUntilCalibrated().ok());

  const auto run = tucker_seg::testing::RunCommand(tucker_seg::testing::ProgramPath("tucker-seg") + " pacs --orthanc http://127.0.0.1:" +
                                                   std::to_string(http_port) + " --study " + study + " --server 127.0.0.1:" +
                                                   std::to_string(server.value()->port()));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("stored the DICOM SEG"), std::string::npos) << run.output;

  const auto seg_series = tucker_seg::testing::HttpGet(http_port, "/dicom-web/studies/" + study + "/series?Modality=SEG");
  ASSERT_TRUE(seg_series.has_value());
  const auto j = nlohmann::json::parse(*seg_series);
  ASSERT_EQ(j.size(), 1u) << *seg_series;
  EXPECT_EQ(j[0]["00080060"]["Value"][0], "SEG");
  // The CT series is still there next to it.
  const auto all = nlohmann::json::parse(tucker_seg::testing::HttpGet(http_port, "/dicom-web/studies/" + study + "/series").value());
  EXPECT_EQ(all.size(), 2u);
}

}  // namespace
}  // namespace tucker_seg
