// Label maps as DICOM Segmentation objects (DCMTK dcmseg): binary, one segment per class present
// (labelled with its class name), one frame per (segment, slice that holds it), each frame placed
// at its source slice's position and derived from that slice's SOP instance; patient, study and
// frame of reference are taken from the source series, which the SEG references.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "image_io/dicom_series.h"
#include "vocabulary/status.h"
#include "vocabulary/volume.h"

namespace tucker_seg {

// `labels` lies on the series' grid (as ReadCtInput returns it); `label_table` maps ids to names.
Status WriteDicomSeg(const std::string& path, const LabelMap& labels, const DicomSeriesInfo& source,
                     const std::vector<std::pair<int64_t, std::string>>& label_table);

}  // namespace tucker_seg
