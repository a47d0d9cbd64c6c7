// Memory helpers for large fresh outputs.
#pragma once

#include <cstddef>
#include <new>

namespace pyquant {

// Ask the kernel to back [p, p + bytes) with transparent huge pages before it is first touched.
// A fresh multi-megabyte output otherwise takes one page fault (and a 4 KiB zeroing) per page on
// every call; with THP in "madvise" mode that is one fault per 2 MiB. Harmless if THP is off.
void advise_huge_pages(void* p, size_t bytes);

// For scratch vectors the kernels read in whole cache lines (an AMX tile row is 64 bytes: from a
// 16-byte aligned buffer every row load would touch two lines).
template <class T, size_t kAlign = 64>
struct CacheAlignedAllocator {
  using value_type = T;
  template <class U>
  struct rebind {
    using other = CacheAlignedAllocator<U, kAlign>;
  };
  CacheAlignedAllocator() = default;
  template <class U>
  CacheAlignedAllocator(const CacheAlignedAllocator<U, kAlign>&) {}
  T* allocate(size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kAlign)));
  }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(kAlign)); }
  template <class U>
  bool operator==(const CacheAlignedAllocator<U, kAlign>&) const { return true; }
  template <class U>
  bool operator!=(const CacheAlignedAllocator<U, kAlign>&) const { return false; }
};

}  // namespace pyquant
