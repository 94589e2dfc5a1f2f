//! Finding where a JSON string's plain run ends: the first `"`, `\` or control character
//! (below 0x20, which JSON forbids unescaped in a string), sixteen bytes at a time. Strings in
//! CloudTrail records are short (keys, names, ARNs), so the search is inline rather than a call
//! into a general-purpose byte finder: one vector compare settles most strings.
//!
//! SSE2 on x86_64 and NEON on aarch64 are part of those targets' baselines, so no run-time
//! detection is needed; other targets take the scalar loop.
//!
//! A scan that asks again and again within one text (the splitter, for every string of a
//! record, and the builder) uses [`Specials`], which finds the special bytes of a whole block
//! (64 bytes on x86_64) at once and answers the next questions in that block with a shift: a
//! CloudTrail string and its punctuation are about a dozen bytes, so one block serves several.

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

/// Whether `s` holds a `"`, `\\` or byte below 0x20: [`find_special`] without the position, for
/// strings written out (an alert's fields), which are mostly plain and short. Sixteen bytes at a
/// time by a vector compare, the last sixteen overlapping those before; fewer than sixteen as
/// overlapping words of eight or four bytes, each tested for all three kinds of byte at once.
/// Only a string of up to three bytes is looked at a byte at a time.
#[inline]
pub fn has_special(s: &[u8]) -> bool {
    let n = s.len();
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if n >= 16 {
        let mut any = 0;
        let mut i = 0;
        while i + 16 < n {
            // SAFETY: `i + 16 < n`: the sixteen bytes read are inside `s`.
            any |= unsafe { mask16::<false>(s.as_ptr().add(i)) };
            i += 16;
        }
        // SAFETY: `n >= 16`: the last sixteen bytes are inside `s`.
        any |= unsafe { mask16::<false>(s.as_ptr().add(n - 16)) };
        return any != 0;
    }
    let word = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let half = |at: usize| {
        u64::from(u32::from_le_bytes(
            s[at..at + 4].try_into().unwrap_or_default(),
        ))
    };
    match n {
        8.. => (0..n)
            .step_by(8)
            .any(|at| word_special(word(at.min(n - 8)))),
        4..=7 => word_special(half(0) | half(n - 4) << 32),
        _ => s.iter().any(|&b| special(b)),
    }
}

/// Whether one of the eight bytes of `w` is `"`, `\` or below 0x20. Each test is exact as a
/// yes or no ("has a byte below n", "has a zero byte", of which a borrow can only add flags above
/// a byte truly found).
#[inline(always)]
fn word_special(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    (below(w, 0x20) | zero(quote) | zero(backslash)) & HIGH != 0
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
    let (special, high) = masks16(p);
    special | if HIGH { high } else { 0 }
}

/// The special bytes of the sixteen at `p` (as [`mask16`] without `HIGH`) and, apart, the bytes
/// from 0x80 up.
///
/// # Safety
/// `p` must point at sixteen readable bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn masks16(p: *const u8) -> (u64, u64) {
    use std::arch::x86_64::*;
    let v = _mm_loadu_si128(p as *const __m128i);
    let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
    let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
    // v <= 0x1f (unsigned) exactly when min(v, 0x1f) == v.
    let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
    let any = _mm_or_si128(_mm_or_si128(quote, backslash), control);
    // A byte's top bit is set from 0x80 up: the byte mask of `v` itself.
    (
        _mm_movemask_epi8(any) as u32 as u64,
        _mm_movemask_epi8(v) as u32 as u64,
    )
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
    nibbles(any)
}

/// See the x86_64 version.
///
/// # Safety
/// `p` must point at sixteen readable bytes.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn masks16(p: *const u8) -> (u64, u64) {
    use std::arch::aarch64::*;
    let v = vld1q_u8(p);
    (mask16::<false>(p), nibbles(vcgeq_u8(v, vdupq_n_u8(0x80))))
}

/// A byte mask (each byte 0 or 0xff) as one nibble per byte, in byte order: each 16-bit lane
/// narrowed by four bits.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn nibbles(m: std::arch::aarch64::uint8x16_t) -> u64 {
    use std::arch::aarch64::*;
    let n = vshrn_n_u16(vreinterpretq_u16_u8(m), 4);
    vget_lane_u64(vreinterpret_u64_u8(n), 0)
}

/// Bytes per block of [`Specials`]: as many as a `u64` of lanes holds.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const BLOCK: usize = 64 / LANE_BITS;

/// The special bytes of one text, found a block at a time and remembered: [`Specials::next`]
/// gives what [`find_special`] gives from a position on, and a question whose answer lies in
/// the block at hand costs a shift instead of a vector compare. For one text only: a scan of
/// another text takes a new `Specials`.
#[derive(Debug, Clone)]
pub struct Specials {
    /// Where the remembered block starts in the text ([`Specials::NONE`]: no block yet).
    base: usize,
    /// The special bytes of the block, a lane each (see [`LANE_BITS`]).
    special: u64,
    /// Its bytes from 0x80 up.
    high: u64,
}

impl Default for Specials {
    fn default() -> Self {
        Specials::new()
    }
}

impl Specials {
    /// A base no position is within a block of: `i - NONE` wraps to `i + BLOCK + 1`.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    const NONE: usize = usize::MAX - BLOCK;

    pub const fn new() -> Self {
        Specials {
            #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
            base: Self::NONE,
            #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
            base: 0,
            special: 0,
            high: 0,
        }
    }

    /// The index in `s` of the first special byte at or after `i` (with `HIGH`, bytes from
    /// 0x80 up count too): `find_special::<HIGH>(&s[i..])` moved by `i`. `s` must be the text
    /// of every earlier call on this value.
    #[inline(always)]
    pub fn next<const HIGH: bool>(&mut self, s: &[u8], i: usize) -> Option<usize> {
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        {
            let lanes = |special: u64, high: u64| special | if HIGH { high } else { 0 };
            let off = i.wrapping_sub(self.base);
            if off < BLOCK {
                let m = lanes(self.special, self.high) >> (off * LANE_BITS);
                if m != 0 {
                    return Some(i + m.trailing_zeros() as usize / LANE_BITS);
                }
                // Nothing from `i` to the block's end: the next block follows it.
                self.base += BLOCK;
            } else {
                self.base = i;
            }
            // Here `self.base` is at most `s.len()`: it is `i`, or the end of a block read whole.
            while s.len().saturating_sub(self.base) >= BLOCK {
                let mut special = 0;
                let mut high = 0;
                for k in 0..BLOCK / 16 {
                    // SAFETY: `self.base + BLOCK <= s.len()`, so the sixteen bytes at
                    // `self.base + 16 * k` (k < BLOCK / 16) are inside `s`.
                    let (sp, hi) = unsafe { masks16(s.as_ptr().add(self.base + 16 * k)) };
                    special |= sp << (16 * LANE_BITS * k);
                    high |= hi << (16 * LANE_BITS * k);
                }
                self.special = special;
                self.high = high;
                // `i` is at or before the block's start, or (the first block, at `i`) at it.
                let off = i.saturating_sub(self.base);
                let m = lanes(special, high) >> (off * LANE_BITS);
                if m != 0 {
                    return Some(self.base + off + m.trailing_zeros() as usize / LANE_BITS);
                }
                self.base += BLOCK;
            }
            // Less than a block left: searched as it is, and nothing remembered.
            let from = i.max(self.base);
            self.base = Self::NONE;
            s.get(from..)
                .and_then(find_special::<HIGH>)
                .map(|j| from + j)
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            s.get(i..).and_then(find_special::<HIGH>).map(|j| i + j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `has_special` tells what a byte-at-a-time look tells, for every byte at every place of
    /// strings of every length up to three vectors, among plain bytes next to the special ones
    /// (a borrow or a near miss would show there).
    #[test]
    fn has_special_agrees_with_a_byte_at_a_time_look() {
        let filler = [b'a', 0x7f, 0x80, 0xff, 0x21, 0x23, 0x5b, 0x5d, 0x20, 0xc3];
        for len in 0..=48 {
            let plain: Vec<u8> = (0..len).map(|i| filler[i % filler.len()]).collect();
            assert!(!has_special(&plain), "{plain:?}");
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = plain.clone();
                    s[at] = b;
                    assert_eq!(has_special(&s), s.iter().any(|&c| special(c)), "{s:?}");
                }
            }
        }
    }
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

    /// What [`Specials::next`] must give: the search from `i` of the plain function.
    fn from(s: &[u8], i: usize, high: bool) -> Option<usize> {
        reference(s.get(i..)?, high).map(|j| i + j)
    }

    #[test]
    fn specials_answer_within_and_across_blocks() {
        // Specials every 7 bytes over several blocks, asked for from every position in turn, as
        // the splitter does, and then from each found one on, as a scan of strings does.
        let mut s = vec![b'a'; 300];
        for at in (3..300).step_by(7) {
            s[at] = [b'"', b'\\', 0x01, 0xc3][at % 4];
        }
        for high in [false, true] {
            let mut sp = Specials::new();
            for i in 0..=s.len() + 2 {
                let got = if high {
                    sp.next::<true>(&s, i)
                } else {
                    sp.next::<false>(&s, i)
                };
                assert_eq!(got, from(&s, i, high), "from {i}, high {high}");
            }
        }
        // A long run with nothing special, then one at the very end, and past it.
        let mut long = vec![b'x'; 1000];
        long[999] = b'"';
        let mut sp = Specials::new();
        assert_eq!(sp.next::<true>(&long, 0), Some(999));
        assert_eq!(sp.next::<true>(&long, 999), Some(999));
        assert_eq!(sp.next::<true>(&long, 1000), None);
        assert_eq!(sp.next::<false>(&long, 5000), None);
        assert_eq!(Specials::new().next::<false>(&[], 0), None);
    }

    proptest! {
        #[test]
        fn agrees_with_a_byte_loop(s in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(find_special::<false>(&s), reference(&s, false));
            prop_assert_eq!(find_special::<true>(&s), reference(&s, true));
        }

        /// Any sequence of questions (forwards as a scan asks, with jumps, some backwards),
        /// with and without the bytes from 0x80 up, on text of few specials or many.
        #[test]
        fn specials_agree_with_the_plain_search(
            s in proptest::collection::vec(
                prop_oneof![8 => Just(b'a'), 1 => Just(b'"'), 1 => Just(0xe2u8), 1 => any::<u8>()],
                0..400,
            ),
            asks in proptest::collection::vec((0usize..420, any::<bool>(), any::<bool>()), 1..40),
        ) {
            let mut sp = Specials::new();
            let mut i = 0;
            for (jump, back, high) in asks {
                i = if back { jump } else { (i + jump % 70).min(s.len() + 1) };
                let got = if high { sp.next::<true>(&s, i) } else { sp.next::<false>(&s, i) };
                prop_assert_eq!(got, from(&s, i, high), "from {}, high {}", i, high);
                if let Some(j) = got {
                    i = j + 1;
                    let got = if high { sp.next::<true>(&s, i) } else { sp.next::<false>(&s, i) };
                    prop_assert_eq!(got, from(&s, i, high), "from {}, high {}", i, high);
                }
            }
        }
    }
}
