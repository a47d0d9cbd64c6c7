// Stand-in <immintrin.h> for the emulated-ISA test (tests/test_emulated_isa.py): the AVX-512
// kernels are compiled against SIMDe's portable implementations of the same intrinsics, so
// their logic (masks, tails, packing, rounding) is checked on CPUs without AVX-512.
// Real hardware runs the real instructions; this only proves the code computes the right thing.
#pragma once
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/avx2.h>
#include <simde/x86/fma.h>

#include <cstdint>
#include <cstring>

// Intrinsics SIMDe 0.8 lacks, written lane by lane. Masked loads read only the selected lanes,
// as the hardware does (it never faults on masked-off memory).
#ifndef _MM_FROUND_NO_EXC
#define _MM_FROUND_NO_EXC SIMDE_MM_FROUND_NO_EXC
#endif

// Embedded rounding: only round-to-nearest is used, which is the plain multiply.
static inline simde__m512 _mm512_mul_round_ps(simde__m512 a, simde__m512 b, int) {
  return simde_mm512_mul_ps(a, b);
}

static inline simde__m512i _mm512_maskz_loadu_epi32(simde__mmask16 k, const void* p) {
  int32_t lanes[16] = {0};
  for (int i = 0; i < 16; ++i)
    if ((k >> i) & 1) std::memcpy(&lanes[i], static_cast<const char*>(p) + 4 * i, 4);
  return simde_mm512_loadu_si512(lanes);
}

static inline simde__m128i _mm_maskz_loadu_epi8(simde__mmask16 k, const void* p) {
  int8_t lanes[16] = {0};
  for (int i = 0; i < 16; ++i)
    if ((k >> i) & 1) lanes[i] = static_cast<const int8_t*>(p)[i];
  return simde_mm_loadu_si128(lanes);
}

static inline simde__m512i _mm512_cvtepi8_epi32(simde__m128i a) {
  return simde_mm512_cvtepi16_epi32(simde_mm256_cvtepi8_epi16(a));
}

static inline simde__m512i _mm512_cvtepu8_epi32(simde__m128i a) {
  return simde_mm512_cvtepu16_epi32(simde_mm256_cvtepu8_epi16(a));
}

#define _mm512_mask_cmp_ps_mask(k, a, b, imm) \
  static_cast<simde__mmask16>((k) & simde_mm512_cmp_ps_mask((a), (b), (imm)))

// SIMDe 0.8 emulates this masked store as a full-width store (masked-off lanes get zero);
// the hardware leaves them untouched, which is what the tail handling relies on.
#undef _mm512_mask_storeu_ps
static inline void _mm512_mask_storeu_ps(void* p, simde__mmask16 k, simde__m512 a) {
  float lanes[16];
  simde_mm512_storeu_ps(lanes, a);
  for (int i = 0; i < 16; ++i)
    if ((k >> i) & 1) std::memcpy(static_cast<char*>(p) + 4 * i, &lanes[i], 4);
}

// Horizontal sum in the same tree order as GCC's sequence (256-bit halves, then 128, then pairs).
static inline float _mm512_reduce_add_ps(simde__m512 a) {
  float l[16];
  simde_mm512_storeu_ps(l, a);
  float h8[8], h4[4];
  for (int i = 0; i < 8; ++i) h8[i] = l[i] + l[i + 8];
  for (int i = 0; i < 4; ++i) h4[i] = h8[i] + h8[i + 4];
  return (h4[0] + h4[2]) + (h4[1] + h4[3]);
}

static inline simde__m512i _mm512_cvtepu8_epi16(simde__m256i a) {
  uint8_t in[32];
  int16_t out[32];
  simde_mm256_storeu_si256(in, a);
  for (int i = 0; i < 32; ++i) out[i] = in[i];
  return simde_mm512_loadu_si512(out);
}

#undef _mm512_mask_storeu_epi32
static inline void _mm512_mask_storeu_epi32(void* p, simde__mmask16 k, simde__m512i a) {
  int32_t lanes[16];
  simde_mm512_storeu_si512(lanes, a);
  for (int i = 0; i < 16; ++i)
    if ((k >> i) & 1) std::memcpy(static_cast<char*>(p) + 4 * i, &lanes[i], 4);
}

// c where k is clear, a * b + c where it is set (the FMA's result on cleared lanes is dropped).
static inline simde__m512 _mm512_mask3_fmadd_ps(simde__m512 a, simde__m512 b, simde__m512 c,
                                                simde__mmask16 k) {
  return simde_mm512_mask_mov_ps(c, k, simde_mm512_fmadd_ps(a, b, c));
}

// Gathers of 32-bit lanes: base + 4 * index (the kernels pass scale 4); masked lanes are not
// read and keep src, as the hardware does.
static inline simde__m512i _mm512_mask_i32gather_epi32(simde__m512i src, simde__mmask16 k,
                                                       simde__m512i vindex, const void* base,
                                                       int scale) {
  int32_t idx[16], lanes[16];
  simde_mm512_storeu_si512(idx, vindex);
  simde_mm512_storeu_si512(lanes, src);
  for (int i = 0; i < 16; ++i)
    if ((k >> i) & 1)
      std::memcpy(&lanes[i], static_cast<const char*>(base) + static_cast<int64_t>(idx[i]) * scale,
                  4);
  return simde_mm512_loadu_si512(lanes);
}

static inline simde__m512i _mm512_i32gather_epi32(simde__m512i vindex, const void* base,
                                                  int scale) {
  return _mm512_mask_i32gather_epi32(simde_mm512_setzero_si512(), 0xffff, vindex, base, scale);
}

static inline int32_t _mm512_reduce_add_epi32(simde__m512i a) {
  int32_t l[16];
  simde_mm512_storeu_si512(l, a);
  int32_t s = 0;
  for (int i = 0; i < 16; ++i) s += l[i];
  return s;
}
