//! Shared helpers for the end-to-end tests: fixture paths, the built binaries, and the
//! rule that a missing program skips a test locally but fails it in CI.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub mod apache;
pub mod collector;
pub mod mariadb;
pub mod nginx;
pub mod process;
pub mod real_sguild;
pub mod renderer;
pub mod sguild;
pub mod shipper;
pub mod state;
pub mod web_user;

/// `tests/fixtures/` of this checkout.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The recorded corpus runs under `tests/fixtures/`, one directory of event files each.
pub const CORPUS_RUNS: &[&str] = &[
    "modsec-2.9/native",
    "modsec-2.9/json",
    "modsec-2.9/native-on",
    "modsec-2.9/json-on",
    "modsec-3/native",
    "modsec-3/json",
];

/// Every file below `dir`, sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Copies the tree `from` to `to` (files and directories only), e.g. a corpus storage
/// dir that a test hard-links from: links into `tests/fixtures/` itself would change it.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Set (to anything but empty or `0`) by `.ci/run`: a test that cannot find a program it
/// needs fails instead of skipping.
pub const REQUIRE_ENV: &str = "MODSEC2SGUIL_REQUIRE_ALL";

/// Call when a test cannot run here: a loud skip on a developer machine, a failure in CI.
pub fn skip_or_fail(test: &str, why: &str) {
    let required = std::env::var(REQUIRE_ENV)
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false);
    if required {
        panic!("{test}: cannot run: {why} ({REQUIRE_ENV} is set, so this is a failure)");
    }
    eprintln!("\n*** SKIPPED {test}: {why}\n*** (set {REQUIRE_ENV}=1 to make this a failure; .ci/run does)\n");
}

/// Path of a workspace binary, built (once per test process) with the same profile as
/// the tests. Cargo builds another package's binaries only for that package's own
/// tests, so the harness asks cargo itself.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "modsec-shipper",
            "-p",
            "modsec-collector",
        ]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        let status = cmd.status().expect("run cargo build for the binaries");
        assert!(status.success(), "cargo build of the binaries failed");
        // target/<profile>/deps/<this test> -> target/<profile>
        let exe = std::env::current_exe().expect("current_exe");
        exe.parent()
            .and_then(Path::parent)
            .expect("target profile dir")
            .to_path_buf()
    });
    let path = dir.join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// Where `program` is; if it is not installed, [`skip_or_fail`] for `test` and `None`.
pub fn program_or_skip(program: &str, test: &str) -> Option<PathBuf> {
    let found = which(program);
    if found.is_none() {
        skip_or_fail(test, &format!("{program} is not installed"));
    }
    found
}

/// Where an external program is, if it is installed.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// A small tmpfs mounted for one test, unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str, test: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            skip_or_fail(test, "cannot mount a tmpfs (needs root)");
            return None;
        }
        Some(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
