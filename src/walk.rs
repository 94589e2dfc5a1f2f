//! Finding files on disk: every file under a directory, recursively, in path order. Rule
//! directories and log directories are walked the same way.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::keys::{classify_name, KeyKind};
use crate::reader::{sniff, Content};

/// The files under `dir` (recursively, in path order) that `keep` accepts, and how many others
/// were passed over.
pub fn files(dir: &Path, keep: &impl Fn(&Path) -> bool) -> io::Result<(Vec<PathBuf>, u64)> {
    let mut all = Vec::new();
    walk(dir, &mut all)?;
    let (kept, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|p| keep(p));
    Ok((kept, others.len() as u64))
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, found)?;
        } else {
            found.push(path);
        }
    }
    Ok(())
}

/// A file a directory scan did not read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedOver {
    pub path: PathBuf,
    pub why: Why,
}

/// Why a file was passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// 0 bytes: an empty object, as the function skips them.
    Empty,
    /// Named as a CloudTrail digest file.
    DigestName,
    /// Its content is not records (a digest, an AWS Config file, anything else).
    Content(Content),
    /// An S3 folder marker (a key ending in `/`).
    FolderMarker,
    /// An S3 key not named like a CloudTrail log (S3 objects are told by their key alone).
    NotALogName,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Empty => f.write_str("empty (0 bytes)"),
            Why::DigestName => f.write_str("a CloudTrail digest file (by its name)"),
            Why::Content(content) => write!(f, "{content}"),
            Why::FolderMarker => f.write_str("an S3 folder marker"),
            Why::NotALogName => f.write_str("not named like a CloudTrail log"),
        }
    }
}

/// The logs under a directory (recursively, in path order) and the files passed over.
#[derive(Debug, Default)]
pub struct Logs {
    pub logs: Vec<PathBuf>,
    pub passed_over: Vec<PassedOver>,
}

/// The CloudTrail logs under a directory, wherever they sit: a file named like a log
/// (`<account>_CloudTrail_<region>_<time>_<id>.json[.gz]`, Insights too) is one; a file whose
/// name says nothing is one when its content holds records (gzip or plain: `{"Records": [`,
/// or another shape the command line reads). Empty files, digest files, AWS Config files and
/// anything else are passed over, each with the reason. A file whose head cannot be read is
/// kept, so that reading it reports the fault.
pub fn log_files(dir: &Path) -> io::Result<Logs> {
    let mut all = Vec::new();
    walk(dir, &mut all)?;
    let mut found = Logs::default();
    for path in all {
        match judge(&path) {
            None => found.logs.push(path),
            Some(why) => found.passed_over.push(PassedOver { path, why }),
        }
    }
    Ok(found)
}

/// `None` for a log to read, else why not.
fn judge(path: &Path) -> Option<Why> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
        return Some(Why::Empty);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    match classify_name(&name) {
        KeyKind::Log | KeyKind::InsightLog => return None,
        KeyKind::Digest => return Some(Why::DigestName),
        KeyKind::Other => {}
    }
    match sniff(path) {
        Ok(content) if content.has_records() => None,
        Ok(Content::Empty) => Some(Why::Empty),
        Ok(content) => Some(Why::Content(content)),
        Err(_) => None,
    }
}
