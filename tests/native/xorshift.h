// The deterministic generator the native test drivers share (xorshift64, top bits).
#pragma once

#include <cstdint>

inline uint64_t& xorshift_state() {
  static uint64_t state = 0x9E3779B97F4A7C15ull;
  return state;
}

inline uint32_t next_u32() {
  uint64_t& s = xorshift_state();
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return static_cast<uint32_t>(s >> 11);
}
