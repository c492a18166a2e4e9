"""Reads a DICOM SEG back with pydicom (an independent reader) and prints, one JSON object, what
the C++ test asserts on: SOP class and segmentation type, transfer syntax, provenance fields, each
segment's codes and colour, and for a LABELMAP its pixel values counted per segment, frame
positions and a few voxels.
With `--inflate OUT`, also writes the same dataset in Explicit VR Little Endian to OUT (dciodvfy
does not read the deflated transfer syntax)."""
import json
import sys

import numpy
import pydicom

ds = pydicom.dcmread(sys.argv[1])
if len(sys.argv) == 4 and sys.argv[2] == "--inflate":
    inflated = pydicom.dcmread(sys.argv[1])
    inflated.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    inflated.save_as(sys.argv[3], write_like_original=False)


def code(item):
    return {"scheme": item.CodingSchemeDesignator, "value": item.CodeValue, "meaning": item.CodeMeaning}


segments = {}
for s in ds.SegmentSequence:
    segments[s.SegmentLabel] = {
        "category": code(s.SegmentedPropertyCategoryCodeSequence[0]),
        "type": code(s.SegmentedPropertyTypeCodeSequence[0]),
        "type_modifiers": [code(m) for m in getattr(s.SegmentedPropertyTypeCodeSequence[0], "SegmentedPropertyTypeModifierCodeSequence", [])],
        "regions": [code(r) for r in getattr(s, "AnatomicRegionSequence", [])],
        "lab": [int(v) for v in s.RecommendedDisplayCIELabValue],
        "algorithm": str(s.SegmentAlgorithmName),
    }
labelmap = {}
if ds.SegmentationType == "LABELMAP":
    numbers = {int(s.SegmentNumber): str(s.SegmentLabel) for s in ds.SegmentSequence}
    pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    values, counts = numpy.unique(pixels, return_counts=True)
    labelmap = {
        "bits_allocated": int(ds.BitsAllocated),
        "pixel_padding_value": int(ds.PixelPaddingValue),
        "voxels": {numbers.get(int(v), "background" if v == 0 else "unknown %d" % v): int(c) for v, c in zip(values, counts)},
        "frame_z": [float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in ds.PerFrameFunctionalGroupsSequence],
        "segment_identification_per_frame": any("SegmentIdentificationSequence" in f for f in ds.PerFrameFunctionalGroupsSequence),
        "value_at": {"%d,%d,%d" % (z, y, x): numbers.get(int(pixels[z, y, x]), "background")
                     for z, y, x in [(4, 200, 100), (5, 230, 250), (5, 230, 350), (6, 230, 350), (3, 230, 150)]},
    }
print(json.dumps({
    "sop_class": str(ds.SOPClassUID),
    "segmentation_type": str(ds.SegmentationType),
    "labelmap": labelmap,
    "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
    "series_description": str(ds.SeriesDescription),
    "content_description": str(ds.ContentDescription),
    "software_versions": str(ds.SoftwareVersions),
    "frames": int(ds.NumberOfFrames),
    "segments": segments,
}))
