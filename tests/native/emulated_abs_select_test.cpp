// Checks the AVX-512 magnitude-selection kernels against the scalar oracle with the intrinsics
// emulated by SIMDe (tests/native/simde_immintrin, from the emulated-ISA test). Built and run by
// tests/test_emulated_abs_select.py on machines without AVX-512. Histograms, NaN flag, masks,
// in-place pruning (kept counts, tie quotas) and the bracket pass must match bit for bit.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>
#include "pyquant/kernels.h"
using namespace pyquant;
int passed = 0, failed = 0;
void check(bool ok, const char* what, long n) { if (ok) ++passed; else { ++failed; std::printf("FAILED %s n=%ld\n", what, n); } }
uint64_t s = 0x9E3779B97F4A7C15ull;
uint32_t nx() { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return (uint32_t)(s >> 11); }
int main() {
  const long sizes[] = {0, 1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 4099};
  const float sp[] = {0.0f, -0.0f, 1e-45f, 1.5f, -1.5f, INFINITY, -INFINITY, 3e38f};
  for (long n : sizes) for (int mode = 0; mode < 3; ++mode) {
    std::vector<float> x(n + 64);
    for (long i = 0; i < n; ++i) x[i] = mode == 0 ? (float)((int)(nx() % 2000001) - 1000000) / 1e5f
                                       : mode == 1 ? sp[nx() % 8] : 1.5f;
    std::vector<uint32_t> ha(1 << 16), hb(1 << 16);
    bool na = ref::f32_abs_histogram_hi(x.data(), n, ha.data());
    bool nb = avx512::f32_abs_histogram_hi(x.data(), n, hb.data());
    check(na == nb && ha == hb, "hist_hi", n);
    for (uint32_t hi : {0u, 0x3fc0u, 0xff00u}) {
      if (n) { uint32_t b; std::memcpy(&b, &x[n / 2], 4); hi = mode == 2 ? hi : ((b & 0x7fffffffu) >> 15); }
      std::vector<uint32_t> la(1 << 15), lb(1 << 15);
      ref::f32_abs_histogram_lo(x.data(), n, hi, la.data());
      avx512::f32_abs_histogram_lo(x.data(), n, hi, lb.data());
      check(la == lb, "hist_lo", n);
    }
    std::vector<float> xn = x; if (n) xn[n - 1] = NAN;
    std::vector<uint32_t> h2(1 << 16);
    check(avx512::f32_abs_histogram_hi(xn.data(), n, h2.data()) == (n > 0), "nan", n);
    for (int t = 0; t < 4; ++t) {
      uint32_t key; float v = n ? std::fabs(x[nx() % n]) : 1.0f; std::memcpy(&key, &v, 4);
      if (t == 3) key = 0x7fffffffu;
      for (long ties : {0L, 1L, 5L, 100000L}) {
        std::vector<uint8_t> ma(n + 64, 7), mb(n + 64, 7);
        int64_t ta = ties, tb = ties;
        ref::f32_abs_select_mask(x.data(), n, key, &ta, ma.data());
        avx512::f32_abs_select_mask(x.data(), n, key, &tb, mb.data());
        check(ma == mb && ta == tb, "mask", n);
        std::vector<float> pa = x, pb = x;
        ta = tb = ties;
        int64_t ka = ref::f32_abs_select_prune(pa.data(), n, key, &ta);
        int64_t kb = avx512::f32_abs_select_prune(pb.data(), n, key, &tb);
        check(ka == kb && ta == tb && std::memcmp(pa.data(), pb.data(), 4 * (n + 64)) == 0, "prune", n);
      }
      for (uint32_t lo : {0u, key > 1000 ? key - 1000 : 0u, key}) {
        std::vector<uint32_t> ba(n + 64), bb(n + 64);
        for (long cap : {0L, 3L, n}) {
          int64_t aa = 0, ab = 0; bool fa = false, fb = false;
          int64_t ca = ref::f32_abs_bracket(x.data(), n, lo, key, ba.data(), cap, &aa, &fa);
          int64_t cb = avx512::f32_abs_bracket(x.data(), n, lo, key, bb.data(), cap, &ab, &fb);
          long m = ca < cap ? ca : cap;
          check(ca == cb && aa == ab && fa == fb && std::memcmp(ba.data(), bb.data(), 4 * m) == 0, "bracket", n);
        }
      }
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
