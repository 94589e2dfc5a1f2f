//! Converts the built-in rule packs (`rules/*.yaml`) to JSON at build time, into `OUT_DIR`:
//! the binary parses that with serde_json when it starts (under a millisecond for all of
//! them) instead of the YAML (about 5 ms: serde-saphyr reads some 15 MB/s). The YAML stays
//! the source and what the packs are shown as. A pack that does not convert gets an empty
//! file, and is read from its YAML at start-up, where its fault is reported as for any rule
//! file.

use std::path::Path;

include!("src/rules/yaml_options.rs");

fn main() {
    println!("cargo:rerun-if-changed=rules");
    println!("cargo:rerun-if-changed=src/rules/yaml_options.rs");
    let out = Path::new(&std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("rules");
    std::fs::create_dir_all(&out).expect("OUT_DIR is writable");
    let packs = std::fs::read_dir("rules").expect("rules/ holds the built-in packs");
    for entry in packs {
        let path = entry.expect("rules/ can be listed").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a built-in pack is UTF-8 text");
        let json = serde_saphyr::from_str_with_options::<serde_json::Value>(&text, yaml_options())
            .ok()
            .and_then(|value| serde_json::to_string(&value).ok())
            .unwrap_or_default();
        let name = path.file_stem().expect("a .yaml file has a stem");
        std::fs::write(out.join(name).with_extension("json"), json).expect("OUT_DIR is writable");
    }
}
