// Zeroed memory for buffers that are allocated once and written in full by the first use: the CPU
// engine's activation buffers. The mapping is populated when it is made (MAP_POPULATE), so the
// kernel faults its pages in one call instead of one trap per 4 KiB page in the first forward
// pass. On the 2-core VMs we measure on, those traps, taken by the engine's threads at once, made
// the first tile of a prediction cost 1.2-1.6 s against 0.54 s for the next ones; populated at
// graph build (about 0.08 s more there), the first tile costs what the others do
// (docs/prediction.md).
#pragma once

#include <cstddef>
#include <memory>

namespace tucker_seg {

struct MappedBufferDeleter {
  size_t bytes = 0;
  void operator()(void* p) const noexcept;
};
using MappedBuffer = std::unique_ptr<void, MappedBufferDeleter>;

// `bytes` zeroed, page-aligned, resident bytes; throws std::bad_alloc when the mapping fails.
// 0 bytes: null.
MappedBuffer MapPopulatedBuffer(size_t bytes);

}  // namespace tucker_seg
