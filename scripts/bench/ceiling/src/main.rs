//! The validating floor: what any reader of gzip'd JSON logs that checks every byte must spend,
//! measured with the fastest parts at hand, so that a goal stated against the inflating floor
//! (`libdeflate-gunzip`) can be told reachable or not on the machine it is measured on.
//!
//! For each file, in turn or spread over `--threads` threads: read it, inflate it whole with
//! libdeflate (in process: no pipe, no output), and check that it is one JSON document with the
//! chosen parser, building nothing (`IgnoredAny`). Nothing is split into records, peeked at or
//! matched: a real reader does all this and more.
//!
//! sonic-rs checks all of it, UTF-8 in strings included. serde_json, skipping a value it is not
//! asked to build, does not check that a string is UTF-8: it does less than a reader must, so
//! its figure is a floor all the same.
//!
//! usage: validating-floor [--parser serde_json|sonic-rs|none] [--threads N] FILE... | --files-from LIST

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone, Copy)]
enum Parser {
    SerdeJson,
    SonicRs,
    /// Inflating only: libdeflate in process.
    None,
}

struct Args {
    parser: Parser,
    threads: usize,
    files: Vec<String>,
}

fn args() -> Result<Args, String> {
    let mut parser = Parser::SerdeJson;
    let mut threads = 1;
    let mut files = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--parser" => {
                parser = match value("--parser")?.as_str() {
                    "serde_json" => Parser::SerdeJson,
                    "sonic-rs" => Parser::SonicRs,
                    "none" => Parser::None,
                    other => {
                        return Err(format!(
                            "unknown parser {other:?} (serde_json, sonic-rs, none)"
                        ))
                    }
                }
            }
            "--threads" => {
                threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?;
                if threads == 0 {
                    return Err("--threads: at least 1".into());
                }
            }
            "--files-from" => {
                let list = value("--files-from")?;
                let text = std::fs::read_to_string(&list).map_err(|e| format!("{list}: {e}"))?;
                files.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
            }
            _ if a.starts_with("--") => return Err(format!("unknown option {a}")),
            _ => files.push(a),
        }
    }
    if files.is_empty() {
        return Err("no files".into());
    }
    Ok(Args {
        parser,
        threads,
        files,
    })
}

/// Inflates one gzip member whole into `out` (its size from the trailer, as libdeflate-gunzip
/// sizes its buffer), with libdeflate.
fn inflate(
    d: *mut libdeflate_sys::libdeflate_decompressor,
    gz: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let isize = gz
        .len()
        .checked_sub(4)
        .map(|at| u32::from_le_bytes([gz[at], gz[at + 1], gz[at + 2], gz[at + 3]]) as usize)
        .ok_or("shorter than a gzip trailer")?;
    out.clear();
    out.resize(isize.max(1), 0);
    let mut made = 0usize;
    // SAFETY: `d` is a live decompressor used by this thread only; the input and output
    // pointers and lengths describe the two buffers, which outlive the call.
    let result = unsafe {
        libdeflate_sys::libdeflate_gzip_decompress(
            d,
            gz.as_ptr().cast(),
            gz.len(),
            out.as_mut_ptr().cast(),
            out.len(),
            &mut made,
        )
    };
    if result != 0 {
        return Err(format!(
            "libdeflate: result {result} (not one whole gzip member?)"
        ));
    }
    out.truncate(made);
    Ok(())
}

fn validate(parser: Parser, json: &[u8]) -> Result<(), String> {
    match parser {
        Parser::SerdeJson => serde_json::from_slice::<serde::de::IgnoredAny>(json)
            .map(drop)
            .map_err(|e| format!("serde_json: {e}")),
        Parser::SonicRs => sonic_rs::from_slice::<serde::de::IgnoredAny>(json)
            .map(drop)
            .map_err(|e| format!("sonic-rs: {e}")),
        Parser::None => Ok(()),
    }
}

fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("validating-floor: {e}");
            return ExitCode::from(2);
        }
    };
    let next = AtomicUsize::new(0);
    let bytes = AtomicUsize::new(0);
    let failed = std::thread::scope(|s| {
        let workers: Vec<_> = (0..a.threads)
            .map(|_| {
                s.spawn(|| -> Result<(), String> {
                    // SAFETY: allocation only; freed below on every path.
                    let d = unsafe { libdeflate_sys::libdeflate_alloc_decompressor() };
                    if d.is_null() {
                        return Err("libdeflate: out of memory".into());
                    }
                    let mut out = Vec::new();
                    let result = (|| loop {
                        let Some(path) = a.files.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            return Ok(());
                        };
                        let gz = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
                        inflate(d, &gz, &mut out).map_err(|e| format!("{path}: {e}"))?;
                        validate(a.parser, &out).map_err(|e| format!("{path}: {e}"))?;
                        bytes.fetch_add(out.len(), Ordering::Relaxed);
                    })();
                    // SAFETY: `d` came from libdeflate_alloc_decompressor and is not used after.
                    unsafe { libdeflate_sys::libdeflate_free_decompressor(d) };
                    result
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| w.join().unwrap_or(Err("a worker panicked".into())).err())
            .next()
    });
    if let Some(e) = failed {
        eprintln!("validating-floor: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "validating-floor: {} files, {} bytes of JSON",
        a.files.len(),
        bytes.load(Ordering::Relaxed)
    );
    ExitCode::SUCCESS
}
