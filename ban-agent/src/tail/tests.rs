//! Real files in a temporary folder, changed the way writers and logrotate change them.

use std::{fs::OpenOptions, io::Write, time::Duration};

use proptest::prelude::*;

use super::*;

struct TestLog {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TestLog {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("auth.log");
        Self { _dir: dir, path }
    }

    fn append(&self, bytes: &[u8]) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .expect("open for append");
        file.write_all(bytes).expect("append");
    }

    /// What logrotate's copytruncate does after copying.
    fn truncate(&self) {
        OpenOptions::new()
            .write(true)
            .open(&self.path)
            .expect("open")
            .set_len(0)
            .expect("truncate");
    }

    fn sibling(&self, name: &str) -> PathBuf {
        self.path.with_file_name(name)
    }

    /// A log holding `content`, and a follower from its start that has read it.
    fn read_from_head(content: &[u8]) -> (Self, Follower, Vec<String>) {
        let log = Self::new();
        log.append(content);
        let mut follower = log.follower(Start::Head);
        let lines = poll(&mut follower);
        (log, follower, lines)
    }

    fn follower(&self, start: Start) -> Follower {
        Follower::new(self.path.clone(), start, DEFAULT_MAX_LINE, None)
    }
}

fn poll(follower: &mut Follower) -> Vec<String> {
    let mut lines = Vec::new();
    follower
        .poll(&mut |line| lines.push(line.to_owned()))
        .expect("poll");
    lines
}

#[test]
fn head_reads_everything_and_only_complete_lines() {
    let (log, mut f, read) = TestLog::read_from_head(b"one\ntwo\nthr");
    assert_eq!(read, ["one", "two"]);
    log.append(b"ee");
    assert!(poll(&mut f).is_empty(), "a line written in pieces waits");
    log.append(b"\nfour\r\n");
    assert_eq!(poll(&mut f), ["three", "four"], "CRLF ends a line too");
    assert_eq!(f.stats().lines, 4);
}

#[test]
fn tail_starts_at_the_end_even_mid_line() {
    let log = TestLog::new();
    log.append(b"old\nhalf a li");
    let mut f = log.follower(Start::Tail);
    assert!(poll(&mut f).is_empty());
    log.append(b"ne\nnew\n");
    assert_eq!(
        poll(&mut f),
        ["new"],
        "the rest of a line begun before is no line"
    );
}

#[test]
fn a_file_that_appears_later_is_read_from_its_start() {
    let log = TestLog::new();
    let mut f = log.follower(Start::Tail);
    assert!(poll(&mut f).is_empty());
    assert_eq!(f.checkpoint(), None);
    log.append(b"first\nsecond\n");
    assert_eq!(poll(&mut f), ["first", "second"]);
}

#[test]
fn invalid_utf8_is_replaced_and_counted() {
    let (_log, f, read) = TestLog::read_from_head(b"ok\nbad \xff\xfe byte\n");
    assert_eq!(read, ["ok", "bad \u{fffd}\u{fffd} byte"]);
    assert_eq!(f.stats().invalid_utf8, 1);
}

#[test]
fn too_long_lines_are_skipped_with_bounded_memory() {
    let log = TestLog::new();
    let mut f = Follower::new(log.path.clone(), Start::Head, 16, None);
    log.append(b"short\n");
    log.append(&[b'x'; 40]);
    log.append(b"\nafter\n");
    assert_eq!(poll(&mut f), ["short", "after"]);
    // Written in pieces across polls: never more than 16 bytes are held.
    log.append(&[b'y'; 10]);
    assert!(poll(&mut f).is_empty());
    log.append(&[b'y'; 10]);
    assert!(poll(&mut f).is_empty());
    assert!(f.lines.carry.len() <= 16);
    log.append(&[b'y'; 1000]);
    assert!(poll(&mut f).is_empty());
    assert!(f.lines.carry.capacity() <= 64);
    log.append(b"yyy\nlast\n");
    assert_eq!(poll(&mut f), ["last"]);
    assert_eq!(f.stats().too_long, 2);
    assert_eq!(f.stats().lines, 3);
}

#[test]
fn rotation_by_rename_and_create() {
    let (log, mut f, read) = TestLog::read_from_head(b"a\n");
    assert_eq!(read, ["a"]);
    std::fs::rename(&log.path, log.sibling("auth.log.1")).expect("rename");
    // The writer has not reopened yet: it still appends to the renamed file.
    let mut old = OpenOptions::new()
        .append(true)
        .open(log.sibling("auth.log.1"))
        .expect("open old");
    old.write_all(b"b\n").expect("write old");
    assert_eq!(poll(&mut f), ["b"], "the renamed file is still followed");
    old.write_all(b"c\n").expect("write old");
    log.append(b"d\ne\n");
    assert_eq!(
        poll(&mut f),
        ["c", "d", "e"],
        "old file to its end, then the new one"
    );
    assert_eq!(f.stats().rotations, 1);
}

// A rotation while the agent was away (stopped, or killed): the rest of the file it was
// reading is found under its rotated name and read before the new file, from its start
// even for a follower that starts at the end. Without `rotated_away`, "b" and "c" are
// lost; without `seen` set on a replacement, so is "d".
#[test]
fn a_rotation_while_nobody_read_reads_the_rest_of_the_old_file_first() {
    for start in [Start::Head, Start::Tail] {
        let (log, f, read) = TestLog::read_from_head(b"a\n");
        assert_eq!(read, ["a"]);
        let checkpoint = f.checkpoint().expect("a checkpoint");
        drop(f);
        log.append(b"b\nc\n");
        std::fs::rename(&log.path, log.sibling("auth.log.1")).expect("rename");
        std::fs::write(log.sibling("auth.log.2.gz"), b"\x1f\x8b").expect("older");
        std::fs::write(log.sibling("other.log"), b"a\nb\nc\nz\n").expect("unrelated");
        log.append(b"d\n");
        let mut f = Follower::new(log.path.clone(), start, DEFAULT_MAX_LINE, Some(checkpoint));
        assert_eq!(poll(&mut f), ["b", "c", "d"], "{start:?}");
        assert_eq!(f.stats().rotations, 1);
    }
}

// Rotated twice while nobody read: the rest of the first file, the whole second, then the
// path's file. Without the backlog, "c" is lost.
#[test]
fn two_rotations_while_nobody_read_read_every_file_in_order() {
    let (log, f, _) = TestLog::read_from_head(b"a\n");
    let checkpoint = f.checkpoint().expect("a checkpoint");
    drop(f);
    log.append(b"b\n");
    std::fs::rename(&log.path, log.sibling("auth.log.2")).expect("rename");
    std::thread::sleep(Duration::from_millis(20));
    log.append(b"c\n");
    std::fs::rename(&log.path, log.sibling("auth.log.1")).expect("rename");
    std::thread::sleep(Duration::from_millis(20));
    log.append(b"d\n");
    let mut f = Follower::new(
        log.path.clone(),
        Start::Tail,
        DEFAULT_MAX_LINE,
        Some(checkpoint),
    );
    assert_eq!(poll(&mut f), ["b", "c", "d"]);
    assert_eq!(f.stats().rotations, 2);
    log.append(b"e\n");
    assert_eq!(poll(&mut f), ["e"]);
}

// Rotated while nobody read, and no new file yet: the rest of the old one is read, and
// the new one from its start once it is there.
#[test]
fn a_rotation_with_no_new_file_yet_reads_the_rest_of_the_old_one() {
    let (log, f, _) = TestLog::read_from_head(b"a\n");
    let checkpoint = f.checkpoint().expect("a checkpoint");
    drop(f);
    log.append(b"b\n");
    std::fs::rename(&log.path, log.sibling("auth.log.1")).expect("rename");
    let mut f = Follower::new(
        log.path.clone(),
        Start::Tail,
        DEFAULT_MAX_LINE,
        Some(checkpoint),
    );
    assert_eq!(poll(&mut f), ["b"]);
    log.append(b"c\n");
    assert_eq!(poll(&mut f), ["c"]);
}

// Stopped (or killed) while the new file after a rotation was still empty, and the log
// rotated again before the restart: the checkpoint is where the old file was left, so
// the restart finds it and reads the file in between. Without `left`, the checkpoint is
// that of an empty file, which no rotated file matches, and "b" is lost.
#[test]
fn a_checkpoint_taken_on_an_empty_new_file_still_finds_the_rotated_ones() {
    let (log, mut f, _) = TestLog::read_from_head(b"a\n");
    let before = f.checkpoint().expect("a checkpoint");
    std::fs::rename(&log.path, log.sibling("auth.log.2")).expect("rename");
    std::fs::File::create(&log.path).expect("an empty new log");
    assert!(poll(&mut f).is_empty());
    let after = f.checkpoint().expect("a checkpoint");
    assert_eq!(
        (after.offset, after.fingerprint),
        (before.offset, before.fingerprint),
        "still where the old file was left"
    );
    drop(f);
    std::thread::sleep(Duration::from_millis(20));
    log.append(b"b\n");
    std::fs::rename(&log.path, log.sibling("auth.log.1")).expect("rename");
    std::thread::sleep(Duration::from_millis(20));
    log.append(b"c\n");
    for checkpoint in [before, after] {
        let mut f = Follower::new(
            log.path.clone(),
            Start::Tail,
            DEFAULT_MAX_LINE,
            Some(checkpoint),
        );
        assert_eq!(poll(&mut f), ["b", "c"]);
    }
}

// With no rotated file that matches, a changed file is read from its start, as before.
#[test]
fn a_changed_file_with_no_rotated_sibling_is_new() {
    let (log, f, _) = TestLog::read_from_head(b"a\nb\n");
    let checkpoint = f.checkpoint().expect("a checkpoint");
    drop(f);
    std::fs::write(log.sibling("auth.log.1"), b"a\n").expect("shorter than the offset");
    std::fs::write(&log.path, b"x\n").expect("replace");
    let mut f = Follower::new(
        log.path.clone(),
        Start::Tail,
        DEFAULT_MAX_LINE,
        Some(checkpoint),
    );
    assert_eq!(poll(&mut f), ["x"]);
}

#[test]
fn copytruncate_is_read_again_from_the_start() {
    let (log, mut f, read) = TestLog::read_from_head(b"line one\nline two\n");
    assert_eq!(read.len(), 2);
    std::fs::copy(&log.path, log.sibling("auth.log.1")).expect("copy");
    log.truncate();
    log.append(b"x\n");
    assert_eq!(poll(&mut f), ["x"]);
    assert_eq!(f.stats().truncations, 1);
}

#[test]
fn truncated_and_refilled_past_the_old_offset_is_noticed() {
    let (log, mut f, read) = TestLog::read_from_head(b"12:00 first\n");
    assert_eq!(read, ["12:00 first"]);
    log.truncate();
    log.append(b"12:05 new first line\n12:06 second\n");
    assert_eq!(
        poll(&mut f),
        ["12:05 new first line", "12:06 second"],
        "the first line changed: nothing of the new content is skipped"
    );
}

#[test]
fn deleted_and_recreated() {
    let (log, mut f, read) = TestLog::read_from_head(b"a\n");
    assert_eq!(read, ["a"]);
    std::fs::remove_file(&log.path).expect("remove");
    assert!(poll(&mut f).is_empty());
    log.append(b"b\n");
    assert_eq!(poll(&mut f), ["b"]);
    assert_eq!(f.stats().rotations, 1);
}

// Faults: the log replaced by a symlink to another file is a rotation: the new target is
// read from its start, nothing of the old one twice.
#[test]
fn replaced_by_a_symlink_to_another_file_reads_that_file() {
    let (log, mut f, read) = TestLog::read_from_head(b"a\n");
    assert_eq!(read, ["a"]);
    let other = log.sibling("other.log");
    std::fs::write(&other, "x\ny\n").expect("write");
    std::fs::remove_file(&log.path).expect("remove");
    std::os::unix::fs::symlink(&other, &log.path).expect("symlink");
    assert_eq!(poll(&mut f), ["x", "y"]);
    assert_eq!(f.stats().rotations, 1);
}

// Faults: the log turned into a folder, a FIFO or a device. Without the regular-file check
// in `open_path`, the FIFO blocks the test forever at open, /dev/zero is read for ever and
// the folder fails with EISDIR on every poll; with it, each is an error that names what it
// is, and a file put back is read.
#[test]
fn a_folder_fifo_or_device_at_the_path_is_refused_and_a_file_put_back_is_read() {
    let (log, mut f, read) = TestLog::read_from_head(b"a\n");
    assert_eq!(read, ["a"]);
    std::fs::remove_file(&log.path).expect("remove");
    std::fs::create_dir(&log.path).expect("mkdir");
    let mut sink = |_: &str| {};
    let error = f.poll(&mut sink).expect_err("a folder").to_string();
    assert!(error.contains("is a folder, not a regular file"), "{error}");
    std::fs::remove_dir(&log.path).expect("rmdir");
    let fifo = std::ffi::CString::new(log.path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    let error = f.poll(&mut sink).expect_err("a FIFO").to_string();
    assert!(error.contains("is a FIFO"), "{error}");
    std::fs::remove_file(&log.path).expect("remove the FIFO");
    std::os::unix::fs::symlink("/dev/zero", &log.path).expect("symlink");
    let error = f.poll(&mut sink).expect_err("a device").to_string();
    assert!(error.contains("is a device"), "{error}");
    std::fs::remove_file(&log.path).expect("remove the symlink");
    log.append(b"b\n");
    assert_eq!(poll(&mut f), ["b"]);
}

// A log longer than the read budget is read a budget per poll, every line once. Without
// the budget in `read_to_end`, the first poll reads it all.
#[test]
fn a_poll_reads_at_most_its_budget_and_the_next_goes_on() {
    let log = TestLog::new();
    let line = format!("{}\n", "z".repeat(99));
    log.append(line.repeat(20_000).as_bytes());
    let mut f = log.follower(Start::Head).with_budget(CHUNK as u64);
    let first = poll(&mut f);
    assert!(f.more() && first.len() < 20_000, "{} lines", first.len());
    let mut total = first.len();
    let mut polls = 1;
    while f.more() {
        total += poll(&mut f).len();
        polls += 1;
    }
    assert_eq!((total, f.lag()), (20_000, Some(0)));
    assert!(polls >= 7, "2 MB in 256 KiB polls: {polls}");
}

#[test]
fn a_checkpoint_resumes_exactly() {
    let (log, f, read) = TestLog::read_from_head(b"1\n2\npart");
    assert_eq!(read, ["1", "2"]);
    let checkpoint = f.checkpoint().expect("checkpoint");
    assert_eq!(checkpoint.offset, 4, "before the incomplete line");
    drop(f);
    log.append(b"ial\n3\n");
    let mut again = Follower::new(
        log.path.clone(),
        Start::Tail,
        DEFAULT_MAX_LINE,
        Some(checkpoint),
    );
    assert_eq!(
        poll(&mut again),
        ["partial", "3"],
        "nothing missed, nothing twice"
    );
}

#[test]
fn a_checkpoint_of_another_file_reads_the_new_one_whole() {
    let log = TestLog::new();
    log.append(b"old 1\nold 2\n");
    let mut f = log.follower(Start::Head);
    poll(&mut f);
    let checkpoint = f.checkpoint().expect("checkpoint");
    drop(f);
    // Rotated while the agent was down.
    std::fs::rename(&log.path, log.sibling("auth.log.1")).expect("rename");
    log.append(b"new 1\nnew 2\nnew 3\n");
    let mut again = Follower::new(
        log.path.clone(),
        Start::Tail,
        DEFAULT_MAX_LINE,
        Some(checkpoint),
    );
    assert_eq!(poll(&mut again), ["new 1", "new 2", "new 3"]);
}

#[test]
fn globs_expand_to_existing_files_and_plain_paths_stay() {
    let log = TestLog::new();
    log.append(b"x\n");
    std::fs::write(log.sibling("other.log"), b"").expect("write");
    std::fs::write(log.sibling("notes.txt"), b"").expect("write");
    let dir = log.path.parent().expect("dir");
    let found = expand(&[dir.join("*.log"), dir.join("later.log")]);
    assert_eq!(
        found,
        [
            dir.join("auth.log"),
            dir.join("later.log"),
            dir.join("other.log")
        ]
    );
}

#[tokio::test]
async fn inotify_wakes_on_a_write_and_polling_without_it() {
    let log = TestLog::new();
    log.append(b"x\n");
    let slow = Duration::from_secs(3600);
    let wakeups = watch(
        std::slice::from_ref(&log.path),
        WatchMode::Inotify { interval: slow },
    );
    assert!(wakeups.uses_inotify(), "{:?}", wakeups.unwatched());
    let writer = tokio::spawn({
        let path = log.path.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            std::fs::write(path, b"x\ny\n").expect("write");
        }
    });
    tokio::time::timeout(Duration::from_secs(10), wakeups.wait())
        .await
        .expect("inotify woke the loop before the hour-long poll");
    writer.await.expect("writer");

    let polled = watch(
        std::slice::from_ref(&log.path),
        WatchMode::Poll {
            interval: Duration::from_millis(20),
        },
    );
    assert!(!polled.uses_inotify());
    tokio::time::timeout(Duration::from_secs(10), polled.wait())
        .await
        .expect("the polling interval wakes the loop");
}

proptest! {
    /// However the bytes are cut into writes and polls, the lines that come out are the
    /// complete lines that went in, in order, each once.
    #[test]
    fn pieces_make_whole_lines(
        lines in prop::collection::vec("[a-z \r]{0,20}", 0..30),
        cuts in prop::collection::vec(0usize..64, 0..20),
    ) {
        let log = TestLog::new();
        std::fs::write(&log.path, b"").expect("create");
        let mut f = Follower::new(log.path.clone(), Start::Head, DEFAULT_MAX_LINE, None);
        let text: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
        let mut seen = Vec::new();
        let mut at = 0usize;
        for cut in cuts.iter().chain(std::iter::once(&usize::MAX)) {
            let end = at.saturating_add(*cut).min(text.len());
            log.append(&text[at..end]);
            at = end;
            f.poll(&mut |line| seen.push(line.to_owned())).expect("poll");
        }
        let expected: Vec<String> = lines
            .iter()
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
            .collect();
        prop_assert_eq!(seen, expected);
    }
}

/// Python's plain `FileHandler` under logrotate's `create`: the app keeps writing to the
/// renamed file, and the new one stays empty. Those lines are still read, half-written
/// lines included, until the old file has been idle for the configured time.
#[test]
fn a_rotated_file_is_followed_while_its_writer_keeps_writing() {
    let (log, f, read) = TestLog::read_from_head(b"a\n");
    let mut f = f.with_rotated_idle(Duration::from_millis(300));
    assert_eq!(read, ["a"]);
    let mut writer = OpenOptions::new()
        .append(true)
        .open(&log.path)
        .expect("the app's handle");
    writer.write_all(b"b1").expect("write");
    std::fs::rename(&log.path, log.sibling("auth.log.1")).expect("rename");
    log.append(b"");
    writer.write_all(b"b2\nc\n").expect("write");
    assert_eq!(poll(&mut f), ["b1b2", "c"]);
    assert_eq!(f.rotated(), 1);
    writer.write_all(b"d\n").expect("write");
    log.append(b"new\n");
    assert_eq!(
        poll(&mut f),
        ["d", "new"],
        "the old file's lines, then the path's"
    );
    assert_eq!(f.stats().lines, 5);
    assert_eq!(f.stats().rotations, 1);
    std::thread::sleep(Duration::from_millis(400));
    assert!(poll(&mut f).is_empty());
    assert_eq!(f.rotated(), 0, "let go once idle");
    writer.write_all(b"late\n").expect("write");
    assert!(poll(&mut f).is_empty());
}

/// A rotated file still followed, then rewritten in place with the path's lines (`cp
/// auth.log auth.log.1` over it, then the path truncated: a copytruncate made by hand) is
/// let go: its lines now are the path's, read already. Found by the chaos run (seed 2026,
/// the copy over the file a rename had rotated, still followed after restarts): every
/// attacker of the last minute banned again.
#[test]
fn a_rotated_file_rewritten_in_place_is_not_read_again() {
    let (log, mut f, read) = TestLog::read_from_head(b"a\n");
    assert_eq!(read, ["a"]);
    std::fs::rename(&log.path, log.sibling("auth.log.1")).expect("rename");
    log.append(b"b\nc\nd\n");
    assert_eq!(poll(&mut f), ["b", "c", "d"]);
    assert_eq!(f.rotated(), 1);
    // Into the same inode: std::fs::copy opens an existing target with O_TRUNC, as cp does.
    std::fs::copy(&log.path, log.sibling("auth.log.1")).expect("copy");
    log.truncate();
    log.append(b"e\n");
    assert_eq!(poll(&mut f), ["e"], "nothing of the copy read");
    assert_eq!(f.rotated(), 0, "the rewritten file is let go");
    assert_eq!(f.stats().lines, 5);
}

/// However often the path is rotated under writers that never reopen, at most
/// `MAX_ROTATED` old files are followed: the oldest is let go first.
#[test]
fn rotated_files_followed_are_bounded() {
    let (log, mut f, _) = TestLog::read_from_head(b"0\n");
    let mut writers = Vec::new();
    for n in 0..MAX_ROTATED + 2 {
        writers.push(
            OpenOptions::new()
                .append(true)
                .open(&log.path)
                .expect("open"),
        );
        std::fs::rename(&log.path, log.sibling(&format!("auth.log.{n}"))).expect("rename");
        log.append(format!("{n}-new\n").as_bytes());
        poll(&mut f);
    }
    assert_eq!(f.rotated(), MAX_ROTATED);
    for (n, writer) in writers.iter_mut().enumerate() {
        writer
            .write_all(format!("{n}-late\n").as_bytes())
            .expect("write");
    }
    let late: Vec<String> = poll(&mut f);
    let expected: Vec<String> = (2..MAX_ROTATED + 2).map(|n| format!("{n}-late")).collect();
    assert_eq!(late, expected);
}

/// A writer that never reopens (Python's `FileHandler`) under logrotate's `create`.
struct Rotation {
    log: TestLog,
    /// The app's handle, opened before the rotation: it writes to `auth.log.1` after it.
    app: std::fs::File,
    follower: Follower,
}

impl Rotation {
    /// `auth.log` read from its head, then rotated to `auth.log.1` with a new empty
    /// `auth.log`, and the rotation seen by a poll.
    fn new() -> Self {
        let (log, mut follower, read) = TestLog::read_from_head(b"first\n");
        assert_eq!(read, ["first"]);
        let app = OpenOptions::new()
            .append(true)
            .open(&log.path)
            .expect("the app's handle");
        std::fs::rename(&log.path, log.sibling("auth.log.1")).expect("rename");
        log.append(b"");
        assert!(poll(&mut follower).is_empty());
        assert_eq!(follower.rotated(), 1);
        Self { log, app, follower }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.app.write_all(bytes).expect("write");
    }

    /// Stops and starts again from the follower's checkpoint.
    fn restart(&mut self) {
        let checkpoint = self.follower.checkpoint().expect("checkpoint");
        self.follower = Follower::new(
            self.log.path.clone(),
            Start::Tail,
            DEFAULT_MAX_LINE,
            Some(checkpoint),
        );
    }
}

/// A file rotated while still empty, its first lines written after: found again too.
#[test]
fn a_file_rotated_empty_and_written_after_is_resumed_once() {
    let log = TestLog::new();
    log.append(b"");
    let mut f = log.follower(Start::Head);
    assert!(poll(&mut f).is_empty());
    let mut app = OpenOptions::new()
        .append(true)
        .open(&log.path)
        .expect("the app's handle");
    std::fs::rename(&log.path, log.sibling("auth.log.1")).expect("rename");
    log.append(b"");
    assert!(poll(&mut f).is_empty());
    app.write_all(b"f1\nf2\n").expect("write");
    assert_eq!(poll(&mut f), ["f1", "f2"]);
    let checkpoint = f.checkpoint().expect("checkpoint");
    assert_eq!(checkpoint.rotated.len(), 1, "{checkpoint:?}");
    let mut again = Follower::new(
        log.path.clone(),
        Start::Tail,
        DEFAULT_MAX_LINE,
        Some(checkpoint),
    );
    assert!(poll(&mut again).is_empty(), "nothing read twice");
    app.write_all(b"f3\n").expect("write");
    assert_eq!(poll(&mut again), ["f3"]);
}

/// The issue a user hit: failures written to the rotated file were read again after a
/// restart (counted twice), because the checkpoint only knew the path's empty new file.
#[test]
fn a_restart_reads_no_line_of_a_rotated_file_twice_and_follows_it_on() {
    let mut r = Rotation::new();
    r.write(b"f1\nf2\nf3\n");
    assert_eq!(poll(&mut r.follower), ["f1", "f2", "f3"]);
    let checkpoint = r.follower.checkpoint().expect("checkpoint");
    assert_eq!(checkpoint.rotated.len(), 1, "{checkpoint:?}");
    r.restart();
    assert!(poll(&mut r.follower).is_empty(), "nothing read twice");
    assert_eq!(
        r.follower.rotated(),
        1,
        "the rotated file is followed again"
    );
    r.write(b"f4\n");
    r.log.append(b"new\n");
    assert_eq!(poll(&mut r.follower), ["f4", "new"]);
    // Once more, now that the path's file has lines of its own.
    r.restart();
    r.write(b"f5\n");
    r.log.append(b"new 2\n");
    assert_eq!(poll(&mut r.follower), ["f5", "new 2"]);
}

/// The other outcome the user saw: the path's new file had lines of its own, so the
/// checkpoint named it alone, and what the app wrote to the rotated file after the
/// restart was never read.
#[test]
fn a_restart_after_the_new_file_has_lines_still_reads_the_rotated_file() {
    let mut r = Rotation::new();
    r.write(b"f1\n");
    r.log.append(b"new\n");
    assert_eq!(poll(&mut r.follower), ["f1", "new"]);
    r.restart();
    assert!(poll(&mut r.follower).is_empty(), "nothing read twice");
    r.write(b"f2\nf3\n");
    assert_eq!(poll(&mut r.follower), ["f2", "f3"]);
    // Written while the agent was down: read at the start, once.
    let checkpoint = r.follower.checkpoint().expect("checkpoint");
    r.write(b"f4\n");
    r.follower = Follower::new(
        r.log.path.clone(),
        Start::Tail,
        DEFAULT_MAX_LINE,
        Some(checkpoint),
    );
    assert_eq!(poll(&mut r.follower), ["f4"]);
}

/// A restart that finds the rotated file gone (compressed, deleted) lets it go and reads
/// the path's file where it was.
#[test]
fn a_rotated_file_gone_at_the_restart_is_let_go() {
    let mut r = Rotation::new();
    r.write(b"f1\n");
    r.log.append(b"new\n");
    assert_eq!(poll(&mut r.follower), ["f1", "new"]);
    let checkpoint = r.follower.checkpoint().expect("checkpoint");
    std::fs::remove_file(r.log.sibling("auth.log.1")).expect("remove");
    r.log.append(b"new 2\n");
    let mut again = Follower::new(
        r.log.path.clone(),
        Start::Tail,
        DEFAULT_MAX_LINE,
        Some(checkpoint),
    );
    assert_eq!(poll(&mut again), ["new 2"]);
    assert_eq!(again.rotated(), 0);
}

/// A rotated file let go once idle moves on where the empty new file's checkpoint says
/// the old one was left: its lines read after the rotation are not read again.
#[test]
fn a_rotated_file_let_go_leaves_the_checkpoint_where_it_was_read_up_to() {
    let mut r = Rotation::new();
    r.follower = std::mem::replace(
        &mut r.follower,
        Follower::new(PathBuf::new(), Start::Tail, DEFAULT_MAX_LINE, None),
    )
    .with_rotated_idle(Duration::from_millis(200));
    r.write(b"f1\nf2\n");
    assert_eq!(poll(&mut r.follower), ["f1", "f2"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(poll(&mut r.follower).is_empty());
    assert_eq!(r.follower.rotated(), 0, "let go once idle");
    r.restart();
    assert!(poll(&mut r.follower).is_empty(), "nothing read twice");
}

/// A new container's folder and log, under a glob with a wildcard folder: the creation of
/// each is an entry change, and once the new folder is tracked a write in it wakes the
/// loop (not only the timer).
#[tokio::test]
async fn a_new_containers_folder_and_log_are_seen_by_inotify() {
    let root = tempfile::tempdir().expect("temp dir");
    let containers = root.path().join("containers");
    std::fs::create_dir(&containers).expect("mkdir");
    let pattern = containers.join("*/*-json.log");
    let slow = Duration::from_secs(3600);
    let mut wakeups = watch(
        std::slice::from_ref(&pattern),
        WatchMode::Inotify { interval: slow },
    );
    assert!(wakeups.watches_all(), "{:?}", wakeups.unwatched());
    assert!(!wakeups.entries_changed());
    let folder = containers.join("0123abcd");
    std::fs::create_dir(&folder).expect("mkdir");
    tokio::time::timeout(Duration::from_secs(10), wakeups.wait())
        .await
        .expect("the new folder woke the loop");
    assert!(
        wakeups.entries_changed(),
        "a folder created is an entry change"
    );
    let patterns = [pattern.clone()];
    assert!(
        wakeups.track(folders_to_watch(&patterns, &[])),
        "the new folder is watched"
    );
    assert!(!wakeups.track(folders_to_watch(&patterns, &[])), "once");
    let log = folder.join("0123abcd-json.log");
    std::fs::write(&log, b"{}\n").expect("create the log");
    tokio::time::timeout(Duration::from_secs(10), wakeups.wait())
        .await
        .expect("the new log woke the loop");
    assert!(
        wakeups.entries_changed(),
        "a file created is an entry change"
    );
    assert_eq!(expand(&patterns), std::slice::from_ref(&log));
    let _ = wakeups.entries_changed();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut file| std::io::Write::write_all(&mut file, b"{}\n"))
        .expect("append");
    tokio::time::timeout(Duration::from_secs(10), wakeups.wait())
        .await
        .expect("a write in the new folder woke the loop before the hour-long poll");
    assert!(!wakeups.entries_changed(), "a write is not an entry change");
}
