#include "client/dicom_seg.h"

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmfg/fgderimg.h>
#include <dcmtk/dcmfg/fgfracon.h>
#include <dcmtk/dcmfg/fgpixmsr.h>
#include <dcmtk/dcmfg/fgplanor.h>
#include <dcmtk/dcmfg/fgplanpo.h>
#include <dcmtk/dcmiod/iodreferences.h>
#include <dcmtk/dcmiod/iodutil.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmseg/segment.h>
#include <dcmtk/oflog/oflog.h>

namespace tucker_seg {
namespace {

std::string Decimal(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6g", v);  // DS values are at most 16 characters
  return buffer;
}

Status Check(const OFCondition& c, const std::string& what) {
  return c.good() ? Status::Ok() : Internal("DICOM SEG: " + what + ": " + c.text());
}

}  // namespace

Status WriteDicomSeg(const std::string& path, const LabelMap& labels, const DicomSeriesInfo& source,
                     const std::vector<std::pair<int64_t, std::string>>& label_table) {
  static std::once_flag quiet;  // DCMTK's own warnings would duplicate the status we return
  std::call_once(quiet, [] { OFLog::configure(OFLogger::ERROR_LOG_LEVEL); });
  if (source.series_instance_uid.empty() || source.study_instance_uid.empty()) {
    return FailedPrecondition("the source series has no Study/Series Instance UID (anonymised?); a DICOM SEG cannot reference it");
  }
  for (const auto& s : source.slices)
    if (s.sop_instance_uid.empty()) return FailedPrecondition("source slice '" + s.path + "' has no SOP Instance UID; a DICOM SEG cannot reference it");
  const int64_t columns = source.columns, rows = source.rows, slices = static_cast<int64_t>(source.slices.size());
  if (labels.geometry.size != std::array<int64_t, 3>{columns, rows, slices}) {
    return InvalidArgument("the label map is not on the source series' grid (" + std::to_string(columns) + " x " + std::to_string(rows) +
                           " x " + std::to_string(slices) + ")");
  }

  // Which classes each slice holds.
  const int64_t plane = rows * columns;
  std::map<int64_t, std::vector<bool>> present;  // id -> per slice
  for (int64_t k = 0; k < slices; ++k)
    for (int64_t i = 0; i < plane; ++i) {
      const uint8_t id = labels.voxels[static_cast<size_t>(k * plane + i)];
      if (id == 0) continue;
      auto& flags = present[id];
      if (flags.empty()) flags.assign(static_cast<size_t>(slices), false);
      flags[static_cast<size_t>(k)] = true;
    }
  if (present.empty()) return FailedPrecondition("the label map is empty: no segment to write");

  DcmSegmentation* raw = nullptr;
  IODGeneralEquipmentModule::EquipmentInfo equipment("tucker-seg", "tucker-seg", "0", "0.1.0");
  ContentIdentificationMacro content("1", "TUCKERSEG", "Automatic segmentation (tucker-seg)", "tucker-seg");
  TS_RETURN_IF_ERROR(Check(DcmSegmentation::createBinarySegmentation(raw, static_cast<Uint16>(rows), static_cast<Uint16>(columns),
                                                                     equipment, content), "create"));
  std::unique_ptr<DcmSegmentation> seg(raw);
  TS_RETURN_IF_ERROR(Check(seg->importFromSourceImage(source.slices.front().path.c_str()), "patient/study from the source"));
  seg->getSeries().setSeriesDescription("tucker-seg segmentation");
  seg->getSeries().setSeriesNumber("901");

  FGPixelMeasures measures;
  measures.setPixelSpacing((Decimal(source.pixel_spacing[0]) + "\\" + Decimal(source.pixel_spacing[1])).c_str());
  measures.setSliceThickness(Decimal(source.slice_spacing > 0 ? source.slice_spacing : 1).c_str());
  TS_RETURN_IF_ERROR(Check(seg->addForAllFrames(measures), "pixel measures"));
  const auto& o = source.orientation;
  std::unique_ptr<FGPlaneOrientationPatient> orientation(FGPlaneOrientationPatient::createMinimal(
      Decimal(o[0]).c_str(), Decimal(o[1]).c_str(), Decimal(o[2]).c_str(), Decimal(o[3]).c_str(), Decimal(o[4]).c_str(), Decimal(o[5]).c_str()));
  TS_RETURN_IF_ERROR(Check(seg->addForAllFrames(*orientation), "plane orientation"));

  // Frames are indexed by (segment number, slice position).
  const OFString dimensions = DcmIODUtil::createUID();
  auto& dims = seg->getDimensions();
  TS_RETURN_IF_ERROR(Check(dims.addDimensionIndex(DCM_ReferencedSegmentNumber, dimensions, DCM_SegmentIdentificationSequence,
                                                  "ReferencedSegmentNumber"), "dimension index"));
  TS_RETURN_IF_ERROR(Check(dims.addDimensionIndex(DCM_ImagePositionPatient, dimensions, DCM_PlanePositionSequence, "ImagePositionPatient"),
                           "dimension index"));

  IODReferences references;
  for (const auto& s : source.slices) {
    references.add(new IODImageReference("", source.study_instance_uid.c_str(), source.series_instance_uid.c_str(),
                                         s.sop_instance_uid.c_str(), s.sop_class_uid.c_str()));
  }
  seg->getCommonInstanceReference().addReferences(references, source.study_instance_uid.c_str());

  std::map<int64_t, std::string> names(label_table.begin(), label_table.end());
  std::vector<Uint8> frame(static_cast<size_t>(plane));
  for (const auto& [id, flags] : present) {
    const std::string name = names.count(id) ? names[id] : "label_" + std::to_string(id);
    DcmSegment* segment = nullptr;
    TS_RETURN_IF_ERROR(Check(DcmSegment::create(segment, name.c_str(), CodeSequenceMacro("123037004", "SCT", "Anatomical Structure"),
                                                CodeSequenceMacro("85756007", "SCT", "Tissue"), DcmSegTypes::SAT_AUTOMATIC, "tucker-seg"),
                             "segment " + name));
    Uint16 number = 0;
    if (Status s = Check(seg->addSegment(segment, number), "add segment " + name); !s.ok()) {
      delete segment;
      return s;
    }
    for (int64_t k = 0; k < slices; ++k) {
      if (!flags[static_cast<size_t>(k)]) continue;
      for (int64_t i = 0; i < plane; ++i) frame[static_cast<size_t>(i)] = labels.voxels[static_cast<size_t>(k * plane + i)] == id;
      const auto& slice = source.slices[static_cast<size_t>(k)];
      std::unique_ptr<FGPlanePosPatient> position(FGPlanePosPatient::createMinimal(
          Decimal(slice.position[0]).c_str(), Decimal(slice.position[1]).c_str(), Decimal(slice.position[2]).c_str()));
      OFVector<ImageSOPInstanceReferenceMacro> derived(1);
      derived[0].setReferencedSOPClassUID(slice.sop_class_uid.c_str());
      derived[0].setReferencedSOPInstanceUID(slice.sop_instance_uid.c_str());
      std::unique_ptr<FGDerivationImage> derivation(FGDerivationImage::createMinimal(
          derived, "Segmentation of the source slice", CodeSequenceMacro("113076", "DCM", "Segmentation"),
          CodeSequenceMacro("121322", "DCM", "Source image for image processing operation")));
      FGFrameContent frame_content;
      frame_content.setDimensionIndexValues(number, 0);
      frame_content.setDimensionIndexValues(static_cast<Uint32>(k + 1), 1);
      OFVector<FGBase*> per_frame{position.get(), derivation.get(), &frame_content};
      TS_RETURN_IF_ERROR(Check(seg->addFrame(frame.data(), number, per_frame), "frame of " + name));
    }
  }
  return Check(seg->saveFile(path.c_str(), EXS_LittleEndianExplicit), "save '" + path + "'");
}

}  // namespace tucker_seg
