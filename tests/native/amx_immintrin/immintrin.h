// Stand-in <immintrin.h> for the emulated AMX test (tests/test_emulated_isa.py): everything up to
// AVX-512 VNNI comes from the SIMDe stand-in, and the AMX tile intrinsics the AMX GEMM kernel
// uses are modelled here in scalar C++ after the Intel SDM pseudocode (palette 1: 8 tiles of up
// to 16 rows x 64 bytes, rows and bytes per row set by LDTILECFG). Misuse the hardware faults on
// (no config loaded, invalid config, mismatched tdpbusd shapes) aborts with a message instead of
// computing something plausible, so e.g. a missing _tile_loadconfig fails the test.
// The tile operands are compile-time constants on hardware; ints are enough here.
#pragma once
#include "../simde_immintrin/immintrin.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace amx_emu {

constexpr int kTiles = 8, kMaxRows = 16, kMaxColsb = 64;

struct State {
  bool configured = false;   // palette 1 loaded; false = INIT state (never loaded, or released)
  long loadconfig_calls = 0;  // lets the driver check the AMX path really ran
  int start_row = 0;          // restart row of an interrupted load / store; 0 in practice
  int rows[kTiles] = {};
  int colsb[kTiles] = {};
  uint8_t data[kTiles][kMaxRows][kMaxColsb] = {};
};

// The tile registers are per thread.
inline State& state() {
  static thread_local State s;
  return s;
}

[[noreturn]] inline void fault(const char* op, const char* why, int tile) {
  std::fprintf(stderr, "AMX emulation: %s: %s (tmm%d)\n", op, why, tile);
  std::fflush(stderr);
  std::abort();
}

// The checks every tile instruction starts with (#UD on hardware). Stricter than hardware: a
// tile the config leaves empty (0 rows) is rejected too, as using one is always a bug here.
inline State& use(const char* op, int t) {
  State& s = state();
  if (!s.configured)
    fault(op, "no tile config loaded (missing _tile_loadconfig, or after _tile_release)", t);
  if (t < 0 || t >= kTiles) fault(op, "no such tile register", t);
  if (s.rows[t] == 0) fault(op, "tile not configured", t);
  return s;
}

// Zero what lies outside rows x colsb, as the hardware does after writing a tile.
inline void zero_outside(State& s, int t) {
  for (int r = 0; r < kMaxRows; ++r) {
    const int keep = r < s.rows[t] ? s.colsb[t] : 0;
    std::memset(s.data[t][r] + keep, 0, kMaxColsb - keep);
  }
}

inline void init_state(State& s) {
  const long calls = s.loadconfig_calls;
  s = State();
  s.loadconfig_calls = calls;
}

}  // namespace amx_emu

// Layout: byte 0 palette, 1 start_row, 2-15 reserved, 16-31 colsb of tmm0-7 (uint16),
// 32-47 reserved, 48-55 rows of tmm0-7, 56-63 reserved. Palette 0 means the INIT state.
inline void _tile_loadconfig(const void* mem) {
  const uint8_t* b = static_cast<const uint8_t*>(mem);
  amx_emu::State& s = amx_emu::state();
  ++s.loadconfig_calls;
  amx_emu::init_state(s);
  if (b[0] == 0) return;
  if (b[0] != 1) amx_emu::fault("_tile_loadconfig", "palette other than 0 or 1 (#GP)", -1);
  for (int i = 2; i < 64; ++i)
    if (((i < 16) || (i >= 32 && i < 48) || i >= 56) && b[i])
      amx_emu::fault("_tile_loadconfig", "reserved byte not zero (#GP)", -1);
  for (int t = 0; t < amx_emu::kTiles; ++t) {
    const int colsb = b[16 + 2 * t] | (b[17 + 2 * t] << 8), rows = b[48 + t];
    if (rows > amx_emu::kMaxRows || colsb > amx_emu::kMaxColsb || (rows == 0) != (colsb == 0))
      amx_emu::fault("_tile_loadconfig", "invalid tile shape (#GP)", t);
    s.rows[t] = rows;
    s.colsb[t] = colsb;
  }
  s.start_row = b[1];
  s.configured = true;
}

inline void _tile_release() { amx_emu::init_state(amx_emu::state()); }

inline void _tile_zero(int t) {
  amx_emu::State& s = amx_emu::use("_tile_zero", t);
  std::memset(s.data[t], 0, sizeof(s.data[t]));
  s.start_row = 0;
}

inline void _tile_loadd(int t, const void* base, int64_t stride) {
  amx_emu::State& s = amx_emu::use("_tile_loadd", t);
  for (int r = s.start_row; r < s.rows[t]; ++r)
    std::memcpy(s.data[t][r], static_cast<const uint8_t*>(base) + r * stride, s.colsb[t]);
  amx_emu::zero_outside(s, t);
  s.start_row = 0;
}

inline void _tile_stored(int t, void* base, int64_t stride) {
  amx_emu::State& s = amx_emu::use("_tile_stored", t);
  for (int r = s.start_row; r < s.rows[t]; ++r)
    std::memcpy(static_cast<uint8_t*>(base) + r * stride, s.data[t][r], s.colsb[t]);
  s.start_row = 0;
}

// TDPBUSD: C[m].dword[n] += sum_{i<4} zx(A[m].byte[4k+i]) * sx(B[k].byte[4n+i]) over
// k < colsb(A)/4, for m < rows(C), n < colsb(C)/4; int32 wrap-around, no saturation.
inline void _tile_dpbusd(int c, int a, int b) {
  const char* op = "_tile_dpbusd";
  amx_emu::State& s = amx_emu::use(op, c);
  amx_emu::use(op, a);
  amx_emu::use(op, b);
  if (c == a || c == b || a == b) amx_emu::fault(op, "operands must be distinct tiles (#UD)", c);
  if (s.colsb[c] % 4 || s.colsb[a] % 4 || s.rows[c] != s.rows[a] ||
      s.colsb[a] / 4 != s.rows[b] || s.colsb[c] != s.colsb[b])
    amx_emu::fault(op, "tile shapes do not match (#UD)", c);
  for (int m = 0; m < s.rows[c]; ++m) {
    for (int n = 0; n < s.colsb[c] / 4; ++n) {
      uint32_t acc;  // unsigned: wraps like the hardware, without signed-overflow UB
      std::memcpy(&acc, s.data[c][m] + 4 * n, 4);
      for (int k = 0; k < s.colsb[a] / 4; ++k) {
        int32_t quad = 0;  // |4 * 255 * -128| fits int32
        for (int i = 0; i < 4; ++i)
          quad += static_cast<int32_t>(s.data[a][m][4 * k + i]) *
                  static_cast<int32_t>(static_cast<int8_t>(s.data[b][k][4 * n + i]));
        acc += static_cast<uint32_t>(quad);
      }
      std::memcpy(s.data[c][m] + 4 * n, &acc, 4);
    }
  }
  amx_emu::zero_outside(s, c);
  s.start_row = 0;
}
