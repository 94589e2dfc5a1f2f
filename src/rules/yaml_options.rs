// How rule documents are read as YAML. Included by `build.rs` too, which converts the built-in
// packs to JSON with these same options, so that the JSON the binary parses at start-up is the
// value the YAML gives here.

/// YAML 1.2 booleans only: `no`, `yes`, `on` and `off` stay strings (a pattern value `[NO]` is
/// Norway, not false).
pub fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options
}
