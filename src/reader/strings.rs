//! Finding where a JSON string's plain run ends: the first `"`, `\` or control character
//! (below 0x20, which JSON forbids unescaped in a string), sixteen bytes at a time. Strings in
//! CloudTrail records are short (keys, names, ARNs), so the search is inline rather than a call
//! into a general-purpose byte finder: one vector compare settles most strings.
//!
//! SSE2 on x86_64 and NEON on aarch64 are part of those targets' baselines, so no run-time
//! detection is needed; other targets take the scalar loop.

/// Whether `b` ends a string's plain run.
#[inline(always)]
fn special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// The index of the first `"`, `\` or byte below 0x20 in `s`; with `HIGH`, also of the first
/// byte from 0x80 up (which only UTF-8 beyond ASCII has), so that a record whose strings are
/// all ASCII is known to be UTF-8 without a pass of its own.
#[inline]
pub fn find_special<const HIGH: bool>(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        while i + 16 <= s.len() {
            // SAFETY: `i + 16 <= s.len()`, so the sixteen bytes read are inside `s`.
            let mask = unsafe { mask16::<HIGH>(s.as_ptr().add(i)) };
            if mask != 0 {
                return Some(i + mask.trailing_zeros() as usize / LANE_BITS);
            }
            i += 16;
        }
    }
    s[i..]
        .iter()
        .position(|&b| special(b) || HIGH && b >= 0x80)
        .map(|j| i + j)
}

/// Bits per byte in the mask `mask16` returns.
#[cfg(target_arch = "x86_64")]
const LANE_BITS: usize = 1;
#[cfg(target_arch = "aarch64")]
const LANE_BITS: usize = 4;

/// A bit (x86_64) or a nibble (aarch64) set for each special byte of the sixteen at `p`, the
/// first byte lowest.
///
/// # Safety
/// `p` must point at sixteen readable bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn mask16<const HIGH: bool>(p: *const u8) -> u64 {
    use std::arch::x86_64::*;
    let v = _mm_loadu_si128(p as *const __m128i);
    let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
    let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
    // v <= 0x1f (unsigned) exactly when min(v, 0x1f) == v.
    let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
    let any = _mm_or_si128(_mm_or_si128(quote, backslash), control);
    // A byte's top bit is set from 0x80 up: the byte mask of `v` itself.
    let high = if HIGH { _mm_movemask_epi8(v) } else { 0 };
    (_mm_movemask_epi8(any) | high) as u32 as u64
}

/// See the x86_64 version.
///
/// # Safety
/// `p` must point at sixteen readable bytes.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn mask16<const HIGH: bool>(p: *const u8) -> u64 {
    use std::arch::aarch64::*;
    let v = vld1q_u8(p);
    let quote = vceqq_u8(v, vdupq_n_u8(b'"'));
    let backslash = vceqq_u8(v, vdupq_n_u8(b'\\'));
    let control = vcltq_u8(v, vdupq_n_u8(0x20));
    let mut any = vorrq_u8(vorrq_u8(quote, backslash), control);
    if HIGH {
        any = vorrq_u8(any, vcgeq_u8(v, vdupq_n_u8(0x80)));
    }
    // Narrow each 16-bit lane by four bits: one nibble per byte, in byte order.
    let nibbles = vshrn_n_u16(vreinterpretq_u16_u8(any), 4);
    vget_lane_u64(vreinterpret_u64_u8(nibbles), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(s: &[u8], high: bool) -> Option<usize> {
        s.iter().position(|&b| special(b) || high && b >= 0x80)
    }

    #[test]
    fn finds_each_kind_at_every_position() {
        for len in 0..70 {
            for at in 0..len {
                for b in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    assert_eq!(
                        find_special::<false>(&s),
                        Some(at),
                        "len {len} at {at} byte {b:#x}"
                    );
                    assert_eq!(
                        find_special::<true>(&s),
                        Some(at),
                        "len {len} at {at} byte {b:#x}"
                    );
                }
                for b in [0x80, 0xc3, 0xff] {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    assert_eq!(find_special::<false>(&s), None);
                    assert_eq!(
                        find_special::<true>(&s),
                        Some(at),
                        "len {len} at {at} byte {b:#x}"
                    );
                }
            }
            assert_eq!(find_special::<false>(&vec![b'a'; len]), None);
            assert_eq!(find_special::<true>(&vec![b'a'; len]), None);
        }
        // Bytes at the edges of the ranges are not special.
        let edge = [0x20u8, 0x21, 0x7f, 0x80, 0xff, b'#', b'[', b']', 0x5b, 0x5d];
        assert_eq!(find_special::<false>(&edge.repeat(5)), None);
        let ascii_edge = [0x20u8, 0x21, 0x7f, b'#', b'[', b']', 0x5b, 0x5d];
        assert_eq!(find_special::<true>(&ascii_edge.repeat(5)), None);
    }

    proptest! {
        #[test]
        fn agrees_with_a_byte_loop(s in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(find_special::<false>(&s), reference(&s, false));
            prop_assert_eq!(find_special::<true>(&s), reference(&s, true));
        }
    }
}
