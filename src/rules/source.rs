//! Where rules come from: the built-in pack compiled into the binary, a file, a directory of
//! files, or an `s3://bucket/key` object that the caller reads (this module does no network
//! I/O; it is handed a reader for remote documents).

use std::fmt;
use std::path::{Path, PathBuf};

use super::RuleError;

/// A built-in pack's document: its name, its YAML, and the same as JSON (converted by
/// `build.rs`; empty when it did not convert, and the YAML is then read).
macro_rules! pack {
    ($name:literal) => {
        (
            concat!("builtin:rules/", $name, ".yaml"),
            include_str!(concat!("../../rules/", $name, ".yaml")),
            include_str!(concat!(env!("OUT_DIR"), "/rules/", $name, ".json")),
        )
    };
}

/// The built-in pack, compiled into the binary from `rules/`: origin, YAML, JSON.
pub const BUILTIN: &[(&str, &str, &str)] = &[
    pack!("backup"),
    pack!("backup-resilience"),
    pack!("backup-events"),
    pack!("trail"),
    pack!("outposts"),
];

/// The optional built-in packs, off unless named (`builtin:security`, `builtin:self`): name,
/// then as in [`BUILTIN`].
pub const PACKS: &[(&str, (&str, &str, &str))] =
    &[("security", pack!("security")), ("self", pack!("self"))];

/// A rule source, as written on the command line and in `RULES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSource {
    /// The built-in pack.
    Builtin,
    /// An optional built-in pack, by name (`builtin:security`).
    Pack(String),
    /// A rule file, or a directory of them.
    Path(PathBuf),
    /// An S3 object, read with the reader the caller hands to [`read`].
    S3(S3Object),
}

/// An `s3://bucket/key` rule document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Object {
    pub bucket: String,
    pub key: String,
}

impl fmt::Display for S3Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// The sources in force when none are given: the built-in pack.
pub fn default_sources() -> Vec<RuleSource> {
    vec![RuleSource::Builtin]
}

/// Parses sources as written (`builtin`, a path, `s3://bucket/key`); none means
/// [`default_sources`].
pub fn parse_sources<S: AsRef<str>>(texts: &[S]) -> Vec<RuleSource> {
    if texts.is_empty() {
        return default_sources();
    }
    texts
        .iter()
        .map(|t| RuleSource::parse(t.as_ref()))
        .collect()
}

impl RuleSource {
    pub fn parse(text: &str) -> Self {
        if text == "builtin" {
            return RuleSource::Builtin;
        }
        if let Some(name) = text.strip_prefix("builtin:") {
            return RuleSource::Pack(name.to_owned());
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            return RuleSource::S3(S3Object {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            });
        }
        RuleSource::Path(PathBuf::from(text))
    }
}

impl fmt::Display for RuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleSource::Builtin => f.write_str("builtin"),
            RuleSource::Pack(name) => write!(f, "builtin:{name}"),
            RuleSource::Path(p) => write!(f, "{}", p.display()),
            RuleSource::S3(object) => object.fmt(f),
        }
    }
}

/// One rule document's text and where it came from (a path, `builtin:…`, `s3://…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub origin: String,
    pub text: String,
    /// A built-in pack's document as JSON (see [`BUILTIN`]): parsed instead of `text`, to the
    /// same value.
    pub json: Option<&'static str>,
}

impl Document {
    fn builtin(&(origin, text, json): &(&str, &str, &'static str)) -> Self {
        Document {
            origin: origin.to_owned(),
            text: text.to_owned(),
            json: (!json.is_empty()).then_some(json),
        }
    }
}

/// The documents a source holds: the built-in pack, a file, every `.yaml`/`.yml`/`.json` file
/// of a directory (recursively, in name order), or an S3 object read with `remote`.
pub fn read(
    source: &RuleSource,
    remote: &mut impl FnMut(&S3Object) -> Result<String, String>,
) -> Result<Vec<Document>, RuleError> {
    match source {
        RuleSource::Builtin => Ok(BUILTIN.iter().map(Document::builtin).collect()),
        RuleSource::Pack(name) => match PACKS.iter().find(|(n, _)| n == name) {
            Some((_, pack)) => Ok(vec![Document::builtin(pack)]),
            None => Err(RuleError::Read {
                origin: format!("builtin:{name}"),
                reason: format!(
                    "no such built-in pack; the optional packs are {}",
                    PACKS
                        .iter()
                        .map(|(n, _)| format!("builtin:{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        },
        RuleSource::Path(path) => read_path(path),
        RuleSource::S3(object) => {
            let origin = object.to_string();
            match remote(object) {
                Ok(text) => Ok(vec![Document {
                    origin,
                    text,
                    json: None,
                }]),
                Err(reason) => Err(RuleError::Read { origin, reason }),
            }
        }
    }
}

fn read_path(path: &Path) -> Result<Vec<Document>, RuleError> {
    let origin = path.display().to_string();
    let unreadable = |origin: String, e: std::io::Error| RuleError::Read {
        origin,
        reason: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(|e| unreadable(origin.clone(), e))?;
    let files = if meta.is_dir() {
        let (files, _) =
            crate::walk::files(path, &is_rule_file).map_err(|e| unreadable(origin.clone(), e))?;
        if files.is_empty() {
            return Err(RuleError::Read {
                origin,
                reason: "no .yaml, .yml or .json rule files in this directory".into(),
            });
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .into_iter()
        .map(|file| {
            let origin = file.display().to_string();
            match std::fs::read_to_string(&file) {
                Ok(text) => Ok(Document {
                    origin,
                    text,
                    json: None,
                }),
                Err(e) => Err(unreadable(origin, e)),
            }
        })
        .collect()
}

fn is_rule_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::document::{parse_rule_document, parse_rule_document_as, yaml_options};
    use serde_json::Value;

    /// Every built-in pack was converted by `build.rs`, to the value its YAML gives with the
    /// options rule files are read with, and loads to the same rules either way.
    #[test]
    fn the_packs_json_is_their_yaml() {
        let all = BUILTIN.iter().chain(PACKS.iter().map(|(_, pack)| pack));
        let mut n = 0;
        for pack in all {
            let doc = Document::builtin(pack);
            let json = doc
                .json
                .unwrap_or_else(|| panic!("{}: not converted", doc.origin));
            let from_yaml: Value =
                serde_saphyr::from_str_with_options(&doc.text, yaml_options()).unwrap();
            let from_json: Value = serde_json::from_str(json).unwrap();
            assert_eq!(from_json, from_yaml, "{}", doc.origin);
            // Key order too (serde_json's maps keep it, and rules are listed in it).
            assert_eq!(
                serde_json::to_string(&from_json).unwrap(),
                serde_json::to_string(&from_yaml).unwrap()
            );
            let fast = parse_rule_document_as(&doc.origin, &doc.text, doc.json).unwrap();
            let slow = parse_rule_document(&doc.origin, &doc.text).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{}", doc.origin);
            n += 1;
        }
        assert_eq!(n, 7);
    }

    /// JSON that does not parse (which `build.rs` never writes) is passed over for the YAML.
    #[test]
    fn a_document_whose_json_does_not_parse_is_read_from_its_yaml() {
        let yaml = "rules:\n  - id: r\n    description: d\n    severity: low\n    pattern: {eventName: [A]}\n";
        let doc = parse_rule_document_as("x.yaml", yaml, Some("{not json")).unwrap();
        assert_eq!(doc.rules[0].id, "r");
        let bad = parse_rule_document_as("x.yaml", "rules: [", Some("")).unwrap_err();
        assert!(bad.to_string().contains("not valid YAML"), "{bad}");
    }
}
