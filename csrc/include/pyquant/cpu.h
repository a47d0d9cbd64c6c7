// CPU feature detection and the instruction-set level kernels are chosen for.
#pragma once

#include <string>

namespace pyquant {

// Ordered: each level implies every lower one.
// amx: AMX-TILE + AMX-INT8 on top of AVX-512 VNNI, with the OS's permission to use the tiles.
enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, avx512vnni = 3, amx = 4 };

struct CpuFeatures {
  char vendor[13] = {};   // cpuid leaf 0: "GenuineIntel", "AuthenticAMD", ...
  bool avx2 = false;      // with FMA and F16C, and the OS saving YMM state
  bool avx512f = false;   // the OS saving ZMM/opmask state included
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vnni = false;
  bool amx_int8 = false;  // AMX-TILE + AMX-INT8, tile state enabled and granted (Linux)
  // vgatherdps / vpgatherdd at about the rate of the loads they stand for: Intel. AMD's Zen 4
  // microcodes them: there the M = 1 sparse kernels' scalar-load-and-insert gather (AVX2) ran
  // 1.3-1.6x faster than the 16-wide hardware gather at 50-99% (4096 x 4096, one thread).
  bool fast_gather = true;
};

// Read once (cpuid + xgetbv) and cached.
const CpuFeatures& cpu_features();

// The highest level this CPU and OS support.
Isa detected_isa();

const char* isa_name(Isa isa);
// Returns false if `name` is not an ISA name.
bool parse_isa(const std::string& name, Isa* out);

}  // namespace pyquant
