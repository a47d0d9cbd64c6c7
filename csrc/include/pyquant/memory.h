// Memory helpers for large fresh outputs.
#pragma once

#include <cstddef>

namespace pyquant {

// Ask the kernel to back [p, p + bytes) with transparent huge pages before it is first touched.
// A fresh multi-megabyte output otherwise takes one page fault (and a 4 KiB zeroing) per page on
// every call; with THP in "madvise" mode that is one fault per 2 MiB. Harmless if THP is off.
void advise_huge_pages(void* p, size_t bytes);

}  // namespace pyquant
