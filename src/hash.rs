//! The hasher of the small maps looked up several times per record (the rule index's value
//! tables): their keys come from the rules, not from records, so SipHash's protection against
//! flooding buys nothing and its set-up costs more than the lookup. Eight bytes are mixed at a
//! time (the multiply-rotate scheme of rustc's FxHasher). Also the byte-string equality that the
//! index's memo of values and the reader's key table use ([`same_bytes`]), and the reading of
//! eight bytes as a number that all of them share ([`word_at`], [`padded_word`]). And
//! [`stable_hash`], the FNV-1a hash of ids kept outside the process (state table keys), which
//! must not change from one build to the next.

use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[derive(Default)]
pub struct WordHasher(u64);

impl WordHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.add(word_at(w, 0));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            self.add(padded_word(rest));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

pub type FastHash = BuildHasherDefault<WordHasher>;

/// The eight bytes of `s` from `i`, as a little-endian number (`s` must hold them).
#[inline(always)]
pub fn word_at(s: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[i..i + 8]);
    u64::from_le_bytes(w)
}

/// The first eight bytes of `s` (fewer, padded with zeros), as a little-endian number.
#[inline]
pub fn padded_word(s: &[u8]) -> u64 {
    // Loads of fixed sizes, overlapping where the length is between two (the bytes they
    // share are the same): copying a length only known at run time was a call to `memcpy`
    // for every key the reader looked up.
    let n = s.len();
    if n >= 8 {
        word_at(s, 0)
    } else if n >= 4 {
        let lo = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64;
        let hi = u32::from_le_bytes([s[n - 4], s[n - 3], s[n - 2], s[n - 1]]) as u64;
        lo | hi << ((n - 4) * 8)
    } else if n > 0 {
        s[0] as u64 | (s[n / 2] as u64) << (n / 2 * 8) | (s[n - 1] as u64) << ((n - 1) * 8)
    } else {
        0
    }
}

/// Whether two byte strings are equal, compared eight bytes at a time as numbers: for the
/// short strings compared per record (keys, event names, ARNs), without a call into the C
/// library's `memcmp`.
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut i = 0;
    while i + 8 < n {
        if word_at(a, i) != word_at(b, i) {
            return false;
        }
        i += 8;
    }
    // The last eight bytes (overlapping the words before when the length is not a multiple).
    word_at(a, n - 8) == word_at(b, n - 8)
}

/// FNV-1a, 64 bits: a hash stable across versions and machines (unlike the standard library's
/// hasher), for ids kept outside the process: the state store's keys, shadow objects' names,
/// the rule set's fingerprint.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_word_is_the_first_bytes_padded_with_zeros() {
        let base: Vec<u8> = (1..=12u8).collect();
        for n in 0..=base.len() {
            let mut w = [0u8; 8];
            let k = n.min(8);
            w[..k].copy_from_slice(&base[..k]);
            assert_eq!(padded_word(&base[..n]), u64::from_le_bytes(w), "{n}");
        }
    }

    #[test]
    fn same_bytes_is_equality() {
        let base: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..base.len() {
            let a = &base[..n];
            assert!(same_bytes(a, a), "{n}");
            assert!(!same_bytes(a, &base[..n + 1]), "{n}: lengths differ");
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!same_bytes(a, &b), "{n}: differs at {at}");
            }
        }
    }
}
