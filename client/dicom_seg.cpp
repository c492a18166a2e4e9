#include "client/dicom_seg.h"

#include "vocabulary/atomic_file.h"

#include "vocabulary/class_codes.h"
#include "vocabulary/label_palette.h"

#include <unistd.h>

#include <cmath>
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
#include <dcmtk/dcmiod/cielabutil.h>
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

// LO values hold at most 64 characters.
OFString LongString(const std::string& s) { return OFString(s.substr(0, 64).c_str()); }

// Label Map Segmentation Storage (DICOM 2024c), newer than DCMTK 3.6.7's dictionary.
constexpr const char* kLabelMapSegmentationStorage = "1.2.840.10008.5.1.4.1.1.66.7";

Status SetCode(CodeSequenceMacro& target, const Code& code, const std::string& what) {
  return Check(target.set(code.value.c_str(), code.scheme.c_str(), code.meaning.c_str()), what);
}

// A segment coded as TotalSegmentator codes the class (SCT type, laterality, region), coloured
// as the preview colours it, named with the variant that produced it.
Status CreateSegment(const std::string& name, int64_t id, const Provenance& provenance, DcmSegment** out) {
  const ClassCodes codes = CodesOf(name);
  const Code& category = codes.category;
  const Code& type = codes.type;
  DcmSegment* raw = nullptr;
  TS_RETURN_IF_ERROR(Check(DcmSegment::create(raw, name.c_str(), CodeSequenceMacro(category.value.c_str(), category.scheme.c_str(),
                                                                                   category.meaning.c_str()),
                                              CodeSequenceMacro(type.value.c_str(), type.scheme.c_str(), type.meaning.c_str()),
                                              DcmSegTypes::SAT_AUTOMATIC, LongString("tucker-seg " + provenance.model + "/" + provenance.variant)),
                           "segment " + name));
  std::unique_ptr<DcmSegment> segment(raw);
  if (!codes.type_modifier.empty()) {
    auto* modifier = new CodeSequenceMacro();
    segment->getSegmentedPropertyTypeModifierCode().push_back(modifier);
    TS_RETURN_IF_ERROR(SetCode(*modifier, codes.type_modifier, "type modifier of " + name));
  }
  if (!codes.region.empty()) {
    TS_RETURN_IF_ERROR(SetCode(segment->getGeneralAnatomyCode().getAnatomicRegion(), codes.region, "anatomic region of " + name));
    if (!codes.region_modifier.empty()) {
      auto* modifier = new CodeSequenceMacro();
      segment->getGeneralAnatomyCode().getAnatomicRegionModifier().push_back(modifier);
      TS_RETURN_IF_ERROR(SetCode(*modifier, codes.region_modifier, "anatomic region modifier of " + name));
    }
  }
  const auto lab = SrgbToCieLab(LabelColour(id));
  double l = 0, a = 0, b = 0;
  IODCIELabUtil::lab2DicomLab(l, a, b, lab[0], lab[1], lab[2]);
  TS_RETURN_IF_ERROR(Check(segment->setRecommendedDisplayCIELabValue(static_cast<Uint16>(std::lround(l)), static_cast<Uint16>(std::lround(a)),
                                                                     static_cast<Uint16>(std::lround(b))),
                           "colour of " + name));
  *out = segment.release();
  return Status::Ok();
}

// A frame's functional groups: its slice's position, the slice it derives from, its dimension
// index values.
struct SliceGroups {
  std::unique_ptr<FGPlanePosPatient> position;
  std::unique_ptr<FGDerivationImage> derivation;
  FGFrameContent content;

  SliceGroups(const DicomSlice& slice, const std::vector<Uint32>& index) {
    position.reset(FGPlanePosPatient::createMinimal(Decimal(slice.position[0]).c_str(), Decimal(slice.position[1]).c_str(),
                                                    Decimal(slice.position[2]).c_str()));
    OFVector<ImageSOPInstanceReferenceMacro> derived(1);
    derived[0].setReferencedSOPClassUID(slice.sop_class_uid.c_str());
    derived[0].setReferencedSOPInstanceUID(slice.sop_instance_uid.c_str());
    derivation.reset(FGDerivationImage::createMinimal(derived, "Segmentation of the source slice",
                                                      CodeSequenceMacro("113076", "DCM", "Segmentation"),
                                                      CodeSequenceMacro("121322", "DCM", "Source image for image processing operation")));
    for (size_t i = 0; i < index.size(); ++i) content.setDimensionIndexValues(index[i], static_cast<unsigned>(i));
  }
  OFVector<FGBase*> all() { return {position.get(), derivation.get(), &content}; }
};

// Turns a dataset dcmseg wrote (segments, shared groups, references, one placeholder frame) into
// a LABELMAP segmentation: its SOP class and type, 8-bit pixels holding segment numbers, one
// frame per slice with its own position, derivation and index (and no segment identification).
Status MakeLabelMap(const LabelMap& labels, const DicomSeriesInfo& source, const std::map<int64_t, Uint16>& numbers, DcmDataset* ds) {
  const auto slices = static_cast<int64_t>(source.slices.size());
  const int64_t plane = source.rows * source.columns;
  if (numbers.rbegin()->second > 255) return Internal("DICOM SEG: more than 255 segments do not fit an 8-bit label map");
  std::vector<Uint8> lookup(256, 0);
  for (const auto& [id, number] : numbers) lookup[static_cast<size_t>(id)] = static_cast<Uint8>(number);
  std::vector<Uint8> pixels(labels.voxels.size());
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = lookup[labels.voxels[i]];

  auto* frames = new DcmSequenceOfItems(DCM_PerFrameFunctionalGroupsSequence);
  TS_RETURN_IF_ERROR(Check(ds->insert(frames, /*replaceOld=*/true), "per-frame groups"));
  for (int64_t k = 0; k < slices; ++k) {
    SliceGroups groups(source.slices[static_cast<size_t>(k)], {static_cast<Uint32>(k + 1)});
    auto* item = new DcmItem();
    TS_RETURN_IF_ERROR(Check(frames->append(item), "per-frame item"));
    for (FGBase* group : groups.all()) TS_RETURN_IF_ERROR(Check(group->write(*item), "per-frame groups of slice " + std::to_string(k + 1)));
  }
  auto* padding = new DcmUnsignedShort(DcmTag(DCM_PixelPaddingValue, EVR_US));
  padding->putUint16(0);
  TS_RETURN_IF_ERROR(Check(ds->insert(padding, /*replaceOld=*/true), "pixel padding value"));
  for (const auto& [status, what] : std::vector<std::pair<OFCondition, std::string>>{
           {ds->putAndInsertString(DCM_SOPClassUID, kLabelMapSegmentationStorage), "SOP class"},
           {ds->putAndInsertString(DCM_SegmentationType, "LABELMAP"), "segmentation type"},
           {ds->putAndInsertString(DCM_SegmentsOverlap, "NO"), "segments overlap"},
           {ds->putAndInsertUint16(DCM_BitsAllocated, 8), "bits allocated"},
           {ds->putAndInsertUint16(DCM_BitsStored, 8), "bits stored"},
           {ds->putAndInsertUint16(DCM_HighBit, 7), "high bit"},
           {ds->putAndInsertString(DCM_NumberOfFrames, std::to_string(slices).c_str()), "number of frames"},
           {ds->putAndInsertUint8Array(DCM_PixelData, pixels.data(), static_cast<unsigned long>(slices * plane)), "pixel data"}}) {
    TS_RETURN_IF_ERROR(Check(status, what));
  }
  return Status::Ok();
}

}  // namespace

Status WriteDicomSeg(const std::string& path, const LabelMap& labels, const DicomSeriesInfo& source, const LabelTable& label_table,
                     const Provenance& provenance, DicomSegType type) {
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
  // Provenance: which model and variant (and how close that variant is to the original) made it.
  IODGeneralEquipmentModule::EquipmentInfo equipment("tucker-seg", "tucker-seg", "0", LongString(provenance.software_version));
  std::string description = provenance.variant + " of " + provenance.model;  // LO: 64 characters, the variant first
  if (provenance.quality) description += ", agreement " + Decimal(*provenance.quality).substr(0, 5);
  ContentIdentificationMacro content("1", "TUCKERSEG", LongString(description), "tucker-seg");
  TS_RETURN_IF_ERROR(Check(DcmSegmentation::createBinarySegmentation(raw, static_cast<Uint16>(rows), static_cast<Uint16>(columns),
                                                                     equipment, content), "create"));
  std::unique_ptr<DcmSegmentation> seg(raw);
  TS_RETURN_IF_ERROR(Check(seg->importFromSourceImage(source.slices.front().path.c_str()), "patient/study from the source"));
  seg->getSeries().setSeriesDescription(LongString("tucker-seg " + provenance.model + " " + provenance.variant));
  seg->getSeries().setSeriesNumber("901");

  FGPixelMeasures measures;
  measures.setPixelSpacing((Decimal(source.pixel_spacing[0]) + "\\" + Decimal(source.pixel_spacing[1])).c_str());
  measures.setSliceThickness(Decimal(source.slice_spacing > 0 ? source.slice_spacing : 1).c_str());
  TS_RETURN_IF_ERROR(Check(seg->addForAllFrames(measures), "pixel measures"));
  const auto& o = source.orientation;
  std::unique_ptr<FGPlaneOrientationPatient> orientation(FGPlaneOrientationPatient::createMinimal(
      Decimal(o[0]).c_str(), Decimal(o[1]).c_str(), Decimal(o[2]).c_str(), Decimal(o[3]).c_str(), Decimal(o[4]).c_str(), Decimal(o[5]).c_str()));
  TS_RETURN_IF_ERROR(Check(seg->addForAllFrames(*orientation), "plane orientation"));

  // Binary frames are indexed by (segment number, slice position), label-map frames by position.
  const OFString dimensions = DcmIODUtil::createUID();
  auto& dims = seg->getDimensions();
  if (type == DicomSegType::kBinary) {
    TS_RETURN_IF_ERROR(Check(dims.addDimensionIndex(DCM_ReferencedSegmentNumber, dimensions, DCM_SegmentIdentificationSequence,
                                                    "ReferencedSegmentNumber"), "dimension index"));
  }
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
  std::map<int64_t, Uint16> numbers;  // label id -> segment number
  for (const auto& [id, flags] : present) {
    const std::string name = names.count(id) ? names[id] : "label_" + std::to_string(id);
    DcmSegment* segment = nullptr;
    TS_RETURN_IF_ERROR(CreateSegment(name, id, provenance, &segment));
    Uint16 number = 0;
    if (Status s = Check(seg->addSegment(segment, number), "add segment " + name); !s.ok()) {
      delete segment;
      return s;
    }
    numbers[id] = number;
    if (type == DicomSegType::kLabelMap) continue;
    for (int64_t k = 0; k < slices; ++k) {
      if (!flags[static_cast<size_t>(k)]) continue;
      for (int64_t i = 0; i < plane; ++i) frame[static_cast<size_t>(i)] = labels.voxels[static_cast<size_t>(k * plane + i)] == id;
      SliceGroups groups(source.slices[static_cast<size_t>(k)], {number, static_cast<Uint32>(k + 1)});
      TS_RETURN_IF_ERROR(Check(seg->addFrame(frame.data(), number, groups.all()), "frame of " + name));
    }
  }
  // Deflated: binary frames of mostly-empty slices compress well (docs/client.md has the sizes).
  // Saved beside the target, then renamed over it, so that readers never see half a file.
  const std::string temporary = path + ".tmp." + std::to_string(getpid());
  OFCondition saved;
  if (type == DicomSegType::kBinary) {
    saved = seg->saveFile(temporary.c_str(), EXS_DeflatedLittleEndianExplicit);
  } else {
    // DCMTK 3.6.7's dcmseg writes BINARY and FRACTIONAL only: the document is written with an
    // empty binary placeholder frame per segment (it wants at least one each), then its dataset
    // becomes a label map.
    std::fill(frame.begin(), frame.end(), 0);
    for (const auto& [id, number] : numbers) {
      SliceGroups placeholder(source.slices.front(), {1});
      TS_RETURN_IF_ERROR(Check(seg->addFrame(frame.data(), number, placeholder.all()), "placeholder frame"));
    }
    DcmFileFormat file;
    TS_RETURN_IF_ERROR(Check(seg->writeDataset(*file.getDataset()), "dataset"));
    TS_RETURN_IF_ERROR(MakeLabelMap(labels, source, numbers, file.getDataset()));
    saved = file.saveFile(temporary.c_str(), EXS_DeflatedLittleEndianExplicit);
  }
  if (saved.bad()) {
    std::remove(temporary.c_str());
    return Check(saved, "save '" + path + "'");
  }
  return CommitWrittenFile(temporary, path);
}

}  // namespace tucker_seg
