//! Sguil's analyst console's detail widget, for tests and benchmarks: an
//! `iwidgets::scrolledhtml` made with sguil.tk's options, in `wish` under an Xvfb of our
//! own, driven by `render_detail.tcl` beside this file.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{program_or_skip, skip_or_fail};

/// An Xvfb server on a display it chose, stopped (by PID) when dropped.
pub struct Xvfb {
    child: Child,
    pub display: String,
}

impl Xvfb {
    pub fn start(test: &str) -> Option<Xvfb> {
        let xvfb = program_or_skip("Xvfb", test)?;
        let mut child = Command::new(xvfb)
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x900x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Xvfb");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read Xvfb's display number");
        let n = line.trim();
        assert!(
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
            "Xvfb printed no display number ({line:?})"
        );
        Some(Xvfb {
            display: format!(":{n}"),
            child,
        })
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the widget did with one detail.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub name: String,
    pub millis: f64,
    /// Link tags (`href*`) the widget made: each is a click that opens a browser.
    pub links: usize,
    /// Embedded windows and images (an `<img>` loads a file; a table is a window).
    pub windows: usize,
    pub images: usize,
    /// The text the widget shows.
    pub text: String,
}

/// The longest one render may take before the widget counts as hung: a render takes
/// milliseconds to a few hundred; this is far past what a busy machine adds, so it only
/// ends a wish that will not return. (How slow a render may be against the others is
/// checked in tests/analyst_view.rs.)
pub const RENDER_LIMIT: Duration = Duration::from_secs(60);

/// Where `wish` is and whether iwidgets loads in it; else a skip (a failure in CI).
pub fn wish_or_skip(test: &str) -> Option<PathBuf> {
    let wish = program_or_skip("wish", test)?;
    let iwidgets = std::fs::read_dir("/usr/share/tcltk")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("iwidgets"))
        })
        .unwrap_or(false);
    if !iwidgets {
        skip_or_fail(test, "iwidgets4 (Sguil's detail widget) is not installed");
        return None;
    }
    Some(wish)
}

/// Renders each `(name, detail)` in the widget, one after another in one window. Fails
/// the test, naming the detail, when a render does not return within [`RENDER_LIMIT`].
/// With `keep_shown`, that detail is left on screen and a screenshot of it is written
/// to that path (needs `xwd` and ImageMagick's `convert`).
pub fn render(
    wish: &Path,
    xvfb: &Xvfb,
    details: &[(String, Vec<u8>)],
    keep_shown: Option<(&str, &Path)>,
) -> Vec<Rendered> {
    let dir = tempfile::tempdir().unwrap();
    for (name, detail) in details {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "detail name {name:?}"
        );
        let hex = modsec2sguil::hex::upper(detail);
        std::fs::write(dir.path().join(format!("{name}.hex")), hex).unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/render_detail.tcl");
    let mut cmd = Command::new(wish);
    cmd.arg(&script).arg(dir.path());
    if let Some((name, _)) = keep_shown {
        cmd.arg(name);
    }
    let mut wish = Wish(
        cmd.env("DISPLAY", &xvfb.display)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wish"),
    );
    let child = &mut wish.0;
    let stdin: ChildStdin = child.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut results = Vec::new();
    let mut rendering = String::from("(none yet)");
    // Starting wish and loading iwidgets takes a moment before the first render.
    let mut deadline = Instant::now() + RENDER_LIMIT + Duration::from_secs(20);
    while results.len() < details.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
                match why {
                    mpsc::RecvTimeoutError::Timeout => panic!(
                        "the widget did not finish rendering detail {rendering} within \
                         {RENDER_LIMIT:?} (the analyst's console would hang); wish said: {err}"
                    ),
                    mpsc::RecvTimeoutError::Disconnected => {
                        panic!("wish ended while rendering detail {rendering}; it said: {err}")
                    }
                }
            }
        };
        if line.starts_with("LINK ") {
            panic!("the widget followed a link: {line}");
        }
        if let Some(name) = line.strip_prefix("RENDERING ") {
            rendering = name.to_string();
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        assert!(
            f.len() == 6 && f[0] == "RENDERED",
            "unexpected line from the renderer: {line}"
        );
        let name = f[1].to_string();
        let text = std::fs::read_to_string(dir.path().join(format!("{name}.txt"))).unwrap();
        results.push(Rendered {
            millis: f[2].parse().unwrap(),
            links: f[3].parse().unwrap(),
            windows: f[4].parse().unwrap(),
            images: f[5].parse().unwrap(),
            text,
            name,
        });
        deadline = Instant::now() + RENDER_LIMIT;
    }
    if let Some((name, png)) = keep_shown {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the renderer never said the detail is shown");
        assert_eq!(line, format!("SHOWN {name}"));
        // Let Tk draw the window before the picture is taken.
        std::thread::sleep(Duration::from_millis(500));
        let shot = Command::new("sh")
            .arg("-c")
            .arg("xwd -root -silent | convert xwd:- -crop 900x700+0+0 +repage \"$1\"")
            .arg("sh")
            .arg(png)
            .env("DISPLAY", &xvfb.display)
            .status()
            .expect("run xwd | convert");
        assert!(shot.success(), "screenshot failed (xwd and convert needed)");
    }
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "wish exited with {status}");
    results
}

/// The `wish` process, stopped (by PID) when dropped: also when a check fails midway.
struct Wish(Child);

impl Drop for Wish {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
