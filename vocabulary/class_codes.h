// How a DICOM SEG (and the wire's Label) codes a class: TotalSegmentator's SNOMED CT mapping (category, type,
// laterality modifier, anatomic region) by class name, compiled in from
// vocabulary/resources/totalsegmentator_snomed_mapping.csv.
#pragma once

#include <optional>
#include <string>

namespace tucker_seg {

struct Code {
  std::string scheme, value, meaning;  // e.g. SCT, 10200004, Liver
  bool empty() const { return value.empty(); }
};

struct ClassCodes {
  Code category, type, type_modifier, region, region_modifier;  // modifiers and region may be empty
};

// The coding of a TotalSegmentator class name; nullopt for names the mapping does not know.
std::optional<ClassCodes> FindClassCodes(const std::string& class_name);

// How a class is coded in a DICOM SEG and on the wire: its mapping's codes, or for names the
// mapping does not know category SCT 123037004 "Anatomical Structure", type SCT 85756007 "Tissue".
ClassCodes CodesOf(const std::string& class_name);

}  // namespace tucker_seg
