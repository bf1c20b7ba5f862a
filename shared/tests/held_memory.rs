//! The collector's memory for the lines it holds is bounded in bytes (ARCHITECTURE.md,
//! "The collector never blocks Apache and never loses a line"): a flood of 60 KiB lines
//! against a stalled worker is spooled, not held. A test binary of its own: its global
//! allocator counts every heap byte of the process, so no other test may run beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modsec2sguil::collect::{InputLine, Pipeline, Stages, Stats, MAX_PIPELINE_BYTES};

/// The system allocator, counting the bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = IN_USE.fetch_add(by, Ordering::SeqCst) + by;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

// SAFETY: every call goes to System as it came; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        IN_USE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            IN_USE.fetch_sub(layout.size(), Ordering::SeqCst);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Lines made as they are read (the input itself takes no memory): `long` lines of
/// [`LONG_BYTES`] first, then `ordinary` short ones, each starting with its number.
struct Flood {
    long: usize,
    total: usize,
    next: usize,
    line: Vec<u8>,
    at: usize,
}

const LONG_BYTES: usize = 60 * 1024;

impl Read for Flood {
    /// Fills `buf` (a pipe as fast as the reader: it never waits for input to gather).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            if self.at == self.line.len() {
                if self.next == self.total {
                    break;
                }
                self.line.clear();
                self.line
                    .extend_from_slice(format!("{} ", self.next).as_bytes());
                let len = if self.next < self.long {
                    LONG_BYTES
                } else {
                    300
                };
                self.line.resize(len - 1, b'x');
                self.line.push(b'\n');
                self.next += 1;
                self.at = 0;
            }
            let n = (buf.len() - filled).min(self.line.len() - self.at);
            buf[filled..filled + n].copy_from_slice(&self.line[self.at..self.at + n]);
            self.at += n;
            filled += n;
        }
        Ok(filled)
    }
}

/// A worker that hangs on its first line until `go` is set (a disk that stalls), then
/// notes the number of each line it is given.
struct Gated {
    go: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<usize>>>,
}

impl Gated {
    fn handle(&mut self, line: &InputLine) {
        while !self.go.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let number = line.bytes.split(|&b| b == b' ').next().unwrap();
        let number = std::str::from_utf8(number).unwrap().parse().unwrap();
        self.seen.lock().unwrap().push(number);
    }
}

/// What the heap may hold beyond [`MAX_PIPELINE_BYTES`]: the spill thread's copy of the
/// batch it writes (2 MiB and a line), the reader's buffer and line, the channels' slots
/// (16,384 on the way to the spool), the spool's read buffer, this test's own vectors.
/// Before the bound, the lines waiting for the worker alone took 60 MiB here (512 lines
/// of 60 KiB, each held twice).
const MARGIN: usize = 8 * 1024 * 1024;

/// 2,000 lines of 60 KiB (then 10,000 ordinary ones) while the worker hangs: every line
/// is spooled or held, and the heap never holds more than [`MAX_PIPELINE_BYTES`] of them
/// (plus [`MARGIN`]), by the pipeline's own count and by the allocator's, neither while
/// the worker hangs nor while it drains the spool afterwards; then every line is handled
/// once.
#[test]
fn a_flood_of_long_lines_against_a_stalled_worker_is_held_within_the_byte_bound() {
    const LONG: usize = 2_000;
    const TOTAL: usize = LONG + 10_000;
    let dir = tempfile::tempdir().unwrap();
    let go = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::with_capacity(TOTAL)));
    let stats = Arc::new(Stats::default());
    let sink = Gated {
        go: go.clone(),
        seen: seen.clone(),
    };
    let flood = Flood {
        long: LONG,
        total: TOTAL,
        next: 0,
        line: Vec::with_capacity(LONG_BYTES),
        at: 0,
    };
    let baseline = IN_USE.load(Ordering::SeqCst);
    PEAK.store(baseline, Ordering::SeqCst);
    let mut sink = sink;
    // One step: nothing to check, all the work in the commit.
    let stages = Stages {
        check: Box::new(|line| line),
        verify: None,
        commit: Box::new(move |line: InputLine| sink.handle(&line)),
    };
    let p = Pipeline::start(flood, stages, dir.path(), stats.clone());
    // A guard against a hang, not a measure: the reader never waits for the worker.
    assert!(
        matches!(
            p.input_end().recv_timeout(Duration::from_secs(120)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        ),
        "the reader is stuck behind the stalled worker"
    );
    let stalled_peak = PEAK.load(Ordering::SeqCst) - baseline;
    let stalled_count = stats.held_peak.load(Ordering::SeqCst);
    go.store(true, Ordering::SeqCst);
    p.finish().unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - baseline;
    let count = stats.held_peak.load(Ordering::SeqCst);
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "heap peak {:.1} MiB while the worker hung ({:.1} MiB by the pipeline's count), \
         {:.1} MiB over the whole run ({:.1} MiB by its count); bound {:.0} MiB + {:.0} MiB margin; \
         {} lines spooled",
        mib(stalled_peak),
        mib(stalled_count as usize),
        mib(peak),
        mib(count as usize),
        mib(MAX_PIPELINE_BYTES),
        mib(MARGIN),
        stats.spilled.load(Ordering::SeqCst)
    );
    assert!(
        count as usize <= MAX_PIPELINE_BYTES,
        "the pipeline counted {count} bytes of lines held at once, over {MAX_PIPELINE_BYTES}"
    );
    assert!(
        peak <= MAX_PIPELINE_BYTES + MARGIN,
        "the heap grew by {peak} bytes, over {MAX_PIPELINE_BYTES} + {MARGIN}"
    );
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..TOTAL).collect::<Vec<_>>(),
        "every line handled once"
    );
}
