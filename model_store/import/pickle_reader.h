// A tolerant reader for the pickles that torch.save writes (protocol 2..5).
//
// It runs the pickle machine without executing anything: known constructors
// (OrderedDict, torch's tensor rebuild functions) become dicts and tensor
// references, every other global (numpy scalars, torch.device, ...) becomes an
// opaque object. That is what lets us keep `network_weights` from a real
// nnU-Net checkpoint, which LibTorch's own pickle loader refuses.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vocabulary/status.h"

namespace tucker_seg::pickle {

// A storage record of a torch.save zip archive (`data/<key>`).
struct StorageRef {
  std::string key;
  std::string type_name;  // e.g. "torch.FloatStorage"
  int64_t numel = 0;
};

// torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
struct TensorRef {
  StorageRef storage;
  int64_t offset = 0;
  std::vector<int64_t> size;
  std::vector<int64_t> stride;
};

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  enum class Kind { kNone, kBool, kInt, kFloat, kString, kBytes, kTuple, kList, kDict, kSet,
                    kGlobal, kObject, kStorage, kTensor };
  Kind kind = Kind::kNone;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0.0;
  std::string text;  // string, bytes, global "module.name", or an object's class name
  std::vector<ValuePtr> items;                            // tuple, list, set
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;     // dict (insertion order)
  StorageRef storage;
  TensorRef tensor;

  Value() = default;
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;
  // Frees nested containers iteratively, so that a deeply nested pickle cannot exhaust the stack.
  ~Value();

  bool is_string() const { return kind == Kind::kString; }
  // Looks up a string key in a dict; nullptr when absent or when this is not a dict.
  ValuePtr Get(std::string_view key) const;
};

// Runs the pickle program in `data`. Never throws; malformed input gives kDataLoss
// with the opcode offset.
Result<ValuePtr> Unpickle(std::string_view data);

}  // namespace tucker_seg::pickle
