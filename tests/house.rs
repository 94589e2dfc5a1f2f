//! The house stays as easy to enter as its maps say: every module with files of its own lists
//! them under `# Files` in its doc comment, and the list is the files on disk — a file added,
//! moved or removed without its map fails here, naming both sides.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::util::root;

/// The names a map lists: the bullets under `# Files` (`//! - [`name`]: …` or `//! - `name`: …`).
fn listed(source: &str) -> Option<BTreeSet<String>> {
    let doc: Vec<&str> = source
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").trim_start())
        .collect();
    let start = doc.iter().position(|l| *l == "# Files")?;
    let mut names = BTreeSet::new();
    for line in &doc[start + 1..] {
        if line.starts_with('#') {
            break;
        }
        let Some(item) = line.strip_prefix("- ") else {
            continue;
        };
        let item = item.strip_prefix('[').unwrap_or(item);
        if let Some(rest) = item.strip_prefix('`') {
            if let Some(end) = rest.find('`') {
                names.insert(rest[..end].to_string());
            }
        }
    }
    Some(names)
}

/// The modules on disk under `dir`: its `.rs` files but `skip`, and its folders.
fn on_disk(dir: &Path, skip: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            names.insert(name);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if stem != skip {
                names.insert(stem.to_string());
            }
        }
    }
    names
}

/// Every module file that has children: `lib.rs`, each `mod.rs`, and each `x.rs` beside a folder
/// `x/` — with the folder its children are in.
fn maps(src: &Path) -> Vec<(PathBuf, PathBuf, &'static str)> {
    let mut out = vec![(src.join("lib.rs"), src.to_path_buf(), "lib")];
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if !path.is_dir() {
                continue;
            }
            dirs.push(path.clone());
            if path.file_name().unwrap() == "bin" {
                continue;
            }
            let beside = path.with_extension("rs");
            if path.join("mod.rs").is_file() {
                out.push((path.join("mod.rs"), path.clone(), "mod"));
            } else if beside.is_file() {
                out.push((beside, path.clone(), ""));
            } else {
                panic!("{}: a folder that is no module", path.display());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn module_maps_list_the_files_on_disk() {
    let src = root().join("src");
    let mut faults = Vec::new();
    let all = maps(&src);
    assert!(all.len() >= 12, "found only {} module maps", all.len());
    for (file, dir, skip) in all {
        let text = fs::read_to_string(&file).expect("module file");
        let rel = file.strip_prefix(root()).unwrap().display().to_string();
        let Some(listed) = listed(&text) else {
            faults.push(format!("{rel}: no `# Files` section in its doc comment"));
            continue;
        };
        let disk = on_disk(&dir, skip);
        for missing in disk.difference(&listed) {
            faults.push(format!("{rel}: `{missing}` is on disk but not in the map"));
        }
        for gone in listed.difference(&disk) {
            faults.push(format!(
                "{rel}: the map lists `{gone}`, which is not on disk"
            ));
        }
    }
    assert!(
        faults.is_empty(),
        "module maps out of date:\n{}",
        faults.join("\n")
    );
}

#[test]
fn the_map_reader_sees_a_missing_and_a_stale_entry() {
    let text = "//! Things.\n//!\n//! # Files\n//! - [`a`]: one.\n//! - `b`: two,\n//!   more.\n//!\n//! # Next\n//! - `c`: not a file.\n";
    let names = listed(text).expect("a map");
    assert_eq!(names, BTreeSet::from(["a".to_string(), "b".to_string()]));
    assert_eq!(listed("//! No map.\n"), None);
}

/// `scripts/README.md` (which `make help` prints) lists every script, and only scripts that are.
#[test]
fn the_scripts_listing_is_the_scripts_on_disk() {
    let scripts = root().join("scripts");
    let text = fs::read_to_string(scripts.join("README.md")).expect("scripts/README.md");
    let listed: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("- `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    let mut disk = BTreeSet::new();
    for group in fs::read_dir(&scripts).expect("scripts") {
        let group = group.expect("entry").path();
        if !group.is_dir() || group.file_name().unwrap() == "__pycache__" {
            continue;
        }
        let g = group.file_name().unwrap().to_string_lossy().into_owned();
        for entry in fs::read_dir(&group).expect("group") {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name == "__pycache__" {
                continue;
            }
            disk.insert(if path.is_dir() {
                format!("{g}/{name}/")
            } else {
                format!("{g}/{name}")
            });
        }
    }
    let loose: Vec<_> = fs::read_dir(&scripts)
        .expect("scripts")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file() && p.file_name().unwrap() != "README.md")
        .collect();
    assert!(loose.is_empty(), "scripts outside a group: {loose:?}");
    let unlisted: Vec<_> = disk.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&disk).collect();
    assert!(
        unlisted.is_empty() && stale.is_empty(),
        "scripts/README.md: not listed {unlisted:?}; listed but absent {stale:?}"
    );
}
