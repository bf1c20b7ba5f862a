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
