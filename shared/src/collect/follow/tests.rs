//! The follower: resuming, rotation both ways (running and stopped), copytruncate,
//! partial lines, late event files, the crash window.

use super::*;
use crate::collect::{CollectorSettings, Stats};
use crate::queue::position::state_name;
use crate::queue::{LinkMode, Queue};
use md5::{Digest, Md5};
use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("audit")).unwrap();
        Setup { dir }
    }
    fn index(&self) -> PathBuf {
        self.dir.path().join("logs/index.log")
    }
    fn queue_dir(&self) -> PathBuf {
        self.dir.path().join("queue")
    }
    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn state(&self) -> crate::state::StateDir {
        crate::state::StateDir::open(&self.state_dir(), None).unwrap()
    }
    fn worker(&self) -> Worker {
        let settings = CollectorSettings {
            storage_dir: self.dir.path().join("audit"),
            queue_dir: self.queue_dir(),
            index_file: None,
            link_mode: LinkMode::Hardlink,
            verify_md5: true,
            runas: None,
            max_event_bytes: crate::queue::DEFAULT_MAX_EVENT_BYTES,
            state_dir: self.state_dir(),
            event_owner: None,
        };
        Worker::new(
            settings,
            Arc::new(AtomicBool::new(false)),
            Arc::new(Stats::default()),
        )
        .unwrap()
    }
    fn follower(&self, start: StartAt) -> Follower {
        fs::create_dir_all(self.queue_dir()).unwrap();
        self.append(""); // nginx creates the index file when it starts
        Follower::open(&self.index(), &self.state(), start).unwrap()
    }
    /// Writes event `id` into the storage dir (unless `write` is false); returns its
    /// libmodsecurity 3 index line (absolute path, float size, no trailing space).
    fn event(&self, id: &str, write: bool) -> String {
        let body = format!("---abc---A--\n[28/Nov/2026:02:13:39 +0000] {id} 127.0.0.1 1 127.0.0.1 80\n---abc---Z--\n\n");
        let path = self
            .dir
            .path()
            .join(format!("audit/20261128/20261128-0213/20261128-021339-{id}"));
        if write {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &body).unwrap();
            crate::testdata::give_to_web_user(&path);
        }
        let md5 = crate::hex::lower(Md5::digest(body.as_bytes()).as_slice());
        format!(
            "lab.example 127.0.0.1 - [28/Nov/2026:02:13:39 +0000] \"GET / HTTP/1.1\" 403 153 - \"curl\" {id} - {} 0 {}.000000 md5:{md5}\n",
            path.display(),
            body.len()
        )
    }
    /// Writes each event file and appends its index line.
    fn add_events<S: AsRef<str>>(&self, ids: &[S]) {
        for id in ids {
            self.append(&self.event(id.as_ref(), true));
        }
    }

    fn append(&self, text: &str) {
        fs::create_dir_all(self.index().parent().unwrap()).unwrap();
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.index())
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }
    /// The unique ids of the queued entries, in queue order.
    fn queued(&self) -> Vec<String> {
        let q = Queue::at(&self.queue_dir());
        q.entries()
            .unwrap()
            .iter()
            .map(|e| {
                let text = fs::read_to_string(self.queue_dir().join(&e.file_name)).unwrap();
                text.lines()
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .nth(2)
                    .unwrap()
                    .to_string()
            })
            .collect()
    }
}

fn ids(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|n| format!("1795832{n:05}.000001")).collect()
}

fn never() -> bool {
    false
}

#[test]
fn lines_are_queued_as_they_come_and_a_restart_resumes_where_it_stopped() {
    let s = Setup::new();
    let all = ids(0..10);
    s.append(&s.event(&all[0], true)); // before the first start: not ours (tail -F)
    let mut f = s.follower(StartAt::End);
    let mut w = s.worker();
    assert_eq!(f.poll(&mut w, &never).unwrap(), 0);
    s.add_events(&all[1..4]);
    // A line being written: half of it now, the rest later.
    let half = s.event(&all[4], true);
    s.append(&half[..30]);
    assert_eq!(f.poll(&mut w, &never).unwrap(), 3);
    assert_eq!(s.queued(), &all[1..4]);
    s.append(&half[30..]);
    assert_eq!(f.poll(&mut w, &never).unwrap(), 1);
    drop(f);
    // Stopped: lines keep coming; the next start reads them, once.
    s.add_events(&all[5..10]);
    let mut f = s.follower(StartAt::End);
    assert_eq!(f.poll(&mut w, &never).unwrap(), 5);
    assert_eq!(s.queued(), &all[1..10]);
    assert_eq!(f.stats.repeats_skipped, 0);
}

#[test]
fn a_crash_before_the_position_was_saved_repeats_nothing() {
    let s = Setup::new();
    let all = ids(0..6);
    let mut f = s.follower(StartAt::Start);
    let mut w = s.worker();
    s.add_events(&all[..3]);
    let saved = fs::read(f.state_path()).unwrap();
    assert_eq!(f.poll(&mut w, &never).unwrap(), 3);
    // As if killed after queueing, before saving: the old position is back.
    fs::write(f.state_path(), saved).unwrap();
    drop(f);
    s.add_events(&all[3..]);
    let mut f = s.follower(StartAt::End);
    assert_eq!(f.poll(&mut w, &never).unwrap(), 6);
    assert_eq!(f.stats.repeats_skipped, 3);
    assert_eq!(s.queued(), all);
}

#[test]
fn rotation_by_rename_while_running_reads_the_old_files_last_lines() {
    let s = Setup::new();
    let all = ids(0..6);
    let mut f = s.follower(StartAt::Start);
    let mut w = s.worker();
    s.append(&s.event(&all[0], true));
    assert_eq!(f.poll(&mut w, &never).unwrap(), 1);
    // logrotate renames; the writer still appends to the old file until it reopens.
    let rotated = s.dir.path().join("logs/index.log.1");
    fs::rename(s.index(), &rotated).unwrap();
    let mut old = fs::OpenOptions::new().append(true).open(&rotated).unwrap();
    old.write_all(s.event(&all[1], true).as_bytes()).unwrap();
    s.append(&s.event(&all[2], true)); // the new file
    assert_eq!(f.poll(&mut w, &never).unwrap(), 1, "the old file's rest");
    assert_eq!(f.poll(&mut w, &never).unwrap(), 1, "then the new file");
    assert_eq!(f.stats.rotations, 1);
    old.write_all(s.event(&all[3], true).as_bytes()).unwrap(); // late, before the reopen
    assert_eq!(f.poll(&mut w, &never).unwrap(), 1);
    let mut got = s.queued();
    got.sort();
    assert_eq!(got, &all[..4]);
}

#[test]
fn rotation_while_stopped_finishes_the_old_file_first() {
    let s = Setup::new();
    let all = ids(0..6);
    let mut f = s.follower(StartAt::Start);
    let mut w = s.worker();
    s.append(&s.event(&all[0], true));
    assert_eq!(f.poll(&mut w, &never).unwrap(), 1);
    drop(f);
    s.append(&s.event(&all[1], true));
    fs::rename(s.index(), s.dir.path().join("logs/index.log-20261128")).unwrap();
    s.append(&s.event(&all[2], true));
    let mut f = s.follower(StartAt::End);
    assert_eq!(f.poll(&mut w, &never).unwrap(), 2);
    assert_eq!(s.queued(), &all[..3]);
    drop(f);
    // Renamed while stopped, and the writer has not created the new file yet.
    s.append(&s.event(&all[3], true));
    fs::rename(s.index(), s.dir.path().join("logs/index.log.1")).unwrap();
    let mut f = Follower::open(&s.index(), &s.state(), StartAt::End).unwrap();
    assert_eq!(f.poll(&mut w, &never).unwrap(), 1);
    assert_eq!(s.queued(), &all[..4]);
    drop(f);
    // The old file gone as well: said loudly, and the new file is read from its start.
    s.append(&s.event(&all[4], true));
    fs::rename(s.index(), s.dir.path().join("logs/gone")).unwrap();
    fs::remove_file(s.dir.path().join("logs/gone")).unwrap();
    fs::remove_file(s.dir.path().join("logs/index.log.1")).unwrap();
    s.append(&s.event(&all[5], true));
    let mut f = s.follower(StartAt::End);
    assert_eq!(f.poll(&mut w, &never).unwrap(), 1);
    assert_eq!(s.queued(), [&all[..4], &all[5..]].concat());
}

#[test]
fn copytruncate_reads_what_was_written_before_the_truncation_from_the_copy() {
    let s = Setup::new();
    let all = ids(0..6);
    let mut f = s.follower(StartAt::Start);
    let mut w = s.worker();
    s.append(&s.event(&all[0], true));
    assert_eq!(f.poll(&mut w, &never).unwrap(), 1);
    let copytruncate = || {
        fs::copy(s.index(), s.dir.path().join("logs/index.log.1")).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(s.index())
            .unwrap()
            .set_len(0)
            .unwrap();
    };
    s.append(&s.event(&all[1], true)); // not read yet when logrotate copies and truncates
    copytruncate();
    assert_eq!(f.poll(&mut w, &never).unwrap(), 1, "the line from the copy");
    assert_eq!(f.stats.truncations, 1);
    s.append(&s.event(&all[2], true));
    assert_eq!(f.poll(&mut w, &never).unwrap(), 1);
    // Truncated, and the writer (O_APPEND) already wrote more than was read before the
    // next look: the file is as long as before, but not the same file.
    s.append(&s.event(&all[3], true));
    copytruncate();
    s.append(&s.event(&all[4], true));
    s.append(&s.event(&all[5], true));
    assert_eq!(f.poll(&mut w, &never).unwrap(), 3);
    assert_eq!(f.stats.truncations, 2);
    assert_eq!(s.queued(), all);
}

#[test]
fn a_line_waits_for_its_event_file_then_is_queued() {
    let s = Setup::new();
    let id = &ids(0..1)[0];
    let mut f = s.follower(StartAt::Start);
    let mut w = s.worker();
    let line = s.event(id, false);
    s.append(&line);
    let writer = {
        let s_dir = s.dir.path().to_path_buf();
        let id = id.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let body = format!("---abc---A--\n[28/Nov/2026:02:13:39 +0000] {id} 127.0.0.1 1 127.0.0.1 80\n---abc---Z--\n\n");
            let path = s_dir.join(format!("audit/20261128/20261128-0213/20261128-021339-{id}"));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            // Whole and the web server's the moment it appears under its name.
            let tmp = path.with_extension("tmp");
            fs::write(&tmp, body).unwrap();
            crate::testdata::give_to_web_user(&tmp);
            fs::rename(tmp, path).unwrap();
        })
    };
    assert_eq!(f.poll(&mut w, &never).unwrap(), 1);
    writer.join().unwrap();
    assert_eq!(f.stats.queued, 1, "{:?}", f.stats);
    assert_eq!(s.queued(), std::slice::from_ref(id));
    // One that never comes goes to the backlog with its reason, after the wait.
    let missing = &ids(1..2)[0];
    s.append(&s.event(missing, false));
    let t = Instant::now();
    assert_eq!(f.poll(&mut w, &never).unwrap(), 1);
    assert!(t.elapsed() >= EVENT_WAIT);
    assert_eq!(f.stats.backlogged, 1);
    let backlog = fs::read_to_string(s.state().join(crate::state::BACKLOG_FILE)).unwrap();
    assert!(backlog.contains(missing.as_str()), "{backlog}");
}

#[test]
fn a_damaged_position_file_is_an_error_naming_it() {
    let s = Setup::new();
    let position = s.state().join(&state_name(&s.index()));
    fs::write(&position, "garbage\n").unwrap();
    let err = match Follower::open(&s.index(), &s.state(), StartAt::End) {
        Err(e) => e,
        Ok(_) => panic!("a damaged position was accepted"),
    };
    assert!(
        err.to_string().contains(&*position.to_string_lossy()),
        "{err}"
    );
}

/// The position lives in the state dir, which only root writes (0.1.0 kept it in the
/// queue, the shipper's user's): it is read checked all the same, a second line of
/// defence.
#[test]
fn a_planted_position_file_is_refused_unread() {
    let s = Setup::new();
    let state = s.state().join(&state_name(&s.index()));
    // A link to /dev/zero would have been read until memory ran out.
    std::os::unix::fs::symlink("/dev/zero", &state).unwrap();
    let err = match Follower::open(&s.index(), &s.state(), StartAt::End) {
        Err(e) => e,
        Ok(_) => panic!("a linked position was read"),
    };
    assert!(err.to_string().contains("is a symbolic link"), "{err}");
    fs::remove_file(&state).unwrap();
    nix::unistd::mkfifo(&state, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let err = match Follower::open(&s.index(), &s.state(), StartAt::End) {
        Err(e) => e,
        Ok(_) => panic!("a FIFO position was read"),
    };
    assert!(err.to_string().contains("is a FIFO"), "{err}");
    fs::remove_file(&state).unwrap();
    fs::write(&state, vec![b'7'; 100_000]).unwrap();
    let err = match Follower::open(&s.index(), &s.state(), StartAt::End) {
        Err(e) => e,
        Ok(_) => panic!("a huge position was read"),
    };
    assert!(err.to_string().contains("holds more than"), "{err}");
}

/// nginx's log directory may be its workers' to write: root follows no link or second
/// hard link there (the secret's lines would be logged as malformed index lines). In a
/// directory only root writes, the configured path is followed as it is.
#[test]
fn a_link_planted_where_others_write_is_refused_and_one_we_made_is_followed() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new();
    let logs = s.index().parent().unwrap().to_path_buf();
    fs::create_dir_all(&logs).unwrap();
    fs::create_dir_all(s.queue_dir()).unwrap();
    let secret = s.dir.path().join("secret");
    fs::write(&secret, "root:$6$secret\n").unwrap();
    std::os::unix::fs::symlink(&secret, s.index()).unwrap();
    // Ours alone: followed.
    assert!(Follower::open(&s.index(), &s.state(), StartAt::Start).is_ok());
    fs::set_permissions(&logs, fs::Permissions::from_mode(0o777)).unwrap();
    let err = match Follower::open(&s.index(), &s.state(), StartAt::Start) {
        Err(e) => e,
        Ok(_) => panic!("a planted link was followed"),
    };
    assert!(err.to_string().contains("symbolic link"), "{err}");
    fs::remove_file(s.index()).unwrap();
    fs::hard_link(&secret, s.index()).unwrap();
    let err = match Follower::open(&s.index(), &s.state(), StartAt::Start) {
        Err(e) => e,
        Ok(_) => panic!("a planted hard link was read"),
    };
    assert!(err.to_string().contains("2 hard links"), "{err}");
}

#[test]
fn a_fifo_is_refused_with_a_reason_not_followed() {
    let s = Setup::new();
    fs::create_dir_all(s.index().parent().unwrap()).unwrap();
    fs::create_dir_all(s.queue_dir()).unwrap();
    nix::unistd::mkfifo(&s.index(), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let err = match Follower::open(&s.index(), &s.state(), StartAt::End) {
        Err(e) => e,
        Ok(_) => panic!("a FIFO was followed"),
    };
    assert!(
        err.to_string().contains("is a FIFO, not a regular file"),
        "{err}"
    );
}

#[test]
fn a_position_that_cannot_be_saved_is_an_error_naming_the_file() {
    let s = Setup::new();
    let f = s.follower(StartAt::Start);
    let mut tmp = f.state_path().as_os_str().to_owned();
    tmp.push(".tmp");
    fs::create_dir(&tmp).unwrap(); // File::create fails on it, whoever runs the test
    let err = f.save().unwrap_err();
    assert!(
        err.to_string().contains(&*f.state_path().to_string_lossy()),
        "{err}"
    );
}
