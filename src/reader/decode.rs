//! Decoding: gzip (one member or several) or plain bytes, told apart by the magic bytes; gzip
//! inflated inline or on a thread of its own, with UTF-8 checked there while it has time to
//! spare. A gzip file of at most [`WHOLE_INPUT`] bytes (most CloudTrail deliveries) is read
//! whole and inflated in one call ([`inflate_whole`]), on the caller's thread. The splitter
//! asks for the next chunk of decoded bytes and gets a [`ReadError`] that already says whether
//! the gzip data or the stream below it failed.

use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::gunzip::{inflate_whole, is_gzip_fault, Gunzip};
use super::ReadError;
use crate::describe;

/// Bytes read from the input at a time (plain input, and compressed input before inflating).
pub(crate) const CHUNK: usize = 64 << 10;
/// Bytes the inflating thread hands over at a time.
const INFLATED_CHUNK: usize = 256 << 10;
/// Chunks in flight between the threads: what inflating may run ahead by (1 MiB).
const CHUNKS_IN_FLIGHT: usize = 4;
/// A gzip file of at most this many bytes is read whole and inflated in one call, when it
/// inflates to at most [`WHOLE_OUTPUT`] bytes; larger ones are streamed.
const WHOLE_INPUT: usize = 1 << 20;
/// See [`WHOLE_INPUT`].
const WHOLE_OUTPUT: u64 = 16 << 20;

/// The input with its first bytes (read to sniff the format) put back in front, and a fault
/// met while reading them put back where it was met.
type Sniffed<R> = io::Chain<Cursor<Vec<u8>>, Resume<R>>;

/// A log's bytes, decoded.
pub(crate) struct Decoder<R: Read> {
    kind: Kind<R>,
}

enum Kind<R: Read> {
    Plain(BufReader<Sniffed<R>>),
    Gzip(Box<Gunzip<BufReader<Sniffed<R>>>>),
    /// A whole gzip file, not inflated yet; if it cannot be inflated in one call, it is
    /// streamed on a thread of its own when `threaded`.
    Whole {
        data: Whole,
        max: u64,
        threaded: bool,
    },
    /// A whole gzip file that could not be inflated in one call, streamed instead.
    WholeStreamed(Box<Gunzip<Cursor<Vec<u8>>>>),
    /// Everything handed out.
    Ended,
    /// Gzip inflated on a thread of its own, while the caller's thread splits and matches.
    Threaded(Inflater),
}

impl<R: Read> Decoder<R> {
    /// Decodes on the caller's thread, streaming.
    pub(crate) fn inline(input: R) -> Result<Self, ReadError> {
        let kind = match sniff(input, false)? {
            Start::Whole(_) => unreachable!("sniff reads whole files only when asked"),
            Start::Stream(raw, true) => Kind::Gzip(Box::new(Gunzip::new(raw))),
            Start::Stream(raw, false) => Kind::Plain(raw),
        };
        Ok(Decoder { kind })
    }

    /// Decodes on the caller's thread; a small gzip file that inflates to at most `max` bytes
    /// is read whole and inflated in one call. `size`, when known, is the input's length: a
    /// larger input than could be held whole is not read ahead to find that out.
    pub(crate) fn inline_whole(input: R, max: u64, size: Option<u64>) -> Result<Self, ReadError> {
        let kind = match sniff(input, may_be_whole(size))? {
            Start::Whole(data) => Kind::Whole {
                data,
                max: max.min(WHOLE_OUTPUT),
                threaded: false,
            },
            Start::Stream(raw, true) => Kind::Gzip(Box::new(Gunzip::new(raw))),
            Start::Stream(raw, false) => Kind::Plain(raw),
        };
        Ok(Decoder { kind })
    }

    /// Puts the next decoded bytes in `buf` (replacing what it held) and returns how many;
    /// 0 at the end. `offset` is the decoded bytes before them, for errors.
    pub(crate) fn next_chunk(
        &mut self,
        buf: &mut Vec<u8>,
        offset: u64,
    ) -> Result<usize, ReadError> {
        loop {
            let result = match &mut self.kind {
                // Take the inflated chunk as the buffer itself: no copy.
                Kind::Threaded(inflater) => inflater.swap(buf),
                Kind::Plain(r) => read_into(r, buf, CHUNK),
                Kind::Gzip(r) => read_into(r, buf, INFLATED_CHUNK),
                Kind::Whole {
                    data,
                    max,
                    threaded,
                } => {
                    let data = std::mem::replace(
                        data,
                        Whole {
                            buf: Vec::new(),
                            len: 0,
                        },
                    );
                    if inflate_whole(data.bytes(), buf, *max) {
                        self.kind = Kind::Ended;
                        // Kept whole: its bytes need not be zeroed for the next file.
                        SPARE_WHOLE.set(data.buf);
                        return Ok(buf.len());
                    }
                    // Not in one call (a fault, several members, or more than `max` bytes,
                    // which a storm's few hundred kilobytes can inflate to): the streaming
                    // reader reads it, and words any fault.
                    let gunzip = Gunzip::new(Cursor::new(data.into_bytes()));
                    self.kind = if *threaded {
                        match Inflater::spawn(gunzip) {
                            Ok(inflater) => Kind::Threaded(inflater),
                            Err(source) => return Err(ReadError::Io { offset, source }),
                        }
                    } else {
                        Kind::WholeStreamed(Box::new(gunzip))
                    };
                    continue;
                }
                Kind::WholeStreamed(r) => read_into(r, buf, INFLATED_CHUNK),
                Kind::Ended => Ok(0),
            };
            return match result {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The gzip reader's verdicts on the data; anything else came from below it.
                Err(source) if is_gzip_fault(&source) => Err(ReadError::Gzip { offset, source }),
                Err(source) => Err(ReadError::Io {
                    offset,
                    source: io::Error::new(source.kind(), describe::chain(&source)),
                }),
            };
        }
    }

    /// Whether every byte handed out so far is known to be UTF-8 (checked while inflating on a
    /// thread; `false` when nobody checked).
    pub(crate) fn all_utf8(&self) -> bool {
        matches!(&self.kind, Kind::Threaded(inflater) if inflater.all_utf8)
    }
}

impl<R: Read + Send + 'static> Decoder<R> {
    /// Decodes gzip on a thread of its own, so that inflating and reading records overlap; a
    /// small gzip file that inflates to at most `max` bytes is read whole and inflated in one
    /// call on the caller's thread instead (a thread would cost more than it saves). `size`:
    /// as for [`Decoder::inline_whole`].
    pub(crate) fn threaded(input: R, max: u64, size: Option<u64>) -> Result<Self, ReadError> {
        let kind = match sniff(input, may_be_whole(size))? {
            Start::Whole(data) => Kind::Whole {
                data,
                max: max.min(WHOLE_OUTPUT),
                threaded: true,
            },
            Start::Stream(raw, true) => Kind::Threaded(
                Inflater::spawn(Gunzip::new(raw))
                    .map_err(|source| ReadError::Io { offset: 0, source })?,
            ),
            Start::Stream(raw, false) => Kind::Plain(raw),
        };
        Ok(Decoder { kind })
    }
}

/// Bytes told ASCII at a time while checking UTF-8 ([`Utf8Check::feed`]).
const ASCII_BLOCK: usize = 4096;

/// Whether an input of this length (`None`: not known) may be small enough to be held whole:
/// reading ahead to find out costs a large file a megabyte of memory touched for the first
/// time and copied again (1.5 % of scanning a 25 MB log on one core).
fn may_be_whole(size: Option<u64>) -> bool {
    size.is_none_or(|size| size <= WHOLE_INPUT as u64)
}

fn read_into(r: &mut impl Read, buf: &mut Vec<u8>, size: usize) -> io::Result<usize> {
    buf.resize(size, 0);
    r.read(buf)
}

thread_local! {
    /// The last whole file's buffer on this thread, for the next one.
    static SPARE_WHOLE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// How a log begins to be read.
enum Start<R> {
    /// A whole gzip file.
    Whole(Whole),
    /// The input, with whether it is gzip.
    Stream(BufReader<Sniffed<R>>, bool),
}

/// Reads the first two bytes to tell gzip (`1f 8b`) from the rest; with `whole`, reads on up
/// to [`WHOLE_INPUT`] bytes of gzip, to hold a small file whole. What was read is put back in
/// front of the rest, and a fault met after the first two bytes is put back where it was met,
/// so that a streamed file is read and fails as if nothing had been read ahead.
///
/// With `whole`, each read asks for all the room the thread's last buffer has (at least
/// [`CHUNK`]): a CloudTrail delivery comes in one read and the next finds its end, where
/// `read_to_end` asks for 2 bytes, then 8 KiB, then doubles (four or five reads a file).
fn sniff<R: Read>(mut input: R, whole: bool) -> Result<Start<R>, ReadError> {
    let (mut head, limit) = if whole {
        (SPARE_WHOLE.take(), WHOLE_INPUT + 1)
    } else {
        (Vec::new(), 2)
    };
    let mut len = 0;
    let mut ended = false;
    while len < 2 && !ended {
        match read_more(&mut input, &mut head, len, limit) {
            Ok(0) => ended = true,
            Ok(n) => len += n,
            Err(source) => return Err(ReadError::Io { offset: 0, source }),
        }
    }
    if len == 0 {
        return Err(ReadError::Empty);
    }
    let gzip = head[..len].starts_with(&[0x1f, 0x8b]);
    let mut fault = None;
    if gzip && whole {
        while !ended && len < limit {
            match read_more(&mut input, &mut head, len, limit) {
                Ok(0) => ended = true,
                Ok(n) => len += n,
                Err(e) => {
                    fault = Some(e);
                    break;
                }
            }
        }
        // Short of the limit: the input ended.
        if ended && len <= WHOLE_INPUT {
            return Ok(Start::Whole(Whole { buf: head, len }));
        }
    }
    head.truncate(len);
    let rest = Resume { fault, input };
    let raw = BufReader::with_capacity(CHUNK, Cursor::new(head).chain(rest));
    Ok(Start::Stream(raw, gzip))
}

/// One read into `buf` from byte `len` on, with room up to `limit` bytes in all: all of `buf`
/// (whose bytes are kept initialised from one file to the next, so that they are not zeroed
/// again), at least [`CHUNK`], and twice `len` once `buf` is full. Returns what the read gave
/// (0: the input ended); an interrupted read is tried again.
fn read_more(
    input: &mut impl Read,
    buf: &mut Vec<u8>,
    len: usize,
    limit: usize,
) -> io::Result<usize> {
    let room = buf.len().max(CHUNK).max(2 * len).min(limit);
    if buf.len() < room {
        buf.resize(room, 0);
    }
    loop {
        match input.read(&mut buf[len..room]) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// A whole file read: its bytes are `buf[..len]`; the rest of `buf` is room kept for the next.
pub(crate) struct Whole {
    buf: Vec<u8>,
    len: usize,
}

impl Whole {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The file's bytes alone, for a reader that reads the buffer to its end.
    fn into_bytes(mut self) -> Vec<u8> {
        self.buf.truncate(self.len);
        self.buf
    }
}

/// The input after the bytes read ahead, with the fault met reading them (if any) first.
pub(crate) struct Resume<R> {
    fault: Option<io::Error>,
    input: R,
}

impl<R: Read> Read for Resume<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.fault.take() {
            Some(e) => Err(e),
            None => self.input.read(buf),
        }
    }
}

/// Inflates a gzip stream on its own thread and hands out the bytes in order, a chunk at a
/// time. Memory is bounded by the chunks in flight; dropping it stops the thread at its next
/// chunk.
struct Inflater {
    /// Chunks, each with whether all bytes up to its end are UTF-8.
    chunks: Receiver<io::Result<(Vec<u8>, bool)>>,
    /// Used buffers, handed back to be filled again.
    spent: SyncSender<Vec<u8>>,
    /// Every byte handed out so far is UTF-8.
    all_utf8: bool,
}

impl Inflater {
    fn spawn<B: BufRead + Send + 'static>(mut decoder: Gunzip<B>) -> io::Result<Self> {
        let (tx, chunks) = sync_channel(CHUNKS_IN_FLIGHT);
        let (spent, spent_rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT + 1);
        std::thread::Builder::new()
            .name("trail-alerts-inflate".into())
            .spawn(move || {
                let mut utf8 = Utf8Check::default();
                loop {
                    let mut chunk = spent_rx.try_recv().unwrap_or_default();
                    chunk.resize(INFLATED_CHUNK, 0);
                    let mut filled = 0;
                    let result = loop {
                        if filled == chunk.len() {
                            break Ok(());
                        }
                        match decoder.read(&mut chunk[filled..]) {
                            Ok(0) => break Ok(()),
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => break Err(e),
                        }
                    };
                    chunk.truncate(filled);
                    let done = filled < INFLATED_CHUNK || result.is_err();
                    let all_utf8 = utf8.feed(&chunk, done);
                    if filled > 0 && tx.send(Ok((chunk, all_utf8))).is_err() {
                        return;
                    }
                    if let Err(e) = result {
                        let _ = tx.send(Err(e));
                    }
                    if done {
                        return;
                    }
                }
            })?;
        Ok(Inflater {
            chunks,
            spent,
            all_utf8: true,
        })
    }

    /// Hands back the used buffer and puts the next chunk in its place; 0 at the end.
    fn swap(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let used = std::mem::take(buf);
        if used.capacity() > 0 {
            let _ = self.spent.try_send(used);
        }
        match self.chunks.recv() {
            Ok(Ok((chunk, all_utf8))) => {
                *buf = chunk;
                self.all_utf8 = all_utf8;
                Ok(buf.len())
            }
            Ok(Err(e)) => Err(e),
            // The thread is done: the end of the stream.
            Err(_) => Ok(0),
        }
    }
}

/// UTF-8 validation of a stream in chunks, carrying a character split between two of them.
#[derive(Default)]
struct Utf8Check {
    carry: Vec<u8>,
    ok: bool,
    started: bool,
}

impl Utf8Check {
    /// Feeds the next chunk; whether everything so far is UTF-8 (an incomplete character at
    /// the very end counts as invalid).
    fn feed(&mut self, chunk: &[u8], last: bool) -> bool {
        if !self.started {
            self.started = true;
            self.ok = true;
        }
        if !self.ok {
            return false;
        }
        let mut rest = chunk;
        if !self.carry.is_empty() {
            // Complete the carried character with the bytes it still needs.
            let width = match self.carry[0] {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let take = (width - self.carry.len()).min(rest.len());
            self.carry.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.carry.len() == width {
                self.ok = std::str::from_utf8(&self.carry).is_ok();
                self.carry.clear();
            }
            if !self.ok {
                return false;
            }
        }
        // Whole blocks of ASCII are passed over at the speed of `is_ascii`, twice that of
        // `from_utf8` on ASCII (CloudTrail's logs are mostly ASCII, many wholly); from the first
        // block that is not, `from_utf8` checks the rest. A block boundary after ASCII cuts no
        // character.
        let ascii = rest
            .chunks(ASCII_BLOCK)
            .take_while(|block| block.is_ascii())
            .count()
            * ASCII_BLOCK;
        let rest = &rest[ascii.min(rest.len())..];
        match std::str::from_utf8(rest) {
            Ok(_) => {}
            Err(e) if e.error_len().is_none() && !last => {
                self.carry.extend_from_slice(&rest[e.valid_up_to()..]);
            }
            Err(_) => self.ok = false,
        }
        if last && !self.carry.is_empty() {
            self.ok = false;
        }
        self.ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_checked_across_chunk_boundaries() {
        let text = "aé€😀z".repeat(50);
        for split in 0..text.len() {
            let (a, b) = text.as_bytes().split_at(split);
            let mut check = Utf8Check::default();
            assert!(
                check.feed(a, false) && check.feed(b, true),
                "split at {split}"
            );
        }
        let mut check = Utf8Check::default();
        assert!(check.feed(b"ok \xe2\x82", false));
        assert!(!check.feed(b"", true), "a character cut off at the end");
        let mut check = Utf8Check::default();
        assert!(!check.feed(b"Caf\xe9 ", false));
        assert!(!check.feed(b"fine", true), "once invalid, always invalid");
    }

    /// Blocks of ASCII passed over whole, then characters and faults after them, in chunks
    /// cut anywhere near the blocks' ends: the verdict is `from_utf8`'s on the whole text.
    #[test]
    fn utf8_after_blocks_of_ascii_is_checked_as_before() {
        let tails: [&[u8]; 5] = [
            "é€😀z".as_bytes(),
            b"ok",
            b"bad \xe9 byte",
            b"cut \xe2\x82",
            b"\xff",
        ];
        for lead in [ASCII_BLOCK - 3, ASCII_BLOCK, 2 * ASCII_BLOCK + 1] {
            for tail in tails {
                let mut text = vec![b'a'; lead];
                text.extend_from_slice(tail);
                text.extend_from_slice(&vec![b'b'; ASCII_BLOCK]);
                text.extend_from_slice(tail);
                let want = std::str::from_utf8(&text).is_ok();
                let cuts = (0..8).flat_map(|d| [lead + d, lead.saturating_sub(d), ASCII_BLOCK + d]);
                for cut in cuts.chain([0, text.len()]) {
                    let (a, b) = text.split_at(cut.min(text.len()));
                    let mut check = Utf8Check::default();
                    let got = check.feed(a, false) & check.feed(b, true);
                    assert_eq!(got, want, "lead {lead}, tail {tail:?}, cut at {cut}");
                }
            }
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Gives at most `most` bytes a read, is interrupted before every other read, and counts
    /// the reads that gave bytes or the end.
    struct Reads<'a> {
        bytes: &'a [u8],
        most: usize,
        interrupt: bool,
        reads: usize,
    }

    impl Read for Reads<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.reads += 1;
            let n = buf.len().min(self.most).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn decoded(decoder: &mut Decoder<&mut Reads<'_>>) -> Vec<u8> {
        let (mut out, mut chunk) = (Vec::new(), Vec::new());
        while let n @ 1.. = decoder.next_chunk(&mut chunk, out.len() as u64).unwrap() {
            out.extend_from_slice(&chunk[..n]);
        }
        out
    }

    /// A whole file is read in one read and the one that finds its end, however large the
    /// thread's last file was: the buffer kept from a longer file lends its room, and none of
    /// its old bytes; a read interrupted is tried again, and a file given a byte at a time is
    /// still read whole.
    #[test]
    fn whole_files_come_in_two_reads_over_the_last_ones_room() {
        let long = "{\"Records\":[]}".repeat(9000);
        let short = "x".repeat(300);
        for (text, most, reads) in [
            (long.as_bytes(), usize::MAX, 2),
            (short.as_bytes(), usize::MAX, 2),
            (long.as_bytes(), usize::MAX, 2),
            (short.as_bytes(), 1, usize::MAX),
        ] {
            let gz = gzip(text);
            let mut input = Reads {
                bytes: &gz,
                most,
                interrupt: false,
                reads: 0,
            };
            let mut decoder = Decoder::inline_whole(&mut input, 1 << 20, None).unwrap();
            assert!(matches!(decoder.kind, Kind::Whole { .. }));
            assert_eq!(decoded(&mut decoder), text);
            if reads != usize::MAX {
                assert_eq!(input.reads, reads);
            } else {
                assert_eq!(input.reads, gz.len() + 1);
            }
        }
        // Plain bytes are streamed, with what was read ahead put back in front.
        let mut input = Reads {
            bytes: short.as_bytes(),
            most: usize::MAX,
            interrupt: false,
            reads: 0,
        };
        let mut decoder = Decoder::inline_whole(&mut input, 1 << 20, None).unwrap();
        assert!(matches!(decoder.kind, Kind::Plain(_)));
        assert_eq!(decoded(&mut decoder), short.as_bytes());
    }

    /// An input known to be larger than could be held whole is streamed from its first two
    /// bytes on, not read ahead; a length that is wrong (the file changed since) changes how
    /// it is read, not what is read.
    #[test]
    fn a_length_known_to_be_large_is_not_read_ahead() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        /// Counts the bytes read from it.
        struct Counted(Cursor<Vec<u8>>, Arc<AtomicUsize>);
        impl Read for Counted {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1.fetch_add(n, Ordering::Relaxed);
                Ok(n)
            }
        }
        let text = "{\"Records\":[]}".repeat(9000);
        let gz = gzip(text.as_bytes());
        for (size, whole) in [
            (None, true),
            (Some(gz.len() as u64), true),
            (Some(WHOLE_INPUT as u64), true),
            (Some(WHOLE_INPUT as u64 + 1), false),
            (Some(u64::MAX), false),
        ] {
            for threaded in [false, true] {
                let taken = Arc::new(AtomicUsize::new(0));
                let input = Counted(Cursor::new(gz.clone()), Arc::clone(&taken));
                let mut decoder = if threaded {
                    Decoder::threaded(input, 1 << 20, size).unwrap()
                } else {
                    Decoder::inline_whole(input, 1 << 20, size).unwrap()
                };
                assert_eq!(matches!(decoder.kind, Kind::Whole { .. }), whole);
                if !whole {
                    // Inflating on its own thread may have begun; inline, nothing has.
                    let read = taken.load(Ordering::Relaxed);
                    assert!(threaded || read == 2, "read ahead {read} bytes");
                }
                let (mut out, mut chunk) = (Vec::new(), Vec::new());
                while let n @ 1.. = decoder.next_chunk(&mut chunk, out.len() as u64).unwrap() {
                    out.extend_from_slice(&chunk[..n]);
                }
                assert_eq!(out, text.as_bytes(), "size {size:?}, threaded {threaded}");
            }
        }
    }
}
