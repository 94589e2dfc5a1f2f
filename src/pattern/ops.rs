//! The value-level operators that need more than a comparison: wildcards, numeric ranges, CIDR
//! blocks, and case-insensitive comparison.

use std::net::IpAddr;

use caseless::Caseless;
use unicode_normalization::UnicodeNormalization;

/// A compiled `wildcard` value: literal segments separated by `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wildcard {
    /// Literal runs; a `*` stands between each two. `["a", "", "b"]` is `a**b` (refused at
    /// compile time), `["", "x"]` is `*x`.
    segments: Vec<String>,
}

impl Wildcard {
    /// Parses a wildcard value: `*` any run, `\*` a literal star, `\\` a backslash; any other
    /// escape and two consecutive `*` are refused.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut segments = vec![String::new()];
        let mut chars = text.chars();
        let mut previous_star = false;
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if previous_star {
                        return Err(format!(
                            "wildcard {text:?} has consecutive '*' characters, which are not allowed"
                        ));
                    }
                    segments.push(String::new());
                    previous_star = true;
                    continue;
                }
                '\\' => match chars.next() {
                    Some(escaped @ ('*' | '\\')) => push(&mut segments, escaped),
                    Some(other) => {
                        return Err(format!(
                            "wildcard {text:?} escapes {other:?}; only '\\*' and '\\\\' are allowed"
                        ))
                    }
                    None => {
                        return Err(format!(
                            "wildcard {text:?} ends with a lone backslash; write '\\\\' for a backslash"
                        ))
                    }
                },
                other => push(&mut segments, other),
            }
            previous_star = false;
        }
        Ok(Wildcard { segments })
    }

    /// `(Some(text), _)` when there is no `*` at all (the wildcard is an exact value), and the
    /// literal text before the first `*` and after the last.
    pub(crate) fn literals(&self) -> (Option<&str>, (&str, &str)) {
        let first = self.segments.first().map_or("", String::as_str);
        let last = self.segments.last().map_or("", String::as_str);
        let whole = (self.segments.len() == 1).then_some(first);
        (whole, (first, last))
    }

    pub(crate) fn matches(&self, value: &str) -> bool {
        let (first, rest) = match self.segments.split_first() {
            Some(split) => split,
            None => return value.is_empty(),
        };
        let Some(mut remaining) = value.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            // No star at all: an exact match.
            return remaining.is_empty();
        };
        for segment in middle {
            match remaining.find(segment.as_str()) {
                Some(at) => remaining = &remaining[at + segment.len()..],
                None => return false,
            }
        }
        remaining.ends_with(last.as_str())
    }
}

impl std::fmt::Display for Wildcard {
    /// The wildcard as written: `*` between segments, literal `*` and `\` escaped.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str("*")?;
            }
            for c in segment.chars() {
                if matches!(c, '*' | '\\') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

fn push(segments: &mut [String], c: char) {
    if let Some(last) = segments.last_mut() {
        last.push(c);
    }
}

/// A numeric range with at most one lower and one upper bound (`=` is both, closed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    pub(crate) lower: Option<Bound>,
    pub(crate) upper: Option<Bound>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bound {
    pub(crate) value: f64,
    pub(crate) inclusive: bool,
}

impl Range {
    pub(crate) fn contains(&self, x: f64) -> bool {
        let above = self.lower.is_none_or(|b| {
            if b.inclusive {
                x >= b.value
            } else {
                x > b.value
            }
        });
        let below = self.upper.is_none_or(|b| {
            if b.inclusive {
                x <= b.value
            } else {
                x < b.value
            }
        });
        above && below
    }
}

impl std::fmt::Display for Range {
    /// `> 0 and <= 5`, `= 3`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.lower, self.upper) {
            (Some(lo), Some(hi)) if lo.value == hi.value => write!(f, "= {}", lo.value),
            (lower, upper) => {
                let lower =
                    lower.map(|b| format!("{} {}", if b.inclusive { ">=" } else { ">" }, b.value));
                let upper =
                    upper.map(|b| format!("{} {}", if b.inclusive { "<=" } else { "<" }, b.value));
                let parts: Vec<String> = lower.into_iter().chain(upper).collect();
                f.write_str(&parts.join(" and "))
            }
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.bits)
    }
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    network: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x:y::/n` or a bare address (a single host). Host bits may be set,
    /// as EventBridge allows; they are masked off.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (address, bits) = match text.split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IPv4 or IPv6 address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => match b.parse::<u8>() {
                Ok(n) if n <= max && !b.starts_with('+') => n,
                _ => {
                    return Err(format!(
                        "prefix length {b:?} is not a number from 0 to {max}"
                    ))
                }
            },
        };
        let network = mask(network, bits);
        Ok(Cidr { network, bits })
    }

    pub(crate) fn contains(&self, value: &str) -> bool {
        match value.parse::<IpAddr>() {
            Ok(ip) if ip.is_ipv4() == self.network.is_ipv4() => mask(ip, self.bits) == self.network,
            _ => false,
        }
    }
}

fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & m).into())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

/// Case folding for `equals-ignore-case` and its prefix/suffix forms: canonical caseless
/// matching (Unicode 3.13, D145), `NFD(fold(NFD(s)))` with full case folding (CaseFolding.txt,
/// statuses C and F), so that `ß` matches `SS` and `ΐ` matches `Ϊ́` however either is
/// composed.
pub(crate) fn fold(s: &str) -> Box<str> {
    let mut out = String::new();
    fold_into(s, &mut out);
    out.into_boxed_str()
}

/// [`fold`] into a buffer (cleared first); ASCII quickly.
pub(crate) fn fold_into(s: &str, out: &mut String) {
    out.clear();
    if s.is_ascii() {
        out.extend(s.chars().map(|c| c.to_ascii_lowercase()));
    } else {
        out.extend(folded_chars(s));
    }
}

fn folded_chars(s: &str) -> impl Iterator<Item = char> + '_ {
    s.nfd().default_case_fold().nfd()
}

/// `value` equals `folded` (already folded) ignoring case.
pub(crate) fn eq_ignore_case(value: &str, folded: &str) -> bool {
    if value.is_ascii() && folded.is_ascii() {
        return value.eq_ignore_ascii_case(folded);
    }
    folded_chars(value).eq(folded.chars())
}

/// `value` starts with `folded` (already folded) ignoring case.
pub(crate) fn starts_with_ignore_case(value: &str, folded: &str) -> bool {
    if value.is_ascii() && folded.is_ascii() {
        return value.len() >= folded.len()
            && value.as_bytes()[..folded.len()].eq_ignore_ascii_case(folded.as_bytes());
    }
    let mut value = folded_chars(value);
    folded.chars().all(|c| value.next() == Some(c))
}

/// `value` ends with `folded` (already folded) ignoring case.
pub(crate) fn ends_with_ignore_case(value: &str, folded: &str) -> bool {
    if value.is_ascii() && folded.is_ascii() {
        return value.len() >= folded.len()
            && value.as_bytes()[value.len() - folded.len()..]
                .eq_ignore_ascii_case(folded.as_bytes());
    }
    let value: String = folded_chars(value).collect();
    value.ends_with(folded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_semantics() {
        let w = |p: &str| Wildcard::parse(p).unwrap();
        assert!(w("*").matches(""));
        assert!(w("*").matches("anything"));
        assert!(w("a*b").matches("ab"));
        assert!(w("a*b").matches("a-x-b"));
        assert!(!w("a*b").matches("a-x-bc"));
        assert!(w("*.png").matches("x.png"));
        assert!(!w("*.png").matches("x.png.gz"));
        assert!(w("a*a").matches("aa"));
        assert!(!w("a*a").matches("a"));
        assert!(w("a\\*b").matches("a*b"));
        assert!(!w("a\\*b").matches("axb"));
        assert!(w("a\\\\b").matches("a\\b"));
        assert!(w("").matches(""));
        assert!(!w("").matches("x"));
        assert!(w("*/lib/*").matches("/usr/lib/x"));
    }

    #[test]
    fn wildcard_refusals() {
        assert!(Wildcard::parse("a**b").unwrap_err().contains("consecutive"));
        assert!(Wildcard::parse("a\\nb").unwrap_err().contains("escapes"));
        assert!(Wildcard::parse("a\\")
            .unwrap_err()
            .contains("lone backslash"));
        // An escaped star next to a wildcard star is two different things.
        assert!(Wildcard::parse("a\\**").is_ok());
    }

    #[test]
    fn cidr_v4_and_v6() {
        let c = Cidr::parse("10.0.0.0/24").unwrap();
        assert!(c.contains("10.0.0.255"));
        assert!(!c.contains("10.0.1.0"));
        assert!(!c.contains("not an ip"));
        assert!(!c.contains("::ffff:10.0.0.1"));
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains("2001:db8:ffff::1"));
        assert!(!c.contains("2001:db9::1"));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("203.0.113.9"));
        assert!(Cidr::parse("192.0.2.7").unwrap().contains("192.0.2.7"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0/8").is_err());
    }

    #[test]
    fn ignore_case_helpers() {
        assert!(eq_ignore_case("AbC", "abc"));
        assert!(eq_ignore_case("ÉTÉ", &fold("été")));
        assert!(starts_with_ignore_case("EventBridge", "eventb"));
        assert!(!starts_with_ignore_case("Ev", "eventb"));
        assert!(ends_with_ignore_case("EventBRIDGE", "tbridge"));
        assert!(ends_with_ignore_case("CAFÉ", &fold("fé")));
    }

    /// Full case folding, and composition does not matter: the reference engine's own cases
    /// (aws/event-ruler ByteMachineTest, equals-ignore-case with characters whose cases differ
    /// in length) and the issue's.
    #[test]
    fn full_unicode_case_folding() {
        let same = |pattern: &str, value: &str| eq_ignore_case(value, &fold(pattern));
        assert!(same("ß", "SS") && same("ß", "ss") && same("SS", "ß"));
        // ΐ (U+0390) against Ϊ́ composed (U+03AA U+0301) and decomposed (U+0399 U+0308 U+0301).
        assert!(same("\u{390}", "\u{3aa}\u{301}"));
        assert!(same("\u{390}", "\u{399}\u{308}\u{301}"));
        let pattern = "ΰɀɐΐΰῆK";
        for value in ["Ϋ́ɀⱯΐΫ́Η͂k", "ΰⱿɐΪ́ΰῆK", "Ϋ́ⱿⱯΪ́Ϋ́ῆk", "ΰɀɐΐΰΗ͂K"]
        {
            assert!(same(pattern, value), "{value}");
        }
        for value in ["", "Ϋ́ȿⱯΐΫ́Η͂k", "ΰⱾɐΪ́ΰῆK"] {
            assert!(!same(pattern, value), "{value}");
        }
        assert!(same("12Ⱥ", "12ⱥ") && !same("12Ⱥ", "12a"));
        assert!(starts_with_ignore_case("STRASSE-1", &fold("straß")));
        assert!(ends_with_ignore_case("die Straße", &fold("STRASSE")));
        assert!(starts_with_ignore_case("Ϊ́x", &fold("\u{390}")));
        // The Kelvin sign folds to an ASCII k.
        assert!(same("\u{212a}", "k") && same("k", "\u{212a}"));
    }
}
