//! The docs cannot go stale silently: every example in README.md and docs/*.md is run.
//!
//! Each fenced block says what it is by its info string, and is checked for what it claims:
//! - `yaml`: a whole rule document; it loads as the function loads it and its tests (rules' and
//!   routes') pass (`yaml builtin`: beside the built-in pack, for overrides and routes of it);
//! - `console`: `$ trail-alerts …` lines run from the project root, each followed by exactly what
//!   it prints (timings aside);
//! - `sh`: command lines; every `trail-alerts` one is parsed by the real argument parser, every
//!   `make` target exists; the others need an AWS account or a shell of their own and are not run;
//! - `json`: parses as JSON;
//! - `text`: pictures and output read from elsewhere, not examples.
//!
//! A block with no info string, or another one, fails: each example says how it is checked.
//! Links between the pages must reach a file, and a heading when they name one.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use clap::Parser;
use trail_alerts::cli::args::Cli;

use crate::util::root;

struct Block {
    page: String,
    line: usize,
    info: String,
    text: String,
}

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<_> = fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root()).unwrap().display().to_string()
}

fn blocks(path: &Path) -> Vec<Block> {
    let text = fs::read_to_string(path).expect("page");
    let mut out = Vec::new();
    let mut open: Option<(usize, String, Vec<&str>)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((i + 1, info.trim().to_string(), Vec::new())),
            (Some(_), Some("")) => {
                let (line, info, body) = open.take().unwrap();
                out.push(Block {
                    page: rel(path),
                    line,
                    info,
                    text: body.join("\n") + "\n",
                });
            }
            (Some((_, _, body)), _) => body.push(line),
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{}: a code block is not closed", rel(path));
    out
}

fn cmd() -> Command {
    let mut c = crate::util::trail_alerts();
    c.env("NO_COLOR", "1").current_dir(root());
    c
}

/// Splits a command line into words the way a POSIX shell would for the simple lines the docs
/// show: single and double quotes, backslash escapes; `|`, `&&`, `||` and `;` end a command.
fn commands(line: &str) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            '#' if word.is_none() => break,
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    out.last_mut().unwrap().push(w);
                }
            }
            '|' | '&' | ';' => {
                if let Some(w) = word.take() {
                    out.last_mut().unwrap().push(w);
                }
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                out.push(Vec::new());
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = word {
        out.last_mut().unwrap().push(w);
    }
    out.retain(|c| !c.is_empty());
    out
}

/// The logical lines of a shell block: continuation lines joined.
fn shell_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(line);
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

fn make_targets() -> BTreeSet<String> {
    fs::read_to_string(root().join("Makefile"))
        .expect("Makefile")
        .lines()
        .filter(|l| !l.starts_with(['\t', '#', '.', ' ']) && !l.contains(":="))
        .filter_map(|l| l.split_once(':').map(|(t, _)| t))
        .flat_map(|t| t.split_whitespace().map(str::to_string))
        .collect()
}

/// Timings vary from run to run: `in 0.05s` reads `in <t>s` on both sides.
fn steady(text: &str) -> String {
    let re_time = |s: &str| -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(at) = rest.find(" in ") {
            out.push_str(&rest[..at + 4]);
            rest = &rest[at + 4..];
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if digits > 0 && rest[digits..].starts_with('s') {
                out.push_str("<t>");
                rest = &rest[digits..];
            }
        }
        out.push_str(rest);
        out
    };
    text.lines().map(re_time).collect::<Vec<_>>().join("\n")
}

fn check_yaml(b: &Block, faults: &mut Vec<String>) {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("example.yaml");
    fs::write(&file, &b.text).expect("write");
    let mut c = cmd();
    c.args(["rules", "test"]);
    if b.info == "yaml builtin" {
        c.args(["--rules", "builtin"]);
    }
    let out = c.arg("--rules").arg(&file).output().expect("run");
    if !out.status.success() {
        faults.push(format!(
            "{}:{}: the rule example does not load or its tests fail:\n{}{}",
            b.page,
            b.line,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

fn check_console(b: &Block, faults: &mut Vec<String>) -> usize {
    let mut runs = 0;
    let mut lines = b.text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(command) = line.strip_prefix("$ ") else {
            faults.push(format!(
                "{}:{}: console output before any `$ ` command",
                b.page, b.line
            ));
            return runs;
        };
        let mut expected = Vec::new();
        while let Some(next) = lines.peek() {
            if next.starts_with("$ ") {
                break;
            }
            expected.push(lines.next().unwrap());
        }
        let words = commands(command);
        let [words] = &words[..] else {
            faults.push(format!(
                "{}:{}: one command a line: {command}",
                b.page, b.line
            ));
            continue;
        };
        if words[0] != "trail-alerts" {
            faults.push(format!(
                "{}:{}: console blocks run trail-alerts only: {command}",
                b.page, b.line
            ));
            continue;
        }
        let out = cmd().args(&words[1..]).output().expect("run");
        runs += 1;
        let got = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let want = expected.join("\n");
        if steady(got.trim_end()) != steady(want.trim_end()) {
            faults.push(format!(
                "{}:{}: `{command}` printed\n{got}\nwhere the page says\n{want}",
                b.page, b.line
            ));
        }
    }
    runs
}

fn check_sh(b: &Block, targets: &BTreeSet<String>, faults: &mut Vec<String>) -> (usize, usize) {
    let (mut parsed, mut aws) = (0, 0);
    for line in shell_lines(&b.text) {
        for words in commands(&line) {
            // `VAR=value command …`: the command is after the assignments.
            let words: Vec<&String> = words
                .iter()
                .skip_while(|w| {
                    w.split_once('=').is_some_and(|(k, _)| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                    })
                })
                .collect();
            let Some(first) = words.first() else { continue };
            match first.as_str() {
                "trail-alerts" => {
                    parsed += 1;
                    if let Err(e) = Cli::try_parse_from(words.iter().map(|w| w.as_str())) {
                        faults.push(format!("{}:{}: `{line}`: {e}", b.page, b.line));
                    }
                }
                "make" => {
                    parsed += 1;
                    for t in words[1..].iter().filter(|w| !w.contains('=')) {
                        if !targets.contains(t.as_str()) {
                            faults.push(format!("{}:{}: make has no target {t:?}", b.page, b.line));
                        }
                    }
                }
                _ => aws += 1,
            }
        }
    }
    (parsed, aws)
}

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(path: &Path) -> BTreeSet<String> {
    let mut inside = false;
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            if l.starts_with("```") {
                inside = !inside;
            }
            !inside && l.starts_with('#')
        })
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

fn check_links(page: &Path, faults: &mut Vec<String>) -> usize {
    let text = fs::read_to_string(page).expect("page");
    let dir = page.parent().unwrap();
    let mut n = 0;
    for (i, _) in text.match_indices("](") {
        let rest = &text[i + 2..];
        let Some(end) = rest.find(')') else { continue };
        let target = &rest[..end];
        if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
            continue;
        }
        n += 1;
        let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
        let path = if file.is_empty() {
            page.to_path_buf()
        } else {
            dir.join(file)
        };
        if !path.exists() {
            faults.push(format!("{}: link to {target}: no such file", rel(page)));
        } else if !anchor.is_empty()
            && path.extension().is_some_and(|e| e == "md")
            && !anchors(&path).contains(anchor)
        {
            faults.push(format!("{}: link to {target}: no such heading", rel(page)));
        }
    }
    n
}

#[test]
fn every_example_in_the_docs_runs_and_says_what_it_does() {
    let targets = make_targets();
    let mut faults = Vec::new();
    let (mut yaml, mut runs, mut parsed, mut aws, mut json, mut links) = (0, 0, 0, 0, 0, 0);
    for page in pages() {
        links += check_links(&page, &mut faults);
        for b in blocks(&page) {
            match b.info.as_str() {
                "yaml" | "yaml builtin" => {
                    yaml += 1;
                    check_yaml(&b, &mut faults);
                }
                "console" => runs += check_console(&b, &mut faults),
                "sh" => {
                    let (p, a) = check_sh(&b, &targets, &mut faults);
                    parsed += p;
                    aws += a;
                }
                "json" => {
                    json += 1;
                    if let Err(e) = serde_json::from_str::<serde_json::Value>(&b.text) {
                        faults.push(format!("{}:{}: not JSON: {e}", b.page, b.line));
                    }
                }
                "text" => {}
                other => faults.push(format!(
                    "{}:{}: a code block without a known kind ({other:?}): say text, console, sh, yaml or json",
                    b.page, b.line
                )),
            }
        }
    }
    eprintln!(
        "docs: {yaml} rule documents loaded and tested, {runs} command lines run and compared, \
         {parsed} command lines parsed, {aws} AWS or shell command lines not run, {json} JSON \
         examples parsed, {links} links followed"
    );
    assert!(
        faults.is_empty(),
        "{} fault(s) in the docs:\n{}",
        faults.len(),
        faults.join("\n\n")
    );
    // The checks check something (today: 9 rule documents, 3 runs, 19 parsed lines, 108 links).
    assert!(
        yaml >= 8 && runs >= 3 && parsed >= 15 && links >= 100,
        "too few examples found"
    );
}

#[test]
fn the_checks_catch_a_stale_example() {
    assert_eq!(
        commands("aws s3 cp s3://b/k - | trail-alerts scan --since '2 h' -  # comment"),
        [
            vec!["aws", "s3", "cp", "s3://b/k", "-"],
            vec!["trail-alerts", "scan", "--since", "2 h", "-"]
        ]
    );
    assert!(Cli::try_parse_from(["trail-alerts", "scan", "--no-such-flag", "x"]).is_err());
    assert_eq!(steady("8 alerts in 0.05s"), steady("8 alerts in 1.25s"));
    assert_ne!(steady("8 alerts in 0.05s"), steady("9 alerts in 0.05s"));
    assert_eq!(slug("`doctor`: checking access"), "doctor-checking-access");
    assert_eq!(
        slug("Backfill: an organisation's history through today's rules"),
        "backfill-an-organisations-history-through-todays-rules"
    );
}
