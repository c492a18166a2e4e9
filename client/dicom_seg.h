// Label maps as DICOM Segmentation objects (DCMTK dcmseg): one segment per class present
// (labelled with its class name and coded as TotalSegmentator codes it), binary (one frame per
// (segment, slice that holds it)) or a label map (one frame per slice), each frame placed at its
// source slice's position and derived from that slice's SOP instance; patient, study and
// frame of reference are taken from the source series, which the SEG references.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "image_io/dicom_series.h"
#include "image_io/segmentation_files.h"
#include "vocabulary/status.h"
#include "vocabulary/volume.h"

namespace tucker_seg {

// BINARY: one 1-bit frame per (segment, slice that holds it), what every viewer reads today.
// LABELMAP (DICOM 2024c, Supplement 243: Label Map Segmentation Storage): one 8-bit frame per
// slice whose pixel values are segment numbers (0: background, the Pixel Padding Value).
enum class DicomSegType { kBinary, kLabelMap };

// `labels` lies on the series' grid (as ReadCtInput returns it); `label_table` maps ids to names.
// Segments carry TotalSegmentator's SNOMED CT codes (vocabulary/class_codes.h) and the palette's
// colour (vocabulary/label_palette.h); `provenance` goes into SeriesDescription,
// ContentDescription, SegmentAlgorithmName and SoftwareVersions. Deflated transfer syntax; the
// file is replaced atomically.
Status WriteDicomSeg(const std::string& path, const LabelMap& labels, const DicomSeriesInfo& source, const LabelTable& label_table,
                     const Provenance& provenance, DicomSegType type = DicomSegType::kBinary);

}  // namespace tucker_seg
