//! The string search of `src/reader/strings.rs` against a byte loop: every byte value at every
//! position of buffers up to 80 bytes long, then 200,000 pseudo-random buffers, with and without
//! the stop at bytes beyond ASCII. Built for arm64, it checks the NEON path (run under
//! qemu-user by `scripts/check/arm64.sh`); built here, the SSE2 one.

#[allow(dead_code)]
#[path = "../../../../src/reader/strings.rs"]
mod strings;

fn reference(s: &[u8], high: bool) -> Option<usize> {
    s.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20 || high && b >= 0x80)
}

fn check(s: &[u8]) {
    assert_eq!(
        strings::find_special::<false>(s),
        reference(s, false),
        "{s:?}"
    );
    assert_eq!(
        strings::find_special::<true>(s),
        reference(s, true),
        "{s:?}"
    );
}

fn main() {
    let mut searches = 0u64;
    for len in 0..80usize {
        for at in 0..len {
            for b in 0..=255u8 {
                let mut s = vec![b'a'; len];
                s[at] = b;
                check(&s);
                searches += 2;
            }
        }
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 100) as usize;
        let s: Vec<u8> = (0..len)
            .map(|k| {
                let v = (x >> (k % 56)) as u8;
                if v % 3 == 0 {
                    v
                } else {
                    b'a' + v % 26
                }
            })
            .collect();
        check(&s);
        searches += 2;
    }
    let path = if cfg!(target_arch = "aarch64") {
        "NEON"
    } else if cfg!(target_arch = "x86_64") {
        "SSE2"
    } else {
        "scalar"
    };
    println!(
        "{} ({path}): {searches} searches agree with the byte loop",
        std::env::consts::ARCH
    );
}
