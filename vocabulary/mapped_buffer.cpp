#include "vocabulary/mapped_buffer.h"

#include <sys/mman.h>

#include <new>

namespace tucker_seg {

void MappedBufferDeleter::operator()(void* p) const noexcept {
  if (p) munmap(p, bytes);
}

MappedBuffer MapPopulatedBuffer(size_t bytes) {
  if (bytes == 0) return MappedBuffer(nullptr, MappedBufferDeleter{0});
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return MappedBuffer(p, MappedBufferDeleter{bytes});
}

}  // namespace tucker_seg
