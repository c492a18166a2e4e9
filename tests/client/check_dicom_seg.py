"""Reads a DICOM SEG back with pydicom (an independent reader) and prints, one JSON object, what
the C++ test asserts on: transfer syntax, provenance fields and each segment's codes and colour.
With `--inflate OUT`, also writes the same dataset in Explicit VR Little Endian to OUT (dciodvfy
does not read the deflated transfer syntax)."""
import json
import sys

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
print(json.dumps({
    "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
    "series_description": str(ds.SeriesDescription),
    "content_description": str(ds.ContentDescription),
    "software_versions": str(ds.SoftwareVersions),
    "frames": int(ds.NumberOfFrames),
    "segments": segments,
}))
