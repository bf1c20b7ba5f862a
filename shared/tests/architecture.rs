//! The library's modules depend on each other one way only (ARCHITECTURE.md, "Code
//! map"): parsers and helpers, then the queue (the one owner of EVENT_DIR) and the
//! mapping, then the collector and the shipper, then the operator commands. Every
//! `crate::<module>` path in the product code (tests left out) is an edge; an edge to a
//! module of the same layer or a higher one, or a module missing from [`LAYERS`], fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of `shared/src` and its layer: a module may use only modules
/// of lower layers. `testdata` (unit tests' event files and helpers) is on top.
const LAYERS: &[(&str, u8)] = &[
    ("escape", 0),
    ("hex", 0),
    ("exit", 0),
    ("time", 0),
    ("testdata", 7),
    ("index", 1),
    ("config", 1),
    ("threshold", 1),
    ("safefs", 1),
    ("control", 1),
    ("auditlog", 2),
    ("logging", 2),
    ("sguil", 2),
    ("manual", 2),
    ("alert", 3),
    ("queue", 3),
    ("state", 4),
    ("privilege", 4),
    ("collect", 5),
    ("ship", 5),
    ("requeue", 6),
    ("status", 6),
    ("show", 6),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("tests.rs") {
            out.push(p);
        }
    }
}

/// The module a file belongs to: its first path component under `src/`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a file without its inline test module (by convention its last item).
fn product_code(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    }
}

fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let from = module_of(&src, &f);
        if from == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let code = product_code(&text);
        for (i, _) in code.match_indices("crate::") {
            let to: String = code[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !to.is_empty() && to != from {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

#[test]
fn modules_depend_only_on_lower_layers() {
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(m) = line.strip_prefix("pub mod ") {
            let m = m.trim_end_matches(';');
            assert!(
                layer.contains_key(m),
                "module `{m}` has no layer in tests/architecture.rs"
            );
        }
    }
    let mut wrong = Vec::new();
    for (from, tos) in edges() {
        let lf = layer[from.as_str()];
        for to in tos {
            let lt = *layer
                .get(to.as_str())
                .unwrap_or_else(|| panic!("`{from}` uses `crate::{to}`, which has no layer"));
            if lt >= lf {
                wrong.push(format!("{from} (layer {lf}) uses {to} (layer {lt})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_the_dependencies_it_judges() {
    // So that the test above cannot pass by reading nothing.
    let e = edges();
    assert!(
        e["ship"].contains("queue") && e["ship"].contains("sguil"),
        "{e:?}"
    );
    assert!(e["requeue"].contains("collect"), "{e:?}");
    assert!(e["collect"].contains("queue"), "{e:?}");
}

/// The longest a product function may be, in lines from its `fn` to its closing brace
/// (the issue "Files by concept, names by role": a reader takes in a function whole).
const MAX_FUNCTION_LINES: usize = 100;

/// Functions over the limit still waiting for their split, as `path:name`. None is
/// left: every product function is within the limit. The list only shrinks: a function
/// on it that is no longer long fails the test too.
const LONG_FOR_NOW: &[&str] = &[];

/// The functions of rustfmt-formatted `code`: (name, first line number, lines), each
/// from its `fn` line to the first line after it that is its indentation and `}`.
/// Declarations without a body (a trait's) are left out.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let mut words = body;
        for q in [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "const ",
            "async ",
            "unsafe ",
        ] {
            words = words.strip_prefix(q).unwrap_or(words);
        }
        let Some(rest) = words.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // The signature ends at the first line ending in `{` (a body) or `;` (none).
        let Some(open) = (i..lines.len()).find(|&j| {
            let l = lines[j].trim_end();
            l.ends_with('{') || l.ends_with(';')
        }) else {
            continue;
        };
        if lines[open].trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = (open + 1..lines.len()).find(|&j| lines[j].trim_end() == close) {
            out.push((name, i + 1, end - i + 1));
        }
    }
    out
}

/// Every product source file: the library's, the binaries' (unit tests left out).
/// Each as (path from the workspace root, full path).
fn product_files() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for dir in ["shared/src", "shipper/src", "collector/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.retain(|f| !f.ends_with("testdata.rs"));
    files
        .into_iter()
        .map(|f| (f.strip_prefix(root).unwrap().display().to_string(), f))
        .collect()
}

#[test]
fn no_product_function_is_longer_than_a_hundred_lines() {
    let mut long = Vec::new();
    let mut waiting = BTreeSet::new();
    for (rel, f) in product_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        for (name, line, n) in functions(product_code(&text)) {
            if n <= MAX_FUNCTION_LINES {
                continue;
            }
            let key = format!("{rel}:{name}");
            if LONG_FOR_NOW.contains(&key.as_str()) {
                waiting.insert(key);
            } else {
                long.push(format!("{rel}:{line}: {name}, {n} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines (split them into named pieces):\n{}",
        long.join("\n")
    );
    let done: Vec<&&str> = LONG_FOR_NOW
        .iter()
        .filter(|k| !waiting.contains(**k))
        .collect();
    assert!(
        done.is_empty(),
        "no longer over {MAX_FUNCTION_LINES} lines: take them off LONG_FOR_NOW: {done:?}"
    );
}

#[test]
fn the_length_check_measures_what_it_judges() {
    // So that the test above cannot pass by finding no function, or none whole.
    let body = "    x += 1;\n".repeat(MAX_FUNCTION_LINES);
    let code = format!(
        "trait T {{\n    fn declared(&self);\n}}\n\n/// Doc.\npub(crate) fn long(\n    x: u32,\n) -> u32 {{\n{body}    x\n}}\n\nimpl S {{\n    fn short(&self) -> u32 {{\n        1\n    }}\n}}\n"
    );
    assert_eq!(
        functions(&code),
        [
            ("long".to_string(), 6, MAX_FUNCTION_LINES + 5),
            ("short".to_string(), MAX_FUNCTION_LINES + 13, 3)
        ]
    );
    let all: usize = product_files()
        .iter()
        .map(|(_, f)| functions(&std::fs::read_to_string(f).unwrap()).len())
        .sum();
    assert!(all > 500, "{all} functions found in the product code");
}

/// The names of EVENT_DIR (`queue/layout.rs`'s constants) and their values.
fn queue_names() -> Vec<(String, String)> {
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/queue/layout.rs");
    let text = std::fs::read_to_string(layout).unwrap();
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("pub const ")?;
            let (name, rest) = rest.split_once(':')?;
            let value = rest.split('"').nth(1)?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// Where product code outside `queue/` names a file of EVENT_DIR: a path to one of
/// `layout`'s constants (`queue::layout::HELD_DIR`, `queue::FAILED_DIR`, a `use` group
/// with one), or a path joined with one of their values (`join("failed")`,
/// `join(".journal")`). (A message may still say `failed/`.)
fn names_of_queue_files(code: &str, names: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for (at, _) in code.match_indices("queue::") {
        if code[..at].chars().next_back().is_some_and(is_word) {
            continue; // `requeue::`
        }
        // The path and any `{…}` groups after it.
        let mut depth = 0i32;
        let path: String = code[at..]
            .chars()
            .take_while(|&c| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                depth >= 0 && (is_word(c) || ":{}, \n".contains(c)) && !(depth == 0 && c == ' ')
            })
            .collect();
        for word in path.split(|c: char| !is_word(c)) {
            if names.iter().any(|(n, _)| n == word) {
                found.push(word.to_string());
            }
        }
    }
    for (_, value) in names {
        for quoted in [format!("join(\"{value}\""), format!("join(\"{value}/")] {
            if code.contains(&quoted) {
                found.push(quoted);
            }
        }
    }
    found
}

/// The queue module's promise (`queue/mod.rs`): it owns EVENT_DIR, every name in it
/// and every operation on it (list, hold, release, quarantine, restore, remove, count);
/// nothing else names a file there. The collector, the shipper and the operator
/// commands go through its functions.
#[test]
fn only_the_queue_module_names_a_file_in_event_dir() {
    let names = queue_names();
    let mut wrong = Vec::new();
    for (rel, f) in product_files() {
        if rel.starts_with("shared/src/queue/") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for what in names_of_queue_files(product_code(&text), &names) {
            wrong.push(format!("{rel}: {what}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "EVENT_DIR's names outside the queue module (give the queue the operation):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_queue_name_check_finds_each_way_of_naming() {
    // So that the test above cannot pass by knowing no name or seeing no path.
    let names = queue_names();
    assert!(
        names
            .iter()
            .any(|(n, v)| n == "FAILED_DIR" && v == "failed")
            && names.len() >= 15,
        "{names:?}"
    );
    let found = |code: &str| names_of_queue_files(code, &names);
    assert_eq!(
        found("let p = dir.join(crate::queue::layout::HELD_DIR);"),
        ["HELD_DIR"]
    );
    assert_eq!(
        found("use crate::queue::{\n    EntryName, Queue, FAILED_DIR,\n};"),
        ["FAILED_DIR"]
    );
    assert_eq!(
        found("use modsec2sguil::queue::layout::{legacy, JOURNAL_FILE};"),
        ["JOURNAL_FILE"]
    );
    assert_eq!(found(r#"dir.join(".journal")"#), ["join(\".journal\""]);
    assert_eq!(found(r#"dir.join("failed/x")"#), ["join(\"failed/"]);
    assert!(found(
        "crate::requeue::FAILED_DIR; crate::queue::Queue::open(d); crate::state::BACKLOG_FILE"
    )
    .is_empty());
}
