// a * b / c for the simulation's rate arithmetic (nanoseconds x bits per
// second), whose product overflows 64 bits. The product is kept exact in
// 128 bits made of 64-bit halves, because 32-bit targets (armhf) have no
// unsigned __int128; one code path on every target, so the host suite tests
// what the boards run. Called per batch, never per packet, so the
// bit-by-bit division costs nothing that matters.
#pragma once

#include <stdint.h>

namespace dmx {
namespace sim {

struct MulDivResult {
  uint64_t quotient;   // low 64 bits of floor(a * b / c)
  uint64_t remainder;  // (a * b) mod c
};

// c must not be 0.
inline MulDivResult MulDiv(uint64_t a, uint64_t b, uint64_t c) {
  // 64 x 64 -> 128 from 32-bit halves: a * b = high * 2^64 + low.
  const uint64_t a_lo = a & 0xffffffffu, a_hi = a >> 32;
  const uint64_t b_lo = b & 0xffffffffu, b_hi = b >> 32;
  const uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo;
  const uint64_t lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
  const uint64_t middle =
      (lo_lo >> 32) + (hi_lo & 0xffffffffu) + (lo_hi & 0xffffffffu);
  const uint64_t low = (middle << 32) | (lo_lo & 0xffffffffu);
  const uint64_t high = hi_hi + (hi_lo >> 32) + (lo_hi >> 32) + (middle >> 32);
  // Long division, one bit of `low` at a time. Starting from high % c keeps
  // the running remainder below c; a carry out of bit 63 means it exceeded
  // 2^64 > c, and the wrapping subtraction is then still exact.
  uint64_t remainder = high % c, quotient = 0;
  for (int bit = 63; bit >= 0; --bit) {
    const bool carry = remainder >> 63;
    remainder = (remainder << 1) | ((low >> bit) & 1);
    quotient <<= 1;
    if (carry || remainder >= c) {
      remainder -= c;
      quotient |= 1;
    }
  }
  return {quotient, remainder};
}

inline uint64_t MulDivFloor(uint64_t a, uint64_t b, uint64_t c) {
  return MulDiv(a, b, c).quotient;
}

inline uint64_t MulDivCeil(uint64_t a, uint64_t b, uint64_t c) {
  const MulDivResult r = MulDiv(a, b, c);
  return r.quotient + (r.remainder != 0);
}

}  // namespace sim
}  // namespace dmx
