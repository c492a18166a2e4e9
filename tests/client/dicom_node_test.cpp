// `tucker-seg dicom-node` with DCMTK's own tools (Debian `dcmtk`) on loopback: `storescu` sends
// the example JPEG 2000 series to the node, the node segments it through a running server and
// sends the DICOM SEG to a `storescp` destination, which accepts only uncompressed syntaxes (so
// the deflated SEG goes as explicit VR little endian). A series sent while the server is down is
// delivered after it comes back, also when the node was restarted meanwhile. The node's log never shows the patient's name or ID or a UID.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcitem.h>

#include "client/dicom_node.h"
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
using tucker_seg::testing::RunCommand;

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

size_t FilesIn(const fs::path& dir) {
  size_t n = 0;
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator(dir, ignored)) n += entry.is_regular_file();
  return n;
}

// Polls `done` until it holds or `seconds` pass (processes in other address spaces: nothing to
// wait on instead); true if it held.
template <typename Condition>
bool PollUntil(Condition done, double seconds) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // poll interval
  }
  return true;
}

bool Echoes(const std::string& aet, int port) {
  return RunCommand("echoscu -aec " + aet + " 127.0.0.1 " + std::to_string(port)).exit_code == 0;
}

int AnotherFreePort(std::initializer_list<int> taken) {
  for (;;) {
    const int port = tucker_seg::testing::FreeLoopbackPort();
    if (std::find(taken.begin(), taken.end(), port) == taken.end()) return port;
  }
}

std::string SendSeries(int port, const std::string& files) {
  // -xv: propose JPEG 2000 lossless (the series' own syntax) beside the uncompressed ones.
  return "storescu -xv -aec TUCKERSEG 127.0.0.1 " + std::to_string(port) + " " + files;
}

TEST(DicomNode, SegmentsASeriesSentByCStoreAndSendsItsSegAlsoAfterTheServerAndTheNodeWereDown) {
  const fs::path dir = tucker_seg::testing::TempDir("dicom_node");
  fs::create_directories(dir / "destination");
  const auto series = ScanDicomSeries(tucker_seg::testing::ExampleDicomSeries().string());
  ASSERT_TRUE(series.ok()) << series.status().message();

  ::testing::internal::CaptureStderr();  // the in-process server's log
  server::ServerOptions server_options = tucker_seg::testing::LoopbackServerOptions();
  auto server = server::SegmentationServer::Start(server_options);
  ASSERT_TRUE(server.ok()) << server.status().message();
  ASSERT_TRUE(server.value()->WaitUntilCalibrated().ok());
  const int grpc_port = server.value()->port();

  const int destination_port = AnotherFreePort({grpc_port});
  const int node_port = AnotherFreePort({grpc_port, destination_port});
  // Default storescp: uncompressed transfer syntaxes only, no deflate.
  tucker_seg::testing::Subprocess destination({"/usr/bin/storescp", "--aetitle", "PACS", "--output-directory", (dir / "destination").string(),
                                               std::to_string(destination_port)},
                                              (dir / "storescp.log").string());
  // The node writes its log to node-<n>.log; started again on the same spool after a stop.
  int node_runs = 0;
  const auto start_node = [&] {
    return std::make_unique<tucker_seg::testing::Subprocess>(
        std::vector<std::string>{tucker_seg::testing::ProgramPath("tucker-seg"), "dicom-node", "--port", std::to_string(node_port),
                                 "--destination", "PACS@127.0.0.1:" + std::to_string(destination_port), "--spool", (dir / "spool").string(),
                                 "--series-timeout", "1", "--retry", "1", "--min-free-disk-mb", "1", "--server",
                                 "127.0.0.1:" + std::to_string(grpc_port)},
        (dir / ("node-" + std::to_string(++node_runs) + ".log")).string());
  };
  const auto node_log = [&] { return ReadText(dir / ("node-" + std::to_string(node_runs) + ".log")); };
  auto node = start_node();
  ASSERT_TRUE(PollUntil([&] { return Echoes("PACS", destination_port); }, 60)) << ReadText(dir / "storescp.log");
  ASSERT_TRUE(PollUntil([&] { return Echoes("TUCKERSEG", node_port); }, 60)) << node_log();

  const std::string files = (tucker_seg::testing::ExampleDicomSeries() / "*.dcm").string();
  const auto sent = RunCommand(SendSeries(node_port, files));
  ASSERT_EQ(sent.exit_code, 0) << sent.output;
  // The node logs the destination's acceptance after storescp has written the file.
  const auto delivered = [&] {  // by this run of the node
    const std::string log = node_log();
    size_t n = 0;
    for (size_t at = log.find("SEG accepted by PACS"); at != std::string::npos; at = log.find("SEG accepted by PACS", at + 1)) ++n;
    return n;
  };
  ASSERT_TRUE(PollUntil([&] { return delivered() == 1; }, 120)) << node_log();
  ASSERT_EQ(FilesIn(dir / "destination"), 1u);

  // The SEG: coded segments, referencing the series that was sent, in explicit VR little endian.
  fs::path seg_path = fs::directory_iterator(dir / "destination")->path();
  DcmFileFormat seg;
  ASSERT_TRUE(seg.loadFile(seg_path.c_str()).good());
  DcmDataset* d = seg.getDataset();
  OFString modality, referenced_series, code, syntax;
  d->findAndGetOFString(DCM_Modality, modality);
  EXPECT_EQ(modality, "SEG");
  seg.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, syntax);
  EXPECT_EQ(syntax, UID_LittleEndianExplicitTransferSyntax);
  DcmItem* reference = nullptr;
  ASSERT_TRUE(d->findAndGetSequenceItem(DCM_ReferencedSeriesSequence, reference, 0).good());
  reference->findAndGetOFString(DCM_SeriesInstanceUID, referenced_series);
  EXPECT_EQ(referenced_series.c_str(), series.value().series_instance_uid);
  DcmItem* segment = nullptr;
  ASSERT_TRUE(d->findAndGetSequenceItem(DCM_SegmentSequence, segment, 0).good());
  DcmItem* type = nullptr;
  ASSERT_TRUE(segment->findAndGetSequenceItem(DCM_SegmentedPropertyTypeCodeSequence, type, 0).good());
  type->findAndGetOFString(DCM_CodeValue, code);
  EXPECT_FALSE(code.empty());

  // The server goes away; a series sent now waits in the spool and is retried until it is back.
  server.value()->Shutdown();
  server.value().reset();
  const auto while_down = RunCommand(SendSeries(node_port, files));
  ASSERT_EQ(while_down.exit_code, 0) << while_down.output;
  ASSERT_TRUE(PollUntil([&] { return node_log().find("segmentation failed (attempt 1)") != std::string::npos; }, 60))
      << node_log();
  EXPECT_EQ(FilesIn(dir / "destination"), 1u);
  // The node stops with the series undelivered; started again, it picks it up from the spool.
  node.reset();
  std::string logs = node_log();
  node = start_node();
  ASSERT_TRUE(PollUntil([&] { return node_log().find("1 series in the spool from before") != std::string::npos; }, 60)) << node_log();
  server_options.listen = "127.0.0.1:" + std::to_string(grpc_port);
  auto restarted = server::SegmentationServer::Start(server_options);
  ASSERT_TRUE(restarted.ok()) << restarted.status().message();
  ASSERT_TRUE(PollUntil([&] { return delivered() == 1; }, 120)) << node_log();
  EXPECT_EQ(FilesIn(dir / "destination"), 2u);

  // Another modality is accepted and ignored: the SEG sent back to the node.
  const auto other = RunCommand("storescu -R -aec TUCKERSEG 127.0.0.1 " + std::to_string(node_port) + " " + seg_path.string());
  EXPECT_EQ(other.exit_code, 0) << other.output;
  ASSERT_TRUE(PollUntil([&] { return node_log().find("ignored an instance of modality 'SEG'") != std::string::npos; }, 30));
  restarted.value()->Shutdown();
  const std::string server_log = ::testing::internal::GetCapturedStderr();

  // Delivered series leave nothing in the spool.
  EXPECT_EQ(FilesIn(dir / "spool" / "ready"), 0u);
  EXPECT_TRUE(fs::is_empty(dir / "spool" / "ready"));
  EXPECT_TRUE(fs::is_empty(dir / "spool" / "failed"));
  logs += node_log();
  // What must never reach a log line: the patient's name and ID, and every UID of the series.
  DcmFileFormat first;
  ASSERT_TRUE(first.loadFile(series.value().slices[0].path.c_str()).good());
  OFString patient_name, patient_id;
  first.getDataset()->findAndGetOFString(DCM_PatientName, patient_name);
  first.getDataset()->findAndGetOFString(DCM_PatientID, patient_id);
  std::vector<std::string> identifiers = {patient_name.c_str(), patient_id.c_str(), series.value().study_instance_uid,
                                          series.value().series_instance_uid, series.value().frame_of_reference_uid};
  for (const auto& slice : series.value().slices) identifiers.push_back(slice.sop_instance_uid);
  for (const auto& id : identifiers) {
    ASSERT_FALSE(id.empty());
    EXPECT_EQ(logs.find(id), std::string::npos) << "'" << id << "' is in the node's log:\n" << logs;
    EXPECT_EQ(server_log.find(id), std::string::npos) << "'" << id << "' is in the server's log";
  }
}

TEST(DicomNode, RefusesInstancesWithOutOfResourcesBelowTheFreeDiskLimit) {
  const fs::path dir = tucker_seg::testing::TempDir("dicom_node_full");
  const int node_port = tucker_seg::testing::FreeLoopbackPort();
  // More free space than any disk has: every C-STORE is refused.
  tucker_seg::testing::Subprocess node({tucker_seg::testing::ProgramPath("tucker-seg"), "dicom-node", "--port", std::to_string(node_port),
                                        "--destination", "PACS@127.0.0.1:1", "--spool", (dir / "spool").string(), "--min-free-disk-mb",
                                        "1000000000000"},
                                       (dir / "node.log").string());
  ASSERT_TRUE(PollUntil([&] { return Echoes("TUCKERSEG", node_port); }, 60)) << ReadText(dir / "node.log");
  const auto sent = RunCommand(SendSeries(node_port, (tucker_seg::testing::ExampleDicomSeries() / "*.dcm").string()) + " -v");
  EXPECT_NE(sent.exit_code, 0);
  EXPECT_NE(sent.output.find("Received Store Response (Refused: OutOfResources)"), std::string::npos) << sent.output;
  EXPECT_EQ(FilesIn(dir / "spool" / "incoming"), 0u);
  EXPECT_TRUE(fs::is_empty(dir / "spool" / "incoming"));
  EXPECT_NE(ReadText(dir / "node.log").find("--min-free-disk-mb is 1000000000000"), std::string::npos) << ReadText(dir / "node.log");
}

TEST(DicomNode, DestinationMustBeAetAtHostAndPort) {
  EXPECT_TRUE(client::ParseDicomAddress("PACS@10.0.0.5:104").ok());
  EXPECT_EQ(client::ParseDicomAddress("PACS@10.0.0.5:104").value().port, 104);
  for (const char* bad : {"PACS", "PACS@host", "@host:104", "PACS@:104", "PACS@host:0", "PACS@host:99999", "PACS@host:1x",
                          "AN_AE_TITLE_LONGER_THAN_16@host:104"}) {
    const auto parsed = client::ParseDicomAddress(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find("--destination"), std::string::npos) << parsed.status().message();
  }
}

}  // namespace
}  // namespace tucker_seg
