//! Gzip (RFC 1952), one member or several, over a raw-deflate inflater: the members' headers
//! and trailers are read here, and each member's CRC-32 is computed with `crc32fast`, which
//! picks the CPU's widest carry-less multiply at run time (four times the speed of the CRC-32
//! that flate2's gzip reader uses with the zlib-rs backend: a twentieth of a scan's CPU time).
//!
//! A file small enough to be held whole ([`inflate_whole`]) is inflated in one call by
//! libdeflate, which does it a quarter faster than the streaming inflater on CloudTrail's files;
//! its header and trailer are read and checked here all the same, and anything short of a
//! whole, single, sound member is read again by the streaming reader, so that a fault is worded
//! as before.
//!
//! Faults of the data itself (a bad header, corrupt deflate data, a checksum or size that does
//! not match, a stream that ends inside a member) are `io::Error`s carrying a [`GzipFault`],
//! so that the caller can tell them from a fault of the stream below, whatever its kind.

use std::fmt;
use std::io::{self, BufRead, Read};

use flate2::{Decompress, FlushDecompress, Status};

/// What is wrong with the gzip data, and where.
#[derive(Debug)]
pub(crate) struct GzipFault(String);

impl fmt::Display for GzipFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GzipFault {}

/// Whether `e` is a fault of the gzip data (rather than of the stream below it).
pub(crate) fn is_gzip_fault(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<GzipFault>())
}

/// Header flags (RFC 1952, 2.3.1).
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const RESERVED: u8 = 0xE0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a member's header.
    Header,
    /// Inside a member's deflate data.
    Body,
    /// After a member's deflate data, before its trailer.
    Trailer,
    Done,
}

/// The decompressed bytes of a gzip stream: every member in turn, each checked against its
/// trailer. Anything after a member other than another member is a fault, as is a stream that
/// ends before its first member's trailer.
pub(crate) struct Gunzip<R: BufRead> {
    input: R,
    /// Made when a member's deflate data is first read: [`inflate_whole`] reads only the
    /// header through this type, and the streaming inflater's state (a window and tables,
    /// zeroed when made) cost it about 15,000 instructions a file.
    inflate: Option<Decompress>,
    state: State,
    /// The current member's CRC-32 and size (mod 2^32) so far.
    crc: crc32fast::Hasher,
    size: u32,
    /// The current member, from 1.
    member: u64,
    /// Compressed bytes consumed, for messages.
    read: u64,
}

impl<R: BufRead> Gunzip<R> {
    pub(crate) fn new(input: R) -> Self {
        Gunzip {
            input,
            inflate: None,
            state: State::Header,
            crc: crc32fast::Hasher::new(),
            size: 0,
            member: 1,
            read: 0,
        }
    }

    fn fault(&self, kind: io::ErrorKind, what: impl fmt::Display) -> io::Error {
        io::Error::new(
            kind,
            GzipFault(format!(
                "{what} (member {}, at compressed byte {})",
                self.member, self.read
            )),
        )
    }

    /// The next header byte, fed to the header's checksum.
    fn byte(&mut self, sum: &mut crc32fast::Hasher) -> io::Result<u8> {
        let b = match self.input.fill_buf()?.first() {
            Some(&b) => b,
            None => {
                return Err(self.fault(
                    io::ErrorKind::UnexpectedEof,
                    "the data ends inside a member's header",
                ))
            }
        };
        self.input.consume(1);
        self.read += 1;
        sum.update(&[b]);
        Ok(b)
    }

    fn bytes<const N: usize>(&mut self, sum: &mut crc32fast::Hasher) -> io::Result<[u8; N]> {
        let mut out = [0; N];
        for b in &mut out {
            *b = self.byte(sum)?;
        }
        Ok(out)
    }

    /// Reads a member's header, up to its deflate data.
    fn header(&mut self) -> io::Result<()> {
        let mut sum = crc32fast::Hasher::new();
        let [id1, id2, method, flags] = self.bytes::<4>(&mut sum)?;
        if [id1, id2] != [0x1f, 0x8b] {
            return Err(self.fault(
                io::ErrorKind::InvalidData,
                format_args!("not a gzip member: starts with {id1:#04x} {id2:#04x}, not 0x1f 0x8b"),
            ));
        }
        if method != 8 {
            return Err(self.fault(
                io::ErrorKind::InvalidData,
                format_args!("unknown compression method {method} (gzip knows only 8, deflate)"),
            ));
        }
        if flags & RESERVED != 0 {
            return Err(self.fault(
                io::ErrorKind::InvalidData,
                format_args!("reserved header flags set ({flags:#04x})"),
            ));
        }
        // Modification time, extra flags, operating system.
        self.bytes::<6>(&mut sum)?;
        if flags & FEXTRA != 0 {
            let len = u16::from_le_bytes(self.bytes::<2>(&mut sum)?);
            for _ in 0..len {
                self.byte(&mut sum)?;
            }
        }
        for flag in [FNAME, FCOMMENT] {
            if flags & flag != 0 {
                while self.byte(&mut sum)? != 0 {}
            }
        }
        if flags & FHCRC != 0 {
            let expected = sum.clone().finalize() as u16;
            let stored = u16::from_le_bytes(self.bytes::<2>(&mut sum)?);
            if stored != expected {
                return Err(self.fault(
                    io::ErrorKind::InvalidData,
                    format_args!(
                        "header checksum mismatch: stored {stored:#06x}, computed {expected:#06x}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Reads a member's trailer and checks it against what was inflated.
    fn trailer(&mut self) -> io::Result<()> {
        let mut sum = crc32fast::Hasher::new();
        let trailer = self.bytes::<8>(&mut sum).map_err(|e| {
            if is_gzip_fault(&e) {
                self.fault(
                    io::ErrorKind::UnexpectedEof,
                    "the data ends inside a member's trailer",
                )
            } else {
                e
            }
        })?;
        let stored_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let stored_size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        let crc = std::mem::take(&mut self.crc).finalize();
        if stored_crc != crc {
            return Err(self.fault(
                io::ErrorKind::InvalidData,
                format_args!("CRC-32 mismatch: stored {stored_crc:#010x}, computed {crc:#010x}"),
            ));
        }
        if stored_size != self.size {
            return Err(self.fault(
                io::ErrorKind::InvalidData,
                format_args!(
                    "size mismatch: stored {stored_size} (mod 2^32), inflated {}",
                    self.size
                ),
            ));
        }
        Ok(())
    }

    /// Inflates into `out` (not empty); `Ok(0)`: the member's deflate data ended.
    fn body(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let inflate = self.inflate.get_or_insert_with(|| Decompress::new(false));
        loop {
            let input = self.input.fill_buf()?;
            let at_end = input.is_empty();
            let (in_before, out_before) = (inflate.total_in(), inflate.total_out());
            let status = inflate
                .decompress(input, out, FlushDecompress::None)
                .map_err(|e| e.to_string());
            let used = (inflate.total_in() - in_before) as usize;
            let made = (inflate.total_out() - out_before) as usize;
            self.input.consume(used);
            self.read += used as u64;
            let status = match status {
                Ok(status) => status,
                Err(e) => {
                    return Err(self.fault(
                        io::ErrorKind::InvalidData,
                        format_args!("corrupt deflate data: {e}"),
                    ))
                }
            };
            self.crc.update(&out[..made]);
            self.size = self.size.wrapping_add(made as u32);
            if status == Status::StreamEnd {
                self.state = State::Trailer;
                return Ok(made);
            }
            if made > 0 {
                return Ok(made);
            }
            if at_end {
                return Err(self.fault(
                    io::ErrorKind::UnexpectedEof,
                    "the data ends inside a member's deflate data",
                ));
            }
            if used == 0 {
                // Input at hand, room for output, and neither moved: never spin on it.
                return Err(self.fault(io::ErrorKind::InvalidData, "the inflater is stuck"));
            }
        }
    }
}

/// libdeflate's decompressor state (about 10 KiB), one per thread, made on first use.
struct Libdeflate(std::ptr::NonNull<libdeflate_sys::libdeflate_decompressor>);

impl Drop for Libdeflate {
    fn drop(&mut self) {
        // SAFETY: allocated by `libdeflate_alloc_decompressor`, freed once, here.
        unsafe { libdeflate_sys::libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

thread_local! {
    static LIBDEFLATE: std::cell::RefCell<Option<Libdeflate>> =
        const { std::cell::RefCell::new(None) };
}

/// Inflates `data`, a whole gzip file, into `out` (replacing what it held) in one call, when
/// it is one member whose stored size is at most `max` bytes and whose header, deflate data and
/// trailer (CRC-32 and size) are all sound, with nothing after it. `false` otherwise (`out` then
/// holds nothing of use): the caller reads `data` with [`Gunzip`], which words the fault or
/// reads the several members.
pub(crate) fn inflate_whole(data: &[u8], out: &mut Vec<u8>, max: u64) -> bool {
    out.clear();
    let Some(&stored_size) = data.last_chunk::<4>() else {
        return false;
    };
    let stored_size = u32::from_le_bytes(stored_size);
    if u64::from(stored_size) > max {
        return false;
    }
    let mut header = Gunzip::new(data);
    if header.header().is_err() {
        return false;
    }
    let body = &data[header.read as usize..];
    let (mut used, mut made) = (0usize, 0usize);
    out.reserve(stored_size as usize);
    let result = LIBDEFLATE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            // SAFETY: no preconditions; NULL (out of memory) is handled.
            let p = unsafe { libdeflate_sys::libdeflate_alloc_decompressor() };
            *cell = Some(Libdeflate(std::ptr::NonNull::new(p)?));
        }
        let d = cell.as_ref()?.0.as_ptr();
        // SAFETY: `body` is readable for its length; `out` has room for `stored_size` bytes,
        // which libdeflate writes at most (and reads back only what it wrote); `used` and
        // `made` are written on success.
        Some(unsafe {
            libdeflate_sys::libdeflate_deflate_decompress_ex(
                d,
                body.as_ptr().cast(),
                body.len(),
                out.as_mut_ptr().cast(),
                stored_size as usize,
                &mut used,
                &mut made,
            )
        })
    });
    if result != Some(libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS) {
        return false;
    }
    // SAFETY: libdeflate wrote `made` bytes (at most `stored_size`, the room reserved).
    unsafe { out.set_len(made) };
    let Some(trailer) = body.get(used..).and_then(|t| t.first_chunk::<8>()) else {
        return false;
    };
    let stored_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    body.len() == used + 8 && made == stored_size as usize && crc32fast::hash(out) == stored_crc
}

impl<R: BufRead> Read for Gunzip<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Header => {
                    self.header()?;
                    self.state = State::Body;
                }
                State::Body => {
                    let made = self.body(out)?;
                    if made > 0 {
                        return Ok(made);
                    }
                }
                State::Trailer => {
                    self.trailer()?;
                    if self.input.fill_buf()?.is_empty() {
                        self.state = State::Done;
                    } else {
                        if let Some(inflate) = &mut self.inflate {
                            inflate.reset(false);
                        }
                        self.size = 0;
                        self.member += 1;
                        self.state = State::Header;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::{DeflateEncoder, GzEncoder};
    use flate2::{Compression, GzBuilder};
    use proptest::prelude::*;
    use std::io::{BufReader, Write};

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// Reads all of `data` through a buffer of `buffer` bytes, `step` bytes at a time.
    fn gunzip(data: &[u8], buffer: usize, step: usize) -> io::Result<Vec<u8>> {
        let mut g = Gunzip::new(BufReader::with_capacity(buffer, data));
        let mut out = Vec::new();
        let mut chunk = vec![0; step];
        loop {
            match g.read(&mut chunk)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// `members` gzip members of `content`, then bytes changed (each `xor`ed at its index).
    fn damaged(content: &[u8], members: usize, damage: &[(prop::sample::Index, u8)]) -> Vec<u8> {
        let mut data = Vec::new();
        for _ in 0..members {
            data.extend(gzip(content));
        }
        for (at, xor) in damage {
            let i = at.index(data.len());
            data[i] ^= xor;
        }
        data
    }

    fn fault(data: &[u8]) -> String {
        let e = gunzip(data, 64, 7).expect_err("a fault");
        assert!(is_gzip_fault(&e), "{e:?}");
        e.to_string()
    }

    #[test]
    fn members_and_every_header_field() {
        let text = b"{\"Records\":[]}".repeat(100);
        let mut data = gzip(&text[..500]);
        // Extra field, name and comment.
        let mut enc = GzBuilder::new()
            .extra(vec![1, 2, 3, 4])
            .filename("log.json")
            .comment("a comment")
            .write(Vec::new(), Compression::best());
        enc.write_all(&text[500..900]).unwrap();
        data.extend(enc.finish().unwrap());
        // A header checksum, written by hand (GzBuilder does not).
        let mut header = vec![0x1f, 0x8b, 8, FHCRC | FNAME, 0, 0, 0, 0, 0, 255];
        header.extend_from_slice(b"name\0");
        let hcrc = crc32fast::hash(&header) as u16;
        header.extend_from_slice(&hcrc.to_le_bytes());
        let mut deflate = DeflateEncoder::new(header, Compression::default());
        deflate.write_all(&text[900..]).unwrap();
        let mut member = deflate.finish().unwrap();
        member.extend_from_slice(&crc32fast::hash(&text[900..]).to_le_bytes());
        member.extend_from_slice(&((text.len() - 900) as u32).to_le_bytes());
        data.extend_from_slice(&member);
        // An empty member.
        data.extend(gzip(b""));
        for (buffer, step) in [(1, 1), (3, 5), (64, 1), (8192, 100_000)] {
            assert_eq!(
                gunzip(&data, buffer, step).unwrap(),
                text,
                "{buffer} {step}"
            );
        }
        // The header checksum is checked.
        let mut bad = member.clone();
        bad[15] ^= 1;
        assert!(fault(&bad).contains("header checksum mismatch"));
    }

    #[test]
    fn faults_say_what_and_where() {
        let text = b"0123456789".repeat(1000);
        let good = gzip(&text);
        let n = good.len();
        let with = |at: usize, byte: u8| {
            let mut d = good.clone();
            d[at] = byte;
            d
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..5].to_vec(), "ends inside a member's header"),
            (
                good[..n / 2].to_vec(),
                "ends inside a member's deflate data",
            ),
            (good[..n - 3].to_vec(), "ends inside a member's trailer"),
            (with(2, 7), "unknown compression method 7"),
            (with(3, 0x20), "reserved header flags"),
            (with(n - 8, good[n - 8] ^ 1), "CRC-32 mismatch"),
            (with(n - 4, good[n - 4] ^ 1), "size mismatch"),
            ([&good[..], b"garbage"].concat(), "not a gzip member"),
            ([&good[..], &good[..], &[0x1f][..]].concat(), "member 3"),
            (with(10, 0xff), "corrupt deflate data"),
        ];
        for (data, says) in cases {
            let msg = fault(&data);
            assert!(msg.contains(says), "{msg:?} should say {says:?}");
            assert!(msg.contains("at compressed byte"), "{msg}");
        }
    }

    /// A fault of the stream below is passed on as it is, whatever its kind.
    #[test]
    fn faults_below_are_not_gzip_faults() {
        struct Breaks<'a>(&'a [u8]);
        impl Read for Breaks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "from below"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let data = gzip(&b"abc".repeat(10_000));
        for cut in [3, data.len() / 2, data.len() - 2] {
            let mut g = Gunzip::new(BufReader::with_capacity(16, Breaks(&data[..cut])));
            let e = io::copy(&mut g, &mut io::sink()).expect_err("broken");
            assert!(!is_gzip_fault(&e), "{e:?}");
            assert_eq!(e.to_string(), "from below");
        }
    }

    /// Reading a header makes no streaming inflater (the one-call path reads each file's
    /// header through `Gunzip`); reading the body makes one, and a second member reuses it.
    #[test]
    fn the_streaming_inflater_is_made_only_for_a_body() {
        let text = b"{\"Records\":[]}".repeat(50);
        let one = gzip(&text);
        let mut g = Gunzip::new(&one[..]);
        g.header().unwrap();
        assert!(g.inflate.is_none());
        let two = [gzip(&text), gzip(&text)].concat();
        let mut g = Gunzip::new(&two[..]);
        let mut out = Vec::new();
        g.read_to_end(&mut out).unwrap();
        assert_eq!(out, [&text[..], &text[..]].concat());
        assert!(g.inflate.is_some());
    }

    /// The one-call path takes exactly the files that are one sound member, and reads them as
    /// the streaming reader does; everything else is left to the streaming reader.
    #[test]
    fn whole_files_are_inflated_in_one_call_only_when_sound() {
        let text = b"{\"Records\":[{\"eventName\":\"BackupJobCompleted\"}]}".repeat(300);
        let one = gzip(&text);
        let mut out = vec![7; 10];
        assert!(inflate_whole(&one, &mut out, u64::MAX));
        assert_eq!(out, text);
        // The stored size must fit the cap.
        assert!(!inflate_whole(&one, &mut out, text.len() as u64 - 1));
        assert!(inflate_whole(&one, &mut out, text.len() as u64));
        // An empty member.
        assert!(inflate_whole(&gzip(b""), &mut out, 0) && out.is_empty());
        // A header checksum, right and wrong.
        let member = |hcrc_delta: u16| {
            let mut header = vec![0x1f, 0x8b, 8, FHCRC | FNAME, 0, 0, 0, 0, 0, 255];
            header.extend_from_slice(b"name\0");
            let hcrc = (crc32fast::hash(&header) as u16).wrapping_add(hcrc_delta);
            header.extend_from_slice(&hcrc.to_le_bytes());
            let mut deflate = DeflateEncoder::new(header, Compression::default());
            deflate.write_all(&text).unwrap();
            let mut member = deflate.finish().unwrap();
            member.extend_from_slice(&crc32fast::hash(&text).to_le_bytes());
            member.extend_from_slice(&(text.len() as u32).to_le_bytes());
            member
        };
        assert!(inflate_whole(&member(0), &mut out, u64::MAX));
        assert_eq!(out, text);
        assert!(!inflate_whole(&member(1), &mut out, u64::MAX));
        // Two members, bytes after the member, a wrong CRC-32, a wrong size, cut short.
        let two = [gzip(&text[..100]), gzip(&text[100..])].concat();
        assert!(!inflate_whole(&two, &mut out, u64::MAX));
        assert_eq!(gunzip(&two, 64, 1000).unwrap(), text);
        let mut after = one.clone();
        after.push(0);
        assert!(!inflate_whole(&after, &mut out, u64::MAX));
        let n = one.len();
        for at in [n - 8, n - 5, n - 4, n - 1] {
            let mut bad = one.clone();
            bad[at] ^= 1;
            assert!(!inflate_whole(&bad, &mut out, u64::MAX), "byte {at}");
            assert!(gunzip(&bad, 64, 1000).is_err(), "byte {at}");
        }
        for cut in [0, 1, 10, n / 2, n - 9, n - 1] {
            assert!(
                !inflate_whole(&one[..cut], &mut out, u64::MAX),
                "cut at {cut}"
            );
        }
    }

    proptest! {
        /// Damaged or not, one member or two: whatever the one-call path accepts, the streaming
        /// reader reads to the same bytes; and it accepts every sound single member.
        #[test]
        fn whole_files_agree_with_the_streaming_reader(
            content in prop::collection::vec(any::<u8>(), 0..3000),
            members in 1usize..3,
            damage in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 0..3),
        ) {
            let data = damaged(&content, members, &damage);
            let mut out = Vec::new();
            if inflate_whole(&data, &mut out, u64::MAX) {
                prop_assert_eq!(gunzip(&data, 37, 1000).unwrap(), out);
            } else {
                prop_assert!(members > 1 || !damage.is_empty());
            }
        }

        /// Any content, cut into any members, read through any buffer: what flate2's own
        /// multi-member reader gives.
        #[test]
        fn the_same_bytes_as_flate2(
            content in prop::collection::vec(prop::sample::select(b"{}\"ab \\x\n".to_vec()), 0..4000),
            cuts in prop::collection::vec(0usize..4000, 0..4),
            buffer in 1usize..300,
            step in 1usize..5000,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(content.len())).collect();
            cuts.push(0);
            cuts.push(content.len());
            cuts.sort_unstable();
            let data: Vec<u8> = cuts.windows(2).flat_map(|w| gzip(&content[w[0]..w[1]])).collect();
            let mut theirs = Vec::new();
            flate2::read::MultiGzDecoder::new(&data[..]).read_to_end(&mut theirs).unwrap();
            prop_assert_eq!(&theirs, &content);
            prop_assert_eq!(gunzip(&data, buffer, step).unwrap(), content);
        }

        /// Damaged data (bytes changed, cut short, or with bytes after it): never a panic, and
        /// the same verdict as flate2's reader, which knows gzip apart from this one.
        #[test]
        fn damaged_data_is_judged_as_flate2_judges_it(
            content in prop::collection::vec(any::<u8>(), 0..3000),
            members in 1usize..3,
            damage in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 0..3),
            cut in prop::option::of(any::<prop::sample::Index>()),
            after in prop::collection::vec(any::<u8>(), 0..3),
        ) {
            let mut data = damaged(&content, members, &damage);
            if let Some(cut) = cut {
                data.truncate(cut.index(data.len() + 1));
            }
            data.extend_from_slice(&after);
            let mut theirs = Vec::new();
            let theirs = flate2::read::MultiGzDecoder::new(&data[..])
                .read_to_end(&mut theirs)
                .map(|_| theirs);
            let ours = gunzip(&data, 37, 1000);
            if let Err(e) = &ours {
                prop_assert!(is_gzip_fault(e), "{:?}", e);
            }
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                _ => prop_assert!(false, "ours {:?}, flate2's {:?}", ours.map(|v| v.len()), theirs.map(|v| v.len())),
            }
        }
    }
}
