//! The collector's loops, driven through their control channel as the binary's signals
//! drive them.

use super::*;
use crate::queue::LinkMode;
use crate::testdata::{entries_in, wait_for};
use crossbeam_channel::unbounded;
use md5::{Digest, Md5};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

fn settings(dir: &Path) -> CollectorSettings {
    let s = CollectorSettings {
        storage_dir: dir.join("audit"),
        queue_dir: dir.join("queue"),
        index_file: Some(dir.join("index.log")),
        link_mode: LinkMode::Hardlink,
        verify_md5: true,
        runas: None,
        max_event_bytes: crate::queue::DEFAULT_MAX_EVENT_BYTES,
        state_dir: dir.join("state"),
        event_owner: None,
    };
    std::fs::create_dir_all(&s.storage_dir).unwrap();
    std::fs::create_dir_all(&s.queue_dir).unwrap();
    s
}

/// Writes event `n` under the storage dir and returns its index line.
fn event(dir: &Path, n: usize) -> Vec<u8> {
    let rel = format!("/www-data/20261128/20261128-0214/20261128-021431-run{n}");
    let body = format!("event {n}");
    let path = dir.join("audit").join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &body).unwrap();
    crate::testdata::give_to_web_user(&path);
    let md5 = crate::hex::lower(&Md5::digest(body.as_bytes()));
    format!(
        "lab.example 127.0.0.1 - - [28/Nov/2026:02:14:31.009836 +0000] \"GET / HTTP/1.1\" 403 239 \"-\" \"-\" RUNID{n} \"-\" {rel} 0 {} md5:{md5} \n",
        body.len()
    )
    .into_bytes()
}

/// A pipe: what Apache gives the collector as standard input.
fn pipe() -> (std::fs::File, std::fs::File) {
    let (r, w) = rustix::pipe::pipe().unwrap();
    (std::fs::File::from(r), std::fs::File::from(w))
}

fn count(c: &AtomicU64) -> u64 {
    c.load(Ordering::SeqCst)
}

/// `piped` on its own thread, reading a pipe: its dir, the pipe's writing end, the
/// control channel, the queue, the thread.
type Piped = (
    tempfile::TempDir,
    std::fs::File,
    crossbeam_channel::Sender<Control>,
    PathBuf,
    std::thread::JoinHandle<std::io::Result<Arc<Stats>>>,
);

fn start_piped() -> Piped {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (reader, writer) = pipe();
    let (tx, control) = unbounded();
    let queue = s.queue_dir.clone();
    let running = std::thread::spawn(move || piped(s, reader, None, &control));
    (dir, writer, tx, queue, running)
}

#[test]
fn piped_queues_every_line_until_the_input_ends_and_reopens_on_reload() {
    let (dir, mut writer, tx, queue, running) = start_piped();
    writer.write_all(&event(dir.path(), 1)).unwrap();
    wait_for("the first event", || entries_in(&queue) == 1);
    // Reload reopens the index file: one renamed away (logrotate) is not written again.
    std::fs::rename(dir.path().join("index.log"), dir.path().join("index.log.1")).unwrap();
    tx.send(Control::Reload).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    writer.write_all(&event(dir.path(), 2)).unwrap();
    wait_for("the second event", || entries_in(&queue) == 2);
    // One Stop is only announced: Apache's old children may still write.
    tx.send(Control::Stop).unwrap();
    writer.write_all(&event(dir.path(), 3)).unwrap();
    wait_for("the third event after one Stop", || entries_in(&queue) == 3);
    drop(writer);
    let stats = running.join().unwrap().unwrap();
    assert_eq!((count(&stats.read), count(&stats.queued)), (3, 3));
    let old = std::fs::read_to_string(dir.path().join("index.log.1")).unwrap();
    let new = std::fs::read_to_string(dir.path().join("index.log")).unwrap();
    assert_eq!(
        (old.lines().count(), new.lines().count()),
        (1, 2),
        "{old}\n{new}"
    );
}

#[test]
fn a_second_stop_ends_piped_at_once_with_the_input_still_open() {
    let (dir, mut writer, tx, queue, running) = start_piped();
    writer.write_all(&event(dir.path(), 1)).unwrap();
    wait_for("the event", || entries_in(&queue) == 1);
    tx.send(Control::Stop).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !running.is_finished(),
        "one Stop waits for the end of input"
    );
    let asked = Instant::now();
    tx.send(Control::Stop).unwrap();
    let stats = running.join().unwrap().unwrap();
    // "At once": nothing is being written (the one event is queued), so the second Stop
    // has nothing to wait for and only logs and returns, which takes milliseconds. The
    // bound is half the grace: a margin of 2.5 s for a loaded machine, while a piped
    // that waited out the grace regardless (>= 5 s) is still caught.
    let took = asked.elapsed();
    assert!(
        took < ABANDON_GRACE / 2,
        "the second Stop took {took:?}: it waited for the grace ({ABANDON_GRACE:?}) with nothing to wait for"
    );
    assert_eq!(count(&stats.read), 1);
    drop(writer);
}

#[test]
fn piped_and_follow_say_why_they_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.queue_dir = PathBuf::from("/proc/self/no-such-queue");
    let (_tx, control) = unbounded();
    let e = piped(s.clone(), std::io::empty(), None, &control)
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains("cannot open the queue /proc/self/no-such-queue"),
        "{e}"
    );
    let index = dir.path().join("followed.log");
    let e = follow(s, &index, StartAt::Start, &control).err().unwrap();
    assert!(
        e.to_string()
            .contains("cannot open the queue /proc/self/no-such-queue"),
        "{e}"
    );
}

#[test]
fn follow_reads_as_the_file_grows_and_saves_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let index = dir.path().join("followed.log");
    std::fs::write(&index, event(dir.path(), 1)).unwrap();
    let (tx, control) = unbounded();
    let queue = s.queue_dir.clone();
    let state_dir = s.state_dir.clone();
    let followed = index.clone();
    let running = std::thread::spawn(move || follow(s, &followed, StartAt::Start, &control));
    wait_for("the first line", || entries_in(&queue) == 1);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&index)
        .unwrap()
        .write_all(&event(dir.path(), 2))
        .unwrap();
    wait_for("a line appended later", || entries_in(&queue) == 2);
    let asked = Instant::now();
    tx.send(Control::Stop).unwrap();
    let stats = running.join().unwrap().unwrap();
    // Stopped at its next look (FOLLOW_POLL, 200 ms), not after waiting out an old
    // file's OLD_FILE_GRACE (30 s): 10 s leaves a busy machine 50 polls' margin.
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!((stats.lines, stats.queued), (2, 2));
    let positions = crate::queue::position::saved_positions(&state_dir).unwrap();
    assert_eq!(positions.len(), 1);
    assert_eq!(
        positions[0].1.offset,
        std::fs::metadata(&index).unwrap().len()
    );
}
