//! Follows log files and yields their complete lines, whatever logrotate does to them.
//!
//! A [`Follower`] owns one path. Each [`Follower::poll`] reads what was appended since the
//! last one and then looks at the path again:
//! - a different file there (rotation by rename + create, or delete + re-create): the old
//!   file is read to its end first, then the new one from its start. The old one is still
//!   followed while it grows, since a writer that does not reopen its log (Python's plain
//!   `FileHandler`) keeps writing there: until it has been idle for [`ROTATED_IDLE`], at
//!   most [`MAX_ROTATED`] such files (the oldest let go first);
//! - the same file, shorter than what was read, or with another first line (copytruncate):
//!   read again from the start;
//! - nothing there (deleted, or not created yet): keep reading the open file, if any, and
//!   pick the path up when it appears.
//!
//! Only lines ending in `\n` are yielded (a trailing `\r` is dropped); a line longer than
//! `max_line` is skipped and counted, and never held in memory whole. Invalid UTF-8 is
//! replaced (lossy) and counted. [`Follower::checkpoint`] gives the position after the
//! last complete line and a fingerprint of the file's first line, so that a restart
//! resumes exactly there when it is the same file, and reads a new file from its start;
//! and the same for each rotated file still followed, so that a restart neither reads a
//! line of one again nor misses what its writer appends after the restart.
//!
//! When to poll is the business of [`watch`]: inotify through `notify`, with a polling
//! fallback.

pub mod container;
pub mod docker;
pub mod journal;
mod lines;
mod watch;

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::{FileExt, MetadataExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub use lines::{Lines, read_stream};
pub use watch::{Wakeups, WatchMode, folders_to_watch, watch};

/// Where following a log starts the first time it is seen (a jail's `start`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// At its end: only new lines count.
    Tail,
    /// At its start.
    Head,
}

/// Lines longer than this are skipped unless configured otherwise.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// Bytes read at a time.
const CHUNK: usize = 256 * 1024;

/// How the first line is fingerprinted: at most this many bytes of it.
const FINGERPRINT_BYTES: usize = 4096;

/// Where to resume a follower: its path's file, and the rotated files it still followed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Byte offset after the last complete line read.
    pub offset: u64,
    /// Hash of the file's first line; `None` while it has no complete line.
    pub fingerprint: Option<u64>,
    /// The files rotated away from the path that were still followed (their writer may
    /// not have reopened the log), oldest first. Saved with the rest in one transaction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotated: Vec<Mark>,
}

impl Checkpoint {
    /// The checkpoint of one file, with no rotated file followed.
    pub fn file(offset: u64, fingerprint: Option<u64>) -> Self {
        Self {
            offset,
            fingerprint,
            rotated: Vec::new(),
        }
    }
}

/// Where one file was read up to, found again by its first line's fingerprint (a rotated
/// file with no complete line yet cannot be found again, and is not marked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mark {
    pub offset: u64,
    pub fingerprint: u64,
}

/// What a follower has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailStats {
    pub lines: u64,
    pub invalid_utf8: u64,
    pub too_long: u64,
    /// A new file took the path (rotation, re-creation).
    pub rotations: u64,
    /// The file was truncated (copytruncate).
    pub truncations: u64,
}

/// How long a rotated file that stopped growing is still followed.
pub const ROTATED_IDLE: Duration = Duration::from_secs(300);

/// Rotated files followed at once, at most, per path.
pub const MAX_ROTATED: usize = 4;

/// A file rotated away from the path that its writer may still append to.
struct Rotated {
    open: OpenFile,
    /// Its own line buffer: a line may be half written at the rotation.
    lines: Lines,
    /// When it last grew (or was rotated).
    grew: Instant,
}

/// Follows one path.
pub struct Follower {
    path: PathBuf,
    start: Start,
    /// A checkpoint not yet applied: used when the path is first opened (its rotated
    /// files are taken up by the first poll, and cleared from it then).
    resume: Option<Checkpoint>,
    /// Whether the path was polled before: a file found later is new, read from its start.
    seen: bool,
    open: Option<OpenFile>,
    lines: Lines,
    chunk: Vec<u8>,
    rotations: u64,
    truncations: u64,
    /// Bytes one poll reads at most, so that a log written faster than it is read cannot
    /// hold the agent in one poll (expiries, requests and metrics wait for it).
    budget: u64,
    /// The last poll stopped at its budget, before the end of the file.
    more: bool,
    /// Files rotated while nobody read, after the one resumed: read from their start,
    /// oldest first (the last one first out), before the path's file.
    backlog: Vec<PathBuf>,
    /// Where the file read before the one open now was left, while that one has no
    /// complete line: a checkpoint of an empty new file could not find the rotated files
    /// after a restart, this one can. Moved on as that file is read after its rotation.
    left: Option<Mark>,
    /// Files rotated away while followed, still read while they grow; oldest first.
    rotated: Vec<Rotated>,
    /// How long a rotated file may stay idle before it is let go.
    rotated_idle: Duration,
    max_line: usize,
    /// Line counts of the rotated files let go (those followed count in `rotated`).
    retired: TailStats,
}

/// Bytes one [`Follower::poll`] reads at most by default: about 15 ms of the agent's work,
/// and the lines of one commit of the state (a flood's failures and bans are held in
/// memory until their commit, so a smaller batch keeps the daemon smaller).
pub const DEFAULT_READ_BUDGET: u64 = 4 << 20;

struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    /// Read position.
    offset: u64,
    /// Position after the last complete (or skipped) line.
    committed: u64,
    fingerprint: Option<u64>,
}

impl OpenFile {
    /// Where it was read up to, once it has a first line to be found again by.
    fn mark(&self) -> Option<Mark> {
        Some(Mark {
            offset: self.committed,
            fingerprint: self.fingerprint?,
        })
    }
}

impl Follower {
    pub fn new(path: PathBuf, start: Start, max_line: usize, resume: Option<Checkpoint>) -> Self {
        Self {
            path,
            start,
            resume,
            seen: false,
            open: None,
            lines: Lines::new(max_line),
            chunk: vec![0; CHUNK],
            rotations: 0,
            truncations: 0,
            budget: DEFAULT_READ_BUDGET,
            more: false,
            backlog: Vec::new(),
            left: None,
            rotated: Vec::new(),
            rotated_idle: ROTATED_IDLE,
            max_line,
            retired: TailStats::default(),
        }
    }

    /// Lets a rotated file go once it has not grown for `idle` ([`ROTATED_IDLE`] by
    /// default).
    pub fn with_rotated_idle(mut self, idle: Duration) -> Self {
        self.rotated_idle = idle;
        self
    }

    /// Rotated files still followed.
    pub fn rotated(&self) -> usize {
        self.rotated.len()
    }

    /// Reads at most `bytes` per poll (at least one chunk).
    pub fn with_budget(mut self, bytes: u64) -> Self {
        self.budget = bytes.max(CHUNK as u64);
        self
    }

    /// Whether the last poll left bytes unread at its budget: poll again soon.
    pub fn more(&self) -> bool {
        self.more
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> TailStats {
        let mut total = TailStats {
            rotations: self.rotations,
            truncations: self.truncations,
            ..self.retired
        };
        let followed = std::iter::once(&self.lines).chain(self.rotated.iter().map(|r| &r.lines));
        for lines in followed {
            add(&mut total, lines.stats());
        }
        total
    }

    /// Bytes in the file open now that were not read into complete lines yet.
    pub fn lag(&self) -> Option<u64> {
        let open = self.open.as_ref()?;
        let len = open.file.metadata().ok()?.len();
        Some(len.saturating_sub(open.committed))
    }

    /// Where to resume: after the last complete line of the file open now, and of each
    /// rotated file still followed.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        // Not polled yet: the checkpoint resumed, rotated files and all.
        if let Some(resume) = self.resume.as_ref().filter(|cp| !cp.rotated.is_empty()) {
            return Some(resume.clone());
        }
        let rotated: Vec<Mark> = self.rotated.iter().filter_map(|r| r.open.mark()).collect();
        // An empty new file is found again by the file read before it: the newest rotated
        // one still followed, where it is read up to now.
        let before = rotated.last().copied().or(self.left);
        let (offset, fingerprint) = match &self.open {
            Some(open) if open.fingerprint.is_none() && open.committed == 0 => {
                before.map_or((0, None), |mark| (mark.offset, Some(mark.fingerprint)))
            }
            Some(open) => (open.committed, open.fingerprint),
            None => match (&self.resume, before) {
                (Some(resume), _) => (resume.offset, resume.fingerprint),
                (None, Some(mark)) => (mark.offset, Some(mark.fingerprint)),
                (None, None) => return None,
            },
        };
        Some(Checkpoint {
            offset,
            fingerprint,
            rotated,
        })
    }

    /// Notes where the file open now was left, before another one takes its place.
    fn leave(&mut self) {
        if let Some(mark) = self.open.as_ref().and_then(OpenFile::mark) {
            self.left = Some(mark);
        }
    }

    /// Stops following a rotated file; its lines still count in the stats, and where it
    /// was left moves on if it is the file read before the one open now.
    fn retire(&mut self, rotated: Rotated) {
        add(&mut self.retired, rotated.lines.stats());
        if let (Some(left), Some(mark)) = (self.left.as_mut(), rotated.open.mark())
            && left.fingerprint == mark.fingerprint
        {
            *left = mark;
        }
    }

    /// Takes up the rotated files of the checkpoint resumed, where each was left, so that
    /// what their writers append is read, and nothing of them twice. A file no longer
    /// beside the path (deleted, compressed) is let go.
    fn resume_rotated(&mut self) -> io::Result<()> {
        let Some(marks) = self
            .resume
            .as_mut()
            .map(|cp| std::mem::take(&mut cp.rotated))
        else {
            return Ok(());
        };
        let mut skip: Vec<(u64, u64)> = std::fs::metadata(&self.path)
            .map(|meta| vec![(meta.dev(), meta.ino())])
            .unwrap_or_default();
        for mark in marks {
            let Some(away) = rotated_away(&self.path, mark.offset, mark.fingerprint, &skip)? else {
                continue;
            };
            let mut file = away.file;
            file.seek(SeekFrom::Start(mark.offset))?;
            skip.push((away.meta.dev(), away.meta.ino()));
            if self.rotated.len() == MAX_ROTATED {
                let oldest = self.rotated.remove(0);
                self.retire(oldest);
            }
            self.rotated.push(Rotated {
                open: OpenFile {
                    file,
                    dev: away.meta.dev(),
                    ino: away.meta.ino(),
                    offset: mark.offset,
                    committed: mark.offset,
                    fingerprint: Some(mark.fingerprint),
                },
                lines: Lines::new(self.max_line),
                grew: Instant::now(),
            });
        }
        Ok(())
    }

    /// Whether `meta` is a rotated file followed already.
    fn follows(&self, meta: &std::fs::Metadata) -> bool {
        self.rotated
            .iter()
            .any(|r| (r.open.dev, r.open.ino) == (meta.dev(), meta.ino()))
    }

    /// Reads every complete line appended since the last call and hands each to `sink`;
    /// follows rotation and truncation. Returns the number of lines.
    pub fn poll(&mut self, sink: &mut dyn FnMut(&str)) -> io::Result<u64> {
        let before = self.stats().lines;
        let mut budget = self.budget;
        self.more = false;
        if !self.seen {
            self.resume_rotated()?;
        }
        // What was written to the rotated files since, before the path's file: those
        // lines were written first, or at the same time.
        self.read_rotated(sink, &mut budget)?;
        // Bounded: each pass either reads the current file or switches to a new one.
        for _ in 0..4 + self.backlog.len() {
            if self.open.is_none() && !self.open_path()? {
                break;
            }
            self.check_truncated()?;
            self.more = !self.read_to_end(sink, &mut budget)?;
            if let Some(open) = self.open.as_mut()
                && open.fingerprint.is_none()
                && open.committed > 0
            {
                // The first line was completed while being read.
                open.fingerprint = fingerprint(&open.file)?;
            }
            if self.more {
                break;
            }
            if self.open_backlog()? {
                continue;
            }
            if !self.check_replaced()? {
                break;
            }
        }
        self.seen = true;
        Ok(self.stats().lines - before)
    }

    /// Reads what the rotated files gained; lets go of those idle for `rotated_idle`.
    fn read_rotated(&mut self, sink: &mut dyn FnMut(&str), budget: &mut u64) -> io::Result<()> {
        let now = Instant::now();
        // A rotated file rewritten in place since (`cp app.log app.log.1` over it, as a
        // copytruncate made by hand does) holds another file's lines now, read already
        // from the path: it is let go unread.
        let mut kept = Vec::with_capacity(self.rotated.len());
        for rotated in std::mem::take(&mut self.rotated) {
            if rewritten(&rotated.open)? {
                self.retire(rotated);
            } else {
                kept.push(rotated);
            }
        }
        self.rotated = kept;
        for rotated in &mut self.rotated {
            let before = rotated.open.offset;
            if !read_file(
                &mut rotated.open,
                &mut rotated.lines,
                &mut self.chunk,
                sink,
                budget,
            )? {
                self.more = true;
            }
            if rotated.open.offset > before {
                rotated.grew = now;
            }
            // Empty when rotated, its first line written since: found again by it.
            if rotated.open.fingerprint.is_none() && rotated.open.committed > 0 {
                rotated.open.fingerprint = fingerprint(&rotated.open.file)?;
            }
        }
        let idle = self.rotated_idle;
        let (kept, idle): (Vec<Rotated>, Vec<Rotated>) = std::mem::take(&mut self.rotated)
            .into_iter()
            .partition(|rotated| now.duration_since(rotated.grew) < idle);
        self.rotated = kept;
        for rotated in idle {
            self.retire(rotated);
        }
        Ok(())
    }

    /// Opens the file at the path, positioned per checkpoint or start mode; `false` when
    /// there is none. Only a regular file is read (a symlink is followed to one): a FIFO
    /// would block the agent at open, a device such as /dev/zero never ends, a folder has
    /// no lines.
    fn open_path(&mut self) -> io::Result<bool> {
        use std::os::unix::fs::OpenOptionsExt as _;
        match std::fs::metadata(&self.path) {
            Ok(meta) if !meta.is_file() => return Err(not_regular(&self.path, &meta)),
            Ok(_) => {}
            // Rotated away while nobody read, and not created again yet: the rest of the
            // file read before is under its rotated name.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return self.open_rotated(),
            Err(e) => return Err(e),
        }
        // O_NONBLOCK: should the path become a FIFO between the check and the open, the
        // open does not wait for a writer; on a regular file it changes nothing.
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut meta = file.metadata()?;
        if !meta.is_file() {
            return Err(not_regular(&self.path, &meta));
        }
        let mut fingerprint = fingerprint(&file)?;
        let offset = match self.resume.take() {
            Some(cp) if cp.fingerprint == fingerprint && cp.offset <= meta.len() => cp.offset,
            // Another file than the checkpoint's: the log was rotated while nobody read
            // it. The rest of the old file comes first, if it is found beside the new one
            // under a rotated name; then the new one from its start (`check_replaced`).
            Some(cp) => match cp.fingerprint.map_or(Ok(None), |print| {
                rotated_away(&self.path, cp.offset, print, &[(meta.dev(), meta.ino())])
            })? {
                // Followed already as a rotated file: only the files rotated after it
                // come before the path's.
                Some(away) if self.follows(&away.meta) => {
                    self.backlog = away.later;
                    if self.open_backlog()? {
                        return Ok(true);
                    }
                    0
                }
                Some(away) => {
                    (file, meta, fingerprint) = (away.file, away.meta, cp.fingerprint);
                    self.backlog = away.later;
                    cp.offset
                }
                None => 0,
            },
            None if !self.seen && self.start == Start::Tail => meta.len(),
            None => 0,
        };
        let len = meta.len();
        // Starting at the end of a file whose last line is still being written: that line
        // is not complete, and its rest must not pass for a line.
        self.lines
            .restart(offset > 0 && offset == len && !ends_with_newline(&file, len)?);
        file.seek(SeekFrom::Start(offset))?;
        self.open = Some(OpenFile {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            offset,
            committed: offset,
            fingerprint,
        });
        Ok(true)
    }

    /// Reads to the end of the file, or until `budget` is spent: `false` then.
    fn read_to_end(&mut self, sink: &mut dyn FnMut(&str), budget: &mut u64) -> io::Result<bool> {
        match self.open.as_mut() {
            Some(open) => read_file(open, &mut self.lines, &mut self.chunk, sink, budget),
            None => Ok(true),
        }
    }

    /// Before reading: was the open file truncated (copytruncate)? Seen as a length below
    /// the read position, or, when it has grown again since, as another first line.
    fn check_truncated(&mut self) -> io::Result<()> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        let len = open.file.metadata()?.len();
        let current = fingerprint(&open.file)?;
        let first_line_changed = open.fingerprint.is_some() && current != open.fingerprint;
        if len < open.offset || first_line_changed {
            self.truncations += 1;
            open.file.seek(SeekFrom::Start(0))?;
            open.offset = 0;
            open.committed = 0;
            self.lines.restart(false);
        }
        if open.fingerprint.is_none() || open.offset == 0 {
            open.fingerprint = current;
        }
        Ok(())
    }

    /// With no file at the path: opens the file of the checkpoint under its rotated name,
    /// if there is one; `false` otherwise (the checkpoint is kept for the path's file).
    fn open_rotated(&mut self) -> io::Result<bool> {
        let Some((offset, Some(print))) =
            self.resume.as_ref().map(|cp| (cp.offset, cp.fingerprint))
        else {
            return Ok(false);
        };
        let Some(away) = rotated_away(&self.path, offset, print, &[])? else {
            return Ok(false);
        };
        self.resume = None;
        self.backlog = away.later;
        if self.follows(&away.meta) {
            return self.open_backlog();
        }
        let (mut file, meta) = (away.file, away.meta);
        file.seek(SeekFrom::Start(offset))?;
        self.lines.restart(false);
        self.open = Some(OpenFile {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            offset,
            committed: offset,
            fingerprint: Some(print),
        });
        Ok(true)
    }

    /// After reading a file rotated while nobody read to its end: opens the next one
    /// rotated after it, from its start; `false` when there is none left.
    fn open_backlog(&mut self) -> io::Result<bool> {
        while let Some(path) = self.backlog.pop() {
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let meta = file.metadata()?;
            self.rotations += 1;
            self.leave();
            self.lines.restart(false);
            self.open = Some(OpenFile {
                fingerprint: fingerprint(&file)?,
                file,
                dev: meta.dev(),
                ino: meta.ino(),
                offset: 0,
                committed: 0,
            });
            return Ok(true);
        }
        Ok(false)
    }

    /// After reading to the end: is another file at the path now? `true` when the
    /// follower let go of the old one and should read again.
    fn check_replaced(&mut self) -> io::Result<bool> {
        let Some(open) = self.open.as_ref() else {
            return Ok(false);
        };
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            // Renamed or deleted: the writer may still append to the open file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if (meta.dev(), meta.ino()) == (open.dev, open.ino) {
            return Ok(false);
        }
        self.rotations += 1;
        self.leave();
        if let Some(open) = self.open.take() {
            // Its writer may not know of the rotation: keep reading it while it grows.
            let lines = std::mem::replace(&mut self.lines, Lines::new(self.max_line));
            if self.rotated.len() == MAX_ROTATED {
                let oldest = self.rotated.remove(0);
                self.retire(oldest);
            }
            self.rotated.push(Rotated {
                open,
                lines,
                grew: Instant::now(),
            });
        }
        // The new file is read from its start, even in the first poll of a follower that
        // starts at the end of what it finds.
        self.seen = true;
        Ok(true)
    }
}

/// Adds the line counts of `more` to `to`.
fn add(to: &mut TailStats, more: TailStats) {
    to.lines += more.lines;
    to.invalid_utf8 += more.invalid_utf8;
    to.too_long += more.too_long;
}

/// Reads `open` to its end into `lines`, or until `budget` is spent: `false` then.
fn read_file(
    open: &mut OpenFile,
    lines: &mut Lines,
    chunk: &mut [u8],
    sink: &mut dyn FnMut(&str),
    budget: &mut u64,
) -> io::Result<bool> {
    loop {
        if *budget == 0 {
            return Ok(false);
        }
        let n = match open.file.read(chunk) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        open.offset += n as u64;
        *budget = budget.saturating_sub(n as u64);
        let complete = lines.feed(&chunk[..n], sink);
        open.committed = open.offset - (n - complete) as u64;
    }
}

/// Rotated files looked at, at most, for the one a checkpoint was in.
const ROTATED_CANDIDATES: usize = 16;

/// What logrotate's `compress` leaves: never read as text.
const COMPRESSED: [&str; 7] = [".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z", ".zip"];

/// The entries beside `path` whose names are its own with a rotation's suffix
/// (`auth.log.1`, `auth.log-20261130`, `auth.log_old`), compressed ones left out.
fn rotated_names(path: &Path) -> Vec<std::fs::DirEntry> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let name = name.as_encoded_bytes();
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let other = entry.file_name();
            let other = other.as_encoded_bytes();
            other.len() > name.len()
                && other.starts_with(name)
                && matches!(other[name.len()], b'.' | b'-' | b'_')
                && !COMPRESSED.iter().any(|end| other.ends_with(end.as_bytes()))
        })
        .collect()
}

/// Whether a log that is not at `path` now was rotated away from it (a rotated file is
/// beside it, waiting for the new one to be created): it is a log, not a typo.
pub fn rotated_away_now(path: &Path) -> bool {
    rotated_names(path)
        .iter()
        .any(|entry| entry.metadata().is_ok_and(|meta| meta.is_file()))
}

/// A file found under a rotated name.
struct Away {
    file: File,
    meta: std::fs::Metadata,
    /// The files rotated after it (written later), the oldest last.
    later: Vec<PathBuf>,
}

/// The file read up to `offset` whose first line hashes to `fingerprint`, now under a
/// rotated name beside `path` (`auth.log.1`, `auth.log-20261130`): same first line, at
/// least as long, and none of the files `skip` names (device, inode).
fn rotated_away(
    path: &Path,
    offset: u64,
    fingerprint: u64,
    skip: &[(u64, u64)],
) -> io::Result<Option<Away>> {
    let mut rotated: Vec<(std::time::SystemTime, PathBuf)> = rotated_names(path)
        .into_iter()
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            (meta.is_file() && !skip.contains(&(meta.dev(), meta.ino())))
                .then(|| Some((meta.modified().ok()?, entry.path())))?
        })
        .collect();
    // The most recently written first: the file rotated last.
    rotated.sort_by_key(|candidate| std::cmp::Reverse(candidate.0));
    for (n, (_, candidate)) in rotated.iter().enumerate().take(ROTATED_CANDIDATES) {
        let Ok(file) = File::open(candidate) else {
            continue;
        };
        let meta = file.metadata()?;
        if meta.len() >= offset && self::fingerprint(&file)? == Some(fingerprint) {
            let later = rotated[..n].iter().map(|(_, path)| path.clone()).collect();
            return Ok(Some(Away { file, meta, later }));
        }
    }
    Ok(None)
}

fn not_regular(path: &Path, meta: &std::fs::Metadata) -> io::Error {
    use std::os::unix::fs::FileTypeExt as _;
    let kind = meta.file_type();
    let what = if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {what}, not a regular file: only regular files are read as logs (it is \
             read again once a file is there)",
            path.display()
        ),
    )
}

/// FNV-1a of the file's first complete line (at most [`FINGERPRINT_BYTES`] of it).
/// Hand-written because the value is stored in checkpoints and must not change between
/// Rust versions, as std's hasher may.
fn fingerprint(file: &File) -> io::Result<Option<u64>> {
    let mut head = [0; FINGERPRINT_BYTES];
    let n = read_at_most(file, &mut head, 0)?;
    let head = &head[..n];
    let line = match memchr::memchr(b'\n', head) {
        Some(end) => &head[..end],
        None if n == FINGERPRINT_BYTES => head,
        None => return Ok(None),
    };
    let hash = line.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    Ok(Some(hash))
}

/// Whether `open` is no longer the file it was read from: shorter than what was read of
/// it, or with another first line.
fn rewritten(open: &OpenFile) -> io::Result<bool> {
    if open.file.metadata()?.len() < open.offset {
        return Ok(true);
    }
    Ok(open.fingerprint.is_some() && fingerprint(&open.file)? != open.fingerprint)
}

fn ends_with_newline(file: &File, len: u64) -> io::Result<bool> {
    let mut last = [0u8];
    let n = read_at_most(file, &mut last, len.saturating_sub(1))?;
    Ok(n == 1 && last[0] == b'\n')
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Whether a path (or one of its parts) has glob characters.
pub fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// The files `logpath` patterns name now: a pattern without glob characters is taken as
/// is (it may not exist yet); a glob gives the files that match it.
pub fn expand(patterns: &[PathBuf]) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for pattern in patterns {
        let text = pattern.to_string_lossy();
        if !is_glob(&text) {
            paths.push(pattern.clone());
            continue;
        }
        if let Ok(matches) = glob::glob(&text) {
            paths.extend(matches.filter_map(Result::ok).filter(|p| p.is_file()));
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests;
