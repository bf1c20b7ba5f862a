//! Every skip goes through the one mechanism (issue #28, part 2): a test that cannot run
//! here calls `skip_or_fail` (the end-to-end tests' in `support/mod.rs`, the unit tests'
//! in `shared/src/testdata.rs`, or a helper that calls one of them, such as
//! `root_or_skip` or `program_or_skip`), so that `MODSEC2SGUIL_REQUIRE_ALL=1` turns the
//! skip into a failure. This test reads every Rust source of the workspace and fails on
//! a test that could pass by returning early any other way:
//!
//! - a `println!`/`eprintln!` saying "skip", "not run" or "not checking" outside the
//!   two helpers (a hand-made skip message);
//! - a `return;` in a `#[test]` function whose guarding statement (the `if …` or
//!   `let … else` around it) calls nothing that reaches `skip_or_fail`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The two homes of the mechanism: the only files that may print a skip.
const HELPERS: &[&str] = &["shared/src/testdata.rs", "tests/support/mod.rs"];

struct Source {
    rel: String,
    lines: Vec<String>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn sources() -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(&p, out);
                }
            } else if name.ends_with(".rs") {
                out.push(p);
            }
        }
    }
    let root = workspace();
    let mut files = Vec::new();
    for top in ["shared", "collector", "shipper", "tests", "examples"] {
        if root.join(top).is_dir() {
            walk(&root.join(top), &mut files);
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|p| Source {
            rel: p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            lines: std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect(),
        })
        .collect()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The lines of the item that starts at `start` (a `fn` line): up to the `}` at its
/// indentation (or the line itself, for a one-line item).
fn item_end(lines: &[String], start: usize) -> usize {
    let ind = indent(&lines[start]);
    if lines[start].trim_end().ends_with('}') {
        return start;
    }
    (start + 1..lines.len())
        .find(|&i| indent(&lines[i]) == ind && lines[i].trim_start().starts_with('}'))
        .unwrap_or(lines.len() - 1)
}

/// Names called in `text`: identifiers right before a `(`.
fn calls(text: &str) -> BTreeSet<String> {
    let b = text.as_bytes();
    let mut out = BTreeSet::new();
    for (i, &c) in b.iter().enumerate() {
        if c != b'(' || i == 0 {
            continue;
        }
        let mut s = i;
        while s > 0 && (b[s - 1].is_ascii_alphanumeric() || b[s - 1] == b'_') {
            s -= 1;
        }
        if s < i {
            out.insert(text[s..i].to_owned());
        }
    }
    out
}

/// Every function's name → (file, body text) of its definitions.
fn definitions(srcs: &[Source]) -> BTreeMap<String, Vec<(String, String)>> {
    let mut defs: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for s in srcs {
        for (i, l) in s.lines.iter().enumerate() {
            let t = l.trim_start();
            let t = t.strip_prefix("pub ").unwrap_or(t);
            let t = t.strip_prefix("pub(crate) ").unwrap_or(t);
            let Some(rest) = t.strip_prefix("fn ") else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let body = s.lines[i..=item_end(&s.lines, i)].join("\n");
            defs.entry(name).or_default().push((s.rel.clone(), body));
        }
    }
    defs
}

/// Whether calling `name` (from `file`) reaches `skip_or_fail`: a definition in the same
/// file if there is one, else any definition, calls it, directly or through others.
fn reaches_mechanism(
    name: &str,
    file: &str,
    defs: &BTreeMap<String, Vec<(String, String)>>,
    seen: &mut BTreeSet<String>,
) -> bool {
    if name == "skip_or_fail" {
        return true;
    }
    if !seen.insert(name.to_owned()) {
        return false;
    }
    let Some(all) = defs.get(name) else {
        return false;
    };
    let local: Vec<_> = all.iter().filter(|(f, _)| f == file).collect();
    let chosen: Vec<_> = if local.is_empty() {
        all.iter().collect()
    } else {
        local
    };
    chosen.iter().any(|(f, body)| {
        calls(body)
            .iter()
            .filter(|c| c.as_str() != name)
            .any(|c| reaches_mechanism(c, f, defs, seen))
    })
}

/// The statement guarding the `return;` at `ret`: from the line that starts it (an
/// `if` or a `let … else`) to the return.
fn guard(lines: &[String], ret: usize) -> String {
    // The `{` that opens the block holding the return.
    let mut depth = 0i32;
    let mut open = ret;
    for i in (0..ret).rev() {
        for c in lines[i].chars().rev() {
            match c {
                '}' => depth += 1,
                '{' => depth -= 1,
                _ => {}
            }
        }
        if depth < 0 {
            open = i;
            break;
        }
    }
    // Up to the start of the statement (rustfmt puts `else {` or a long condition on
    // lines of their own).
    let mut start = open;
    while start > 0 && start + 8 > open {
        let t = lines[start].trim_start();
        if t.starts_with("let ") || t.starts_with("if ") || t.starts_with("} else") {
            break;
        }
        start -= 1;
    }
    lines[start..=ret].join("\n")
}

fn findings(srcs: &[Source]) -> Vec<String> {
    let defs = definitions(srcs);
    let mut bad = Vec::new();
    for s in srcs {
        if s.rel == "tests/skips.rs" {
            continue;
        }
        let helper = HELPERS.contains(&s.rel.as_str());
        for (i, l) in s.lines.iter().enumerate() {
            // A print and its arguments, which rustfmt may put on the lines below.
            let low = s.lines[i..(i + 3).min(s.lines.len())]
                .join(" ")
                .to_lowercase();
            let low = low.split_whitespace().collect::<Vec<_>>().join(" ");
            let low = low.replace("println!( ", "println!(");
            let prints = l.contains("println!(") && low.contains("println!(\"");
            if !helper
                && prints
                && (low.contains("println!(\"skip")
                    || low.contains("println!(\"\\n*** skip")
                    || low.contains("not run")
                    || low.contains("not checking"))
            {
                bad.push(format!(
                    "{}:{}: a skip printed by hand, not through skip_or_fail: {}",
                    s.rel,
                    i + 1,
                    s.lines[i..(i + 3).min(s.lines.len())]
                        .iter()
                        .map(|l| l.trim())
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
        }
        // Every #[test] function's early `return;`.
        let mut i = 0;
        while i < s.lines.len() {
            if s.lines[i].trim() != "#[test]" {
                i += 1;
                continue;
            }
            let Some(f) = (i + 1..s.lines.len()).find(|&j| s.lines[j].contains("fn ")) else {
                break;
            };
            let end = item_end(&s.lines, f);
            for r in f..=end {
                if s.lines[r].trim() != "return;" {
                    continue;
                }
                let g = guard(&s.lines, r);
                let ok = calls(&g)
                    .iter()
                    .any(|c| reaches_mechanism(c, &s.rel, &defs, &mut BTreeSet::new()));
                if !ok {
                    bad.push(format!(
                        "{}:{}: a test returns early without skip_or_fail:\n{g}",
                        s.rel,
                        r + 1
                    ));
                }
            }
            i = end + 1;
        }
    }
    bad
}

#[test]
fn no_test_can_pass_by_returning_early_outside_the_skip_mechanism() {
    let srcs = sources();
    assert!(
        srcs.iter().any(|s| s.rel == "shared/src/safefs.rs")
            && srcs.iter().any(|s| s.rel == "tests/support/mod.rs"),
        "the workspace's sources were not found"
    );
    let bad = findings(&srcs);
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

/// The scanner itself: the patterns it exists for are found, the mechanism's are not.
#[test]
fn the_scanner_finds_a_hand_made_skip_and_passes_the_mechanism() {
    let src = |rel: &str, text: &str| Source {
        rel: rel.into(),
        lines: text.lines().map(str::to_owned).collect(),
    };
    let helper = src(
        "tests/support/mod.rs",
        "pub fn skip_or_fail(test: &str, why: &str) {\n    eprintln!(\"\\n*** SKIPPED {test}: {why}\");\n}\n\
         pub fn program_or_skip(p: &str, test: &str) -> Option<u8> {\n    skip_or_fail(test, p);\n    None\n}\n",
    );
    let good = src(
        "tests/good.rs",
        "#[test]\nfn a() {\n    let Some(x) = program_or_skip(\"tclsh\", \"a\") else {\n        return;\n    };\n}\n\
         #[test]\nfn b() {\n    if !is_root() {\n        skip_or_fail(\"b\", \"needs root\");\n        return;\n    }\n}\n",
    );
    assert!(findings(&[helper, good]).is_empty());
    let helper = || {
        src(
            "tests/support/mod.rs",
            "pub fn skip_or_fail(test: &str, why: &str) {\n}\n",
        )
    };
    for (bad, what) in [
        (
            "#[test]\nfn c() {\n    if !is_root() {\n        eprintln!(\"SKIP: needs root\");\n        return;\n    }\n}\n",
            "printed by hand",
        ),
        (
            "#[test]\nfn d() {\n    if std::env::var(\"X\").is_err() {\n        return;\n    }\n}\n",
            "returns early",
        ),
        (
            "#[test]\nfn e() {\n    let Some(x) = which(\"tclsh\") else {\n        return;\n    };\n}\n",
            "returns early",
        ),
    ] {
        let found = findings(&[helper(), src("tests/bad.rs", bad)]);
        assert!(found.iter().any(|f| f.contains(what)), "{bad}: {found:?}");
    }
}
