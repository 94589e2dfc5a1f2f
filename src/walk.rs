//! Finding files on disk: every file under a directory, recursively, in path order. Rule
//! directories and log directories are walked the same way.

use std::io;
use std::path::{Path, PathBuf};

use crate::keys::classify;

/// The files under `dir` (recursively, in path order) that `keep` accepts, and how many others
/// were passed over.
pub fn files(dir: &Path, keep: &impl Fn(&Path) -> bool) -> io::Result<(Vec<PathBuf>, u64)> {
    let mut kept = Vec::new();
    let mut others = 0;
    walk(dir, keep, &mut kept, &mut others)?;
    Ok((kept, others))
}

fn walk(
    dir: &Path,
    keep: &impl Fn(&Path) -> bool,
    kept: &mut Vec<PathBuf>,
    others: &mut u64,
) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, keep, kept, others)?;
        } else if keep(&path) {
            kept.push(path);
        } else {
            *others += 1;
        }
    }
    Ok(())
}

/// The CloudTrail log files under a directory (recursively, in path order), and how many other
/// files were passed over (digests, AWS Config files, anything not named like a log).
pub fn log_files(dir: &Path) -> io::Result<(Vec<PathBuf>, u64)> {
    files(dir, &is_log_path)
}

fn is_log_path(path: &Path) -> bool {
    let key: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    classify(&key.join("/")).has_records()
}
