// How a DICOM SEG codes a class: TotalSegmentator's SNOMED CT mapping (category, type,
// laterality modifier, anatomic region) by class name, compiled in from
// client/resources/totalsegmentator_snomed_mapping.csv.
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

// The coding of a TotalSegmentator class name; nullopt for names the mapping does not know
// (those segments are coded as SCT 85756007 "Tissue").
std::optional<ClassCodes> FindClassCodes(const std::string& class_name);

}  // namespace tucker_seg
