// The client library and image IO against a real server on loopback: label maps come back on
// the input's own grid (NIfTI and DICOM series), and the DICOM SEG reads back with DCMTK.
#include <gtest/gtest.h>

#include <dcmtk/dcmfg/fgplanpo.h>
#include <dcmtk/dcmiod/modcommoninstanceref.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmseg/segment.h>

#include <cmath>
#include <set>

#include "client/dicom_seg.h"
#include "image_io/image_io.h"
#include "client/segmentation_client.h"
#include "server/server.h"
#include "support/loopback_server.h"
#include "test_paths.h"

namespace tucker_seg::client {
namespace {

std::string ExampleDicom() { return tucker_seg::testing::ExampleDicomSeries().string(); }
std::string ExampleNifti() { return tucker_seg::testing::TotalSegmentatorExample("example_ct_sm.nii.gz").string(); }

void ExpectSameGeometry(const Geometry& a, const Geometry& b) {
  EXPECT_EQ(a.size, b.size);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(a.spacing[i], b.spacing[i], 1e-6);
    EXPECT_NEAR(a.origin[i], b.origin[i], 1e-4);
  }
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(a.direction[i], b.direction[i], 1e-6);
}

class ClientLibrary : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = server::SegmentationServer::Start(tucker_seg::testing::LoopbackServerOptions());
    ASSERT_TRUE(s.ok()) << s.status().message();
    server_ = s.value().release();
    ASSERT_TRUE(server_->WaitUntilCalibrated().ok());
  }
  static void TearDownTestSuite() { delete server_; }
  static std::unique_ptr<SegmentationClient> Client() {
    ConnectionOptions c;
    c.target = "127.0.0.1:" + std::to_string(server_->port());
    return std::move(SegmentationClient::Connect(c).value());
  }
  static server::SegmentationServer* server_;
};
server::SegmentationServer* ClientLibrary::server_ = nullptr;

TEST_F(ClientLibrary, NiftiRoundTripKeepsTheInputGeometry) {
  auto ct = ReadCt(ExampleNifti());
  ASSERT_TRUE(ct.ok());
  std::vector<SegmentProgress::Stage> stages;
  std::vector<int> queue_positions;
  std::vector<std::pair<int64_t, int64_t>> tiles;  // (done, total) while running
  SegmentOptions options;
  options.chunk_bytes = 64 << 10;
  options.on_progress = [&](const SegmentProgress& p) {
    if (stages.empty() || stages.back() != p.stage) stages.push_back(p.stage);
    if (p.stage == SegmentProgress::Stage::kQueued) queue_positions.push_back(p.queue_position);
    if (p.stage == SegmentProgress::Stage::kRunning && p.tiles_total > 0) tiles.emplace_back(p.tiles_done, p.tiles_total);
  };
  auto result = Client()->Segment(ct.value(), options);
  ASSERT_TRUE(result.ok()) << result.status().message();
  ExpectSameGeometry(result.value().labels.geometry, ct.value().geometry);
  EXPECT_EQ(result.value().attempts, 1);
  EXPECT_EQ(stages.front(), SegmentProgress::Stage::kSending);
  EXPECT_EQ(stages.back(), SegmentProgress::Stage::kDone);
  EXPECT_NE(std::find(stages.begin(), stages.end(), SegmentProgress::Stage::kRunning), stages.end());
  // Progress: a queue position, then tile counts that only grow and end at the total.
  ASSERT_EQ(queue_positions.size(), 1u);
  EXPECT_GE(queue_positions[0], 1);
  ASSERT_GE(tiles.size(), 2u);
  for (size_t i = 1; i < tiles.size(); ++i) {
    EXPECT_GT(tiles[i].first, tiles[i - 1].first);
    EXPECT_EQ(tiles[i].second, tiles[0].second);
  }
  EXPECT_EQ(tiles.back().first, tiles.back().second);
  EXPECT_EQ(tiles.back().second, result.value().timings.tiles());
  EXPECT_TRUE(result.value().variant_quality.has_value());

  const auto path = tucker_seg::testing::TempDir("client-nifti") / "labels.nii.gz";
  ASSERT_TRUE(WriteLabelMap(path.string(), result.value().labels).ok());
  auto back = ReadCt(path.string());
  ASSERT_TRUE(back.ok());
  ExpectSameGeometry(back.value().geometry, ct.value().geometry);
  for (size_t i = 0; i < back.value().voxels.size(); i += 97) ASSERT_EQ(back.value().voxels[i], result.value().labels.voxels[i]);

  // A failed call names the request id the server's log line has (from the trailers).
  SegmentOptions unknown;
  unknown.model = "no-such-model";
  unknown.request_id = "client-library-failure";
  const auto failed = Client()->Segment(ct.value(), unknown);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kNotFound);
  EXPECT_NE(failed.status().message().find("(request id client-library-failure)"), std::string::npos) << failed.status().message();
}

TEST_F(ClientLibrary, DicomSeriesRoundTripAndDicomSegReadBack) {
  auto input = ReadCtInput(ExampleDicom());
  ASSERT_TRUE(input.ok()) << input.status().message();
  ASSERT_TRUE(input.value().dicom.has_value());
  const DicomSeriesInfo& series = *input.value().dicom;
  ASSERT_EQ(series.slices.size(), 20u);
  auto result = Client()->Segment(input.value().ct, {});
  ASSERT_TRUE(result.ok()) << result.status().message();
  ExpectSameGeometry(result.value().labels.geometry, input.value().ct.geometry);

  const auto path = (tucker_seg::testing::TempDir("client-seg") / "seg.dcm").string();
  EXPECT_EQ(result.value().step, 0.5);  // the server's default, reported in the result header
  const Provenance provenance{result.value().model, result.value().variant, result.value().variant_quality, TUCKER_SEG_VERSION,
                              result.value().step};
  ASSERT_TRUE(WriteDicomSeg(path, result.value().labels, series, result.value().label_table, provenance).ok());

  std::set<int64_t> present(result.value().labels.voxels.begin(), result.value().labels.voxels.end());
  present.erase(0);
  DcmSegmentation* raw = nullptr;
  ASSERT_TRUE(DcmSegmentation::loadFile(path.c_str(), raw).good());
  std::unique_ptr<DcmSegmentation> seg(raw);
  ASSERT_EQ(seg->getNumberOfSegments(), present.size());
  std::set<std::string> names;
  for (size_t s = 1; s <= seg->getNumberOfSegments(); ++s) {
    OFString label;
    seg->getSegment(s)->getSegmentLabel(label);
    names.insert(label.c_str());
  }
  for (const auto& [id, name] : result.value().label_table)
    if (present.count(id)) {
      EXPECT_TRUE(names.count(name)) << name;
    }

  // Every frame sits at the position of a source slice.
  std::set<std::string> positions;
  for (const auto& s : series.slices) positions.insert(std::to_string(std::lround(s.position[2] * 100)));
  ASSERT_GT(seg->getNumberOfFrames(), 0u);
  for (Uint32 f = 0; f < seg->getNumberOfFrames(); ++f) {
    auto* pp = dynamic_cast<FGPlanePosPatient*>(seg->getFunctionalGroups().get(f, DcmFGTypes::EFG_PLANEPOSPATIENT));
    ASSERT_NE(pp, nullptr);
    Float64 x, y, z;
    ASSERT_TRUE(pp->getImagePositionPatient(x, y, z).good());
    EXPECT_TRUE(positions.count(std::to_string(std::lround(z * 100)))) << "frame " << f << " at z " << z;
  }
  auto& referenced = seg->getCommonInstanceReference().getReferencedSeriesItems();
  ASSERT_EQ(referenced.size(), 1u);
  OFString uid;
  referenced[0]->getSeriesInstanceUID(uid);
  EXPECT_EQ(std::string(uid.c_str()), series.series_instance_uid);
}

TEST_F(ClientLibrary, HealthIsServingAfterCalibration) {
  auto serving = Client()->WaitUntilServing("tuckerseg.v1.Segmentation", 30);
  ASSERT_TRUE(serving.ok()) << serving.status().message();
  EXPECT_TRUE(serving.value());
  auto unknown = Client()->WaitUntilServing("no.such.Service", 1);
  EXPECT_FALSE(unknown.ok() && unknown.value());  // SERVICE_UNKNOWN never turns SERVING
}

TEST_F(ClientLibrary, ServerDownIsUnavailableAfterRetries) {
  ConnectionOptions c;
  c.target = "127.0.0.1:1";  // nothing listens on port 1
  c.max_attempts = 2;
  c.initial_backoff_seconds = 0.05;
  auto client = SegmentationClient::Connect(c);
  ASSERT_TRUE(client.ok());
  CtVolume ct;
  ct.geometry.size = {4, 4, 4};
  ct.voxels.assign(64, 0.0f);
  SegmentOptions o;
  o.timeout_seconds = 20;
  auto result = client.value()->Segment(ct, o);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(result.status().message().find("127.0.0.1:1"), std::string::npos) << result.status().message();
}

}  // namespace
}  // namespace tucker_seg::client
