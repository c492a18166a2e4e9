// The PACS round trip against a real Orthanc (Debian `orthanc` + `orthanc-dicomweb`) on loopback:
// the example series is uploaded, `tucker-seg pacs` fetches it over DICOMweb, segments it
// through a running server and stores a DICOM SEG, which Orthanc then lists in the study.
// Orthanc requires HTTP basic authentication; the logs of the server and the client never show
// the patient's name or ID, or any of the series' UIDs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
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
                                 {"AuthenticationEnabled", true},
                                 {"RegisteredUsers", {{"tucker", "pacs-secret"}}},
                                 {"Plugins", {kDicomWebPlugin}},
                                 {"DicomWeb", {{"Enable", true}, {"Root", "/dicom-web/"}}}};
  std::ofstream(dir / "orthanc.json") << config.dump(2);
  tucker_seg::testing::Subprocess orthanc({kOrthanc, (dir / "orthanc.json").string()}, (dir / "orthanc.log").string());
  ASSERT_TRUE(orthanc.started());
  // Orthanc answers /system once it is up (bounded wait).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  const std::string auth = "Authorization: Basic dHVja2VyOnBhY3Mtc2VjcmV0\r\n";  // tucker:pacs-secret
  const auto get = [&](const std::string& path) { return tucker_seg::testing::HttpRequest(http_port, "GET", path, "", "", auth); };
  while (!get("/system") && orthanc.running() && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // poll interval
  ASSERT_TRUE(get("/system").has_value()) << "Orthanc did not start; see " << (dir / "orthanc.log");
  EXPECT_FALSE(tucker_seg::testing::HttpGet(http_port, "/system").has_value());  // no credentials, no answer

  const auto series = ScanDicomSeries(tucker_seg::testing::ExampleDicomSeries().string());
  ASSERT_TRUE(series.ok());
  for (const auto& slice : series.value().slices) {
    std::ifstream in(slice.path, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    ASSERT_TRUE(tucker_seg::testing::HttpRequest(http_port, "POST", "/instances", bytes.str(), "application/dicom", auth).has_value());
  }
  const std::string study = series.value().study_instance_uid;
  // What must never reach a log line: the patient's name and ID, and every UID of the series.
  DcmFileFormat first;
  ASSERT_TRUE(first.loadFile(series.value().slices[0].path.c_str()).good());
  OFString patient_name, patient_id;
  first.getDataset()->findAndGetOFString(DCM_PatientName, patient_name);
  first.getDataset()->findAndGetOFString(DCM_PatientID, patient_id);
  ASSERT_FALSE(patient_name.empty());
  ASSERT_FALSE(patient_id.empty());
  std::vector<std::string> identifiers = {patient_name.c_str(), patient_id.c_str(), study, series.value().series_instance_uid,
                                          series.value().frame_of_reference_uid};
  for (const auto& slice : series.value().slices) identifiers.push_back(slice.sop_instance_uid);

  ::testing::internal::CaptureStderr();  // the in-process server's log
  auto server = server::SegmentationServer::Start(tucker_seg::testing::LoopbackServerOptions());
  ASSERT_TRUE(server.ok()) << server.status().message();
  ASSERT_TRUE(server.value()->WaitUntilCalibrated().ok());

  const std::string pacs = tucker_seg::testing::ProgramPath("tucker-seg") + " pacs --orthanc http://127.0.0.1:" + std::to_string(http_port) +
                           " --study " + study + " --server 127.0.0.1:" + std::to_string(server.value()->port());
  const auto refused = tucker_seg::testing::RunCommand(pacs);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("DICOMweb: http://127.0.0.1:" + std::to_string(http_port) + " answered HTTP 401"), std::string::npos) << refused.output;
  const auto run = tucker_seg::testing::RunCommand("TUCKER_SEG_DICOMWEB_USER=tucker:pacs-secret " + pacs);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("stored the DICOM SEG"), std::string::npos) << run.output;
  server.value()->Shutdown();
  const std::string server_log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(server_log.find(" request id="), std::string::npos);  // the log was captured
  for (const auto& id : identifiers) {
    for (const std::string* log : {&server_log, &refused.output, &run.output}) {
      EXPECT_EQ(log->find(id), std::string::npos) << "'" << id << "' is in a log:\n" << *log;
    }
  }
  // The private spool folder is gone.
  for (const auto& entry : fs::directory_iterator(fs::temp_directory_path())) {
    EXPECT_EQ(entry.path().filename().string().rfind("tucker-seg-pacs-", 0), std::string::npos) << entry.path();
  }

  const auto seg_series = get("/dicom-web/studies/" + study + "/series?Modality=SEG");
  ASSERT_TRUE(seg_series.has_value());
  const auto j = nlohmann::json::parse(*seg_series);
  ASSERT_EQ(j.size(), 1u) << *seg_series;
  EXPECT_EQ(j[0]["00080060"]["Value"][0], "SEG");
  // The CT series is still there next to it.
  const auto all = nlohmann::json::parse(get("/dicom-web/studies/" + study + "/series").value());
  EXPECT_EQ(all.size(), 2u);
}

}  // namespace
}  // namespace tucker_seg
