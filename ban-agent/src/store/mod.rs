//! What must survive a restart or a reboot, in one SQLite database (`state.db` in the state
//! directory; `schema.sql` says what each table holds): the bans in force (with a
//! wall-clock expiry, since the kernel's boot clock starts again at a reboot), how often
//! each target was banned (for `bantime_increment`), the failures inside each jail's
//! `findtime`, where each log and journal was read up to, and the kernel's jail ids.
//!
//! Writes are incremental: the agent gathers what changed into [`Changes`] and commits it
//! in one transaction, so a ban, the failures that led to it and the log position after
//! them are saved together or not at all. WAL with `synchronous = NORMAL`: a commit is
//! in the log before it returns, so `kill -9` loses nothing committed; a power cut may
//! lose the last commits, but never half of one (docs/daemon.md says why that is enough).
//!
//! An older `state.json` is imported once and kept as `state.json.migrated`.

mod legacy;

use std::{
    collections::{BTreeMap, HashMap},
    ffi::OsStr,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};
use thiserror::Error;

use crate::{
    clock::{UnixMs, ms},
    tail::{Checkpoint, Mark},
};

/// The schema this ban-agent writes (`PRAGMA user_version`); a newer one is refused.
pub const SCHEMA: i64 = 1;
pub const FILE: &str = "state.db";
const SCHEMA_SQL: &str = include_str!("schema.sql");

/// A ban as saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedBan {
    pub jail: String,
    pub target: IpNet,
    /// Wall-clock end, in Unix milliseconds; `None` for a permanent ban.
    pub expires_at: Option<UnixMs>,
    pub banned_at: UnixMs,
    pub failures: u32,
    /// What made it: `failures`, `operator`, `fleet (HOST)`, ...
    pub origin: String,
}

impl SavedBan {
    /// Time left at wall-clock `now`: `None` when permanent, zero when over.
    pub fn remaining(&self, now: UnixMs) -> Option<Duration> {
        self.expires_at
            .map(|end| Duration::from_millis(u64::try_from(end.saturating_sub(now)).unwrap_or(0)))
    }
}

/// What the agent reads back at start (failures are read per jail, see
/// [`Store::failures`]; the ban history is asked for ban by ban).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub bans: Vec<SavedBan>,
    /// Where each log was read up to.
    pub positions: BTreeMap<PathBuf, Checkpoint>,
    /// The kernel's jail index of each jail name: kept across restarts and reloads, since
    /// the bans in the pinned maps are keyed by it.
    pub jail_ids: BTreeMap<String, u32>,
    /// Where each journal jail read its journal up to (sd-journal cursors).
    pub cursors: BTreeMap<String, String>,
    /// The last entry of the fleet's stream of bans applied here.
    pub fleet_id: Option<String>,
}

impl State {
    /// The jail index of `name`, assigning the lowest free one to a new jail; `None` when
    /// all `MAX_JAILS` are taken.
    pub fn jail_id(&mut self, name: &str) -> Option<u32> {
        if let Some(&id) = self.jail_ids.get(name) {
            return Some(id);
        }
        let taken: std::collections::BTreeSet<u32> = self.jail_ids.values().copied().collect();
        let id = (0..ban_common::MAX_JAILS).find(|id| !taken.contains(id))?;
        self.jail_ids.insert(name.to_owned(), id);
        Some(id)
    }
}

/// What changed since the last commit; [`Store::commit`] writes it in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Bans made or changed (`Some`) and lifted (`None`).
    pub bans: BTreeMap<(String, IpNet), Option<SavedBan>>,
    /// More bans in the history of a target, at a time.
    pub history: BTreeMap<(String, IpNet), (u32, UnixMs)>,
    /// Failure windows that changed, per jail and target: the times inside the window,
    /// none when the target no longer has any (banned, forgotten).
    pub failures: BTreeMap<String, HashMap<IpNet, Vec<UnixMs>>>,
    pub positions: BTreeMap<PathBuf, Checkpoint>,
    pub cursors: BTreeMap<String, String>,
    /// The whole table of jail ids, when it changed.
    pub jail_ids: Option<BTreeMap<String, u32>>,
    pub fleet_id: Option<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        let Self {
            bans,
            history,
            failures,
            positions,
            cursors,
            jail_ids,
            fleet_id,
        } = self;
        bans.is_empty()
            && history.is_empty()
            && failures.values().all(HashMap::is_empty)
            && positions.is_empty()
            && cursors.is_empty()
            && jail_ids.is_none()
            && fleet_id.is_none()
    }

    /// The changed failure window of `target` in `jail`.
    pub fn failed(&mut self, jail: &str, target: IpNet, times: Vec<UnixMs>) {
        match self.failures.get_mut(jail) {
            Some(targets) => {
                targets.insert(target, times);
            }
            None => {
                self.failures
                    .insert(jail.to_owned(), HashMap::from([(target, times)]));
            }
        }
    }

    /// Takes back `older` changes that could not be written, under these newer ones.
    pub fn absorb(&mut self, older: Changes) {
        fn under<K: Ord, V>(newer: &mut BTreeMap<K, V>, older: BTreeMap<K, V>) {
            for (key, value) in older {
                newer.entry(key).or_insert(value);
            }
        }
        under(&mut self.bans, older.bans);
        for (key, (bans, at)) in older.history {
            let entry = self.history.entry(key).or_insert((0, at));
            entry.0 = entry.0.saturating_add(bans);
            entry.1 = entry.1.max(at);
        }
        for (jail, older) in older.failures {
            let newer = self.failures.entry(jail).or_default();
            for (target, times) in older {
                newer.entry(target).or_insert(times);
            }
        }
        under(&mut self.positions, older.positions);
        under(&mut self.cursors, older.cursors);
        if self.jail_ids.is_none() {
            self.jail_ids = older.jail_ids;
        }
        if self.fleet_id.is_none() {
            self.fleet_id = older.fleet_id;
        }
    }

    /// One more ban of `target` in `jail` at `at`.
    pub fn count_ban(&mut self, jail: &str, target: IpNet, at: UnixMs) {
        self.count_bans(jail, target, 1, at);
    }

    /// `bans` more bans of `target` in `jail`, the last at `at`.
    pub fn count_bans(&mut self, jail: &str, target: IpNet, bans: u32, at: UnixMs) {
        let entry = self
            .history
            .entry((jail.to_owned(), target))
            .or_insert((0, at));
        entry.0 = entry.0.saturating_add(bans);
        entry.1 = entry.1.max(at);
    }
}

/// How much ban history is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keep {
    /// Entries not banned again for this long are dropped.
    pub max_age: Duration,
    /// At most this many entries (targets per jail); the oldest go first.
    pub max_entries: u64,
}

/// What [`Store::prune`] dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub history: usize,
    pub failures: usize,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot {op} {}: {source}; check that the state directory exists and is writable", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is not a ban-agent state file ({message}); move it aside to start with no saved \
         bans (the bans in the kernel maps are not affected)",
        path.display()
    )]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "{} was written by a newer ban-agent (schema {found}, this one knows {SCHEMA}); it \
         is left as it is: run the newer ban-agent, or move the file aside to start with \
         no saved bans",
        path.display()
    )]
    Newer { path: PathBuf, found: i64 },
    #[error("cannot {op} the state database {}: {source}", path.display())]
    Sql {
        op: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Untrusted(#[from] crate::trust::TrustError),
}

impl StoreError {
    /// Whether the state cannot be written for now (a full disk, a read-only folder),
    /// rather than being unfit to use (damaged, foreign, newer, open to others).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::Sql { .. })
    }
}

/// What the writer thread made of changes handed to it: how long their commit took
/// (`None`: nothing was waiting), or on failure the changes back.
pub type Written = Result<Option<Duration>, Box<(StoreError, Changes)>>;

/// The state database of a state directory.
pub struct Store {
    connection: Connection,
    path: PathBuf,
    writer: Option<Writer>,
}

/// A second connection on a thread of its own, which commits changes while the agent reads
/// on (a batch's failures and log positions, and the bans it made, which the agent puts in
/// the kernel once they are written): SQLite's work then takes the other core, not the
/// agent's. One batch at a time; the agent's own commits
/// wait for it first, so transactions are written in the order they were made.
struct Writer {
    changes: std::sync::mpsc::SyncSender<Changes>,
    done: std::sync::mpsc::Receiver<Written>,
    busy: bool,
}

impl Writer {
    fn spawn(path: PathBuf) -> std::io::Result<Self> {
        let (changes, inbox) = std::sync::mpsc::sync_channel::<Changes>(1);
        let (outbox, done) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || {
                let connection = Connection::open(&path).and_then(|c| {
                    c.busy_timeout(Duration::from_secs(5))?;
                    c.pragma_update(None, "synchronous", "NORMAL")?;
                    Ok(c)
                });
                for changes in inbox {
                    let began = std::time::Instant::now();
                    let written = match &connection {
                        Ok(c) => commit_on(c, &changes, None)
                            .map(|()| Some(began.elapsed()))
                            .map_err(|e| sql("write", &path, e)),
                        Err(e) => Err(StoreError::Corrupt {
                            path: path.clone(),
                            message: e.to_string(),
                        }),
                    };
                    if outbox
                        .send(written.map_err(|e| Box::new((e, changes))))
                        .is_err()
                    {
                        break;
                    }
                }
            })?;
        Ok(Self {
            changes,
            done,
            busy: false,
        })
    }
}

impl Store {
    /// Opens (or creates) the state database of `state_dir`, taking in a `state.json`
    /// left by an older ban-agent. The state directory and files must be writable by root
    /// (or the agent's user) alone.
    pub fn open(state_dir: &Path, now: UnixMs) -> Result<Self, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|e| io("create", state_dir, e))?;
        let path = state_dir.join(FILE);
        crate::trust::check_file(&path)?;
        let connection = Connection::open(&path).map_err(|e| sql("open", &path, e))?;
        let store = Self {
            connection,
            path,
            writer: None,
        };
        store.check_schema()?;
        store.prepare()?;
        store.import_json(state_dir, now)?;
        Ok(store)
    }

    /// Opens the state of `state_dir` to read only, as `ban-agent check` does: nothing is
    /// created, migrated or changed. `None` when there is no database yet.
    pub fn inspect(state_dir: &Path) -> Result<Option<Self>, StoreError> {
        let path = state_dir.join(FILE);
        if !path.exists() {
            legacy::read(&state_dir.join(legacy::FILE))?;
            return Ok(None);
        }
        crate::trust::check_file(&path)?;
        let connection = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| sql("open", &path, e))?;
        let store = Self {
            connection,
            path,
            writer: None,
        };
        store.check_schema()?;
        store.load()?;
        Ok(Some(store))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let found: i64 = self
            .connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| self.corrupt(e))?;
        if found > SCHEMA {
            return Err(StoreError::Newer {
                path: self.path.clone(),
                found,
            });
        }
        Ok(())
    }

    /// A damaged or foreign file is `Corrupt`; anything else (a full disk, a read-only
    /// folder) is an `Sql` error the agent can wait out.
    fn corrupt(&self, e: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        match e.sqlite_error_code() {
            Some(DatabaseCorrupt | NotADatabase) => StoreError::Corrupt {
                path: self.path.clone(),
                message: e.to_string(),
            },
            _ => sql("open", &self.path, e),
        }
    }

    /// WAL, `synchronous = NORMAL`, pages freed on demand, and the schema.
    fn prepare(&self) -> Result<(), StoreError> {
        let c = &self.connection;
        c.busy_timeout(Duration::from_secs(5))
            // Takes effect on a new database only (before its first table): pruning then
            // gives the pages it frees back to the file system (`incremental_vacuum`),
            // so the file shrinks after a flood of bans has ended.
            .and_then(|()| c.pragma_update(None, "auto_vacuum", "INCREMENTAL"))
            .and_then(|()| c.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|()| c.pragma_update(None, "synchronous", "NORMAL"))
            // The WAL file is cut back to this after each checkpoint (a flood's batches
            // make it grow past it meanwhile; the minute's prune truncates it).
            .and_then(|()| c.pragma_update(None, "journal_size_limit", 16 << 20))
            .and_then(|()| c.execute_batch(SCHEMA_SQL))
            .and_then(|()| c.pragma_update(None, "user_version", SCHEMA))
            .map_err(|e| self.corrupt(e))
    }

    /// Takes in `state.json` once, then renames it `state.json.migrated`. The import and
    /// the mark that it was done are one transaction, so a crash before the rename only
    /// leaves the rename to do.
    fn import_json(&self, state_dir: &Path, now: UnixMs) -> Result<(), StoreError> {
        let json = state_dir.join(legacy::FILE);
        let Some(old) = legacy::read(&json)? else {
            return Ok(());
        };
        let done: Option<String> = self
            .connection
            .query_row("SELECT value FROM meta WHERE key = 'imported'", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| sql("read", &self.path, e))?;
        if done.is_none() {
            let changes = old.changes(now);
            self.write(&changes, Some(&json))?;
            tracing::info!(
                from = %json.display(),
                to = %self.path.display(),
                bans = changes.bans.len(),
                "the state file was taken into the state database"
            );
        }
        let kept = json.with_extension("json.migrated");
        std::fs::rename(&json, &kept).map_err(|e| io("rename", &json, e))
    }

    /// The saved state.
    pub fn load(&self) -> Result<State, StoreError> {
        let read = |e| sql("read", &self.path, e);
        let c = &self.connection;
        let mut state = State {
            bans: self.load_bans()?,
            positions: self.load_positions()?,
            ..State::default()
        };
        self.load_rotated(&mut state.positions)?;
        state.jail_ids = self.jail_ids()?;
        state.cursors = self.pairs("SELECT jail, cursor FROM cursors")?;
        state.fleet_id = c
            .query_row("SELECT value FROM meta WHERE key = 'fleet_id'", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(read)?;
        Ok(state)
    }

    /// The kernel's jail index of each jail name (what [`State::jail_ids`] loads), alone.
    pub fn jail_ids(&self) -> Result<BTreeMap<String, u32>, StoreError> {
        self.pairs("SELECT name, id FROM jails")
    }

    fn load_bans(&self) -> Result<Vec<SavedBan>, StoreError> {
        let read = |e| sql("read", &self.path, e);
        let c = &self.connection;
        let mut saved = Vec::new();
        let mut bans = c
            .prepare(
                "SELECT jail, target, banned_at, expires_at, failures, origin FROM bans \
                 ORDER BY jail, target",
            )
            .map_err(read)?;
        let rows = bans
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            })
            .map_err(read)?;
        for row in rows {
            let (jail, target, banned_at, expires_at, failures, origin) = row.map_err(read)?;
            saved.push(SavedBan {
                jail,
                target: self.target(&target)?,
                banned_at,
                expires_at,
                failures,
                origin,
            });
        }
        Ok(saved)
    }

    fn load_positions(&self) -> Result<BTreeMap<PathBuf, Checkpoint>, StoreError> {
        let read = |e| sql("read", &self.path, e);
        let c = &self.connection;
        let mut loaded = BTreeMap::new();
        let mut positions = c
            .prepare("SELECT path, offset, fingerprint FROM positions")
            .map_err(read)?;
        let rows = positions
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            })
            .map_err(read)?;
        for row in rows {
            let (path, offset, fingerprint) = row.map_err(read)?;
            // Stored as SQLite's signed integers, bit for bit.
            let checkpoint = Checkpoint::file(offset as u64, fingerprint.map(|f| f as u64));
            loaded.insert(PathBuf::from(OsStr::from_bytes(&path)), checkpoint);
        }
        Ok(loaded)
    }

    /// The files each path's position still follows after their rotation, into its
    /// checkpoint.
    fn load_rotated(
        &self,
        positions: &mut BTreeMap<PathBuf, Checkpoint>,
    ) -> Result<(), StoreError> {
        let read = |e| sql("read", &self.path, e);
        let c = &self.connection;
        // A state written before the table existed, inspected read-only (`check` after an
        // upgrade): nothing rotated was saved.
        let has_rotated: bool = c
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND \
                 name = 'rotated')",
                [],
                |row| row.get(0),
            )
            .map_err(read)?;
        let query = if has_rotated {
            "SELECT path, offset, fingerprint FROM rotated ORDER BY path, seq"
        } else {
            "SELECT NULL, NULL, NULL WHERE 0"
        };
        let mut rotated = c.prepare(query).map_err(read)?;
        let rows = rotated
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(read)?;
        for row in rows {
            let (path, offset, fingerprint) = row.map_err(read)?;
            // A rotated file of a path with no position is an orphan: nothing resumes it.
            if let Some(checkpoint) = positions.get_mut(Path::new(OsStr::from_bytes(&path))) {
                checkpoint.rotated.push(Mark {
                    offset: offset as u64,
                    fingerprint: fingerprint as u64,
                });
            }
        }
        Ok(())
    }

    fn pairs<V: rusqlite::types::FromSql>(
        &self,
        query: &str,
    ) -> Result<BTreeMap<String, V>, StoreError> {
        let read = |e| sql("read", &self.path, e);
        let mut statement = self.connection.prepare(query).map_err(read)?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(read)?;
        rows.collect::<Result<_, _>>().map_err(read)
    }

    fn target(&self, text: &str) -> Result<IpNet, StoreError> {
        text.parse().map_err(|_| StoreError::Corrupt {
            path: self.path.clone(),
            message: format!("{text:?} is not an address or network"),
        })
    }

    /// The failures saved for `jail`: each target with its failure times, oldest first.
    pub fn failures(&self, jail: &str) -> Result<Vec<(IpNet, Vec<UnixMs>)>, StoreError> {
        let rows: Vec<(IpNet, String)> = self.per_target(
            "SELECT target, times FROM failures WHERE jail = ?1 ORDER BY last_at",
            jail,
        )?;
        rows.into_iter()
            .map(|(target, times)| {
                let parsed: Result<Vec<UnixMs>, _> = times.split(',').map(str::parse).collect();
                parsed
                    .map(|times| (target, times))
                    .map_err(|_| StoreError::Corrupt {
                        path: self.path.clone(),
                        message: format!("failure times {times:?} of {target} in jail {jail}"),
                    })
            })
            .collect()
    }

    /// The rows of `query` (a target and a value, for the jail `?1`).
    fn per_target<T: rusqlite::types::FromSql>(
        &self,
        query: &str,
        jail: &str,
    ) -> Result<Vec<(IpNet, T)>, StoreError> {
        let read = |e| sql("read", &self.path, e);
        let mut statement = self.connection.prepare(query).map_err(read)?;
        let rows = statement
            .query_map([jail], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, T>(1)?))
            })
            .map_err(read)?;
        let mut found = Vec::new();
        for row in rows {
            let (target, value) = row.map_err(read)?;
            found.push((self.target(&target)?, value));
        }
        Ok(found)
    }

    /// Previous bans of `target` in `jail`, or in every jail.
    pub fn previous_bans(
        &self,
        jail: &str,
        target: &IpNet,
        every_jail: bool,
    ) -> Result<u32, StoreError> {
        let target = target.to_string();
        let result = if every_jail {
            self.connection.query_row(
                "SELECT COALESCE(SUM(bans), 0) FROM history WHERE target = ?1",
                [&target],
                |row| row.get::<_, i64>(0),
            )
        } else {
            self.connection
                .query_row(
                    "SELECT bans FROM history WHERE jail = ?1 AND target = ?2",
                    [jail, &target],
                    |row| row.get::<_, i64>(0),
                )
                .optional()
                .map(Option::unwrap_or_default)
        };
        let bans = result.map_err(|e| sql("read", &self.path, e))?;
        Ok(u32::try_from(bans).unwrap_or(u32::MAX))
    }

    /// The ban history of `jail`: each target with its number of bans.
    pub fn history(&self, jail: &str) -> Result<BTreeMap<IpNet, u32>, StoreError> {
        let rows = self.per_target("SELECT target, bans FROM history WHERE jail = ?1", jail)?;
        Ok(rows.into_iter().collect())
    }

    /// Writes `changes` in one transaction, here and now. Call [`Store::settle`] first
    /// when changes were handed to the writer thread: transactions must be written in
    /// the order they were made.
    pub fn commit(&mut self, changes: &Changes) -> Result<(), StoreError> {
        debug_assert!(!self.busy(), "commit while the writer is busy");
        self.write(changes, None)
    }

    fn write(&self, changes: &Changes, imported: Option<&Path>) -> Result<(), StoreError> {
        commit_on(&self.connection, changes, imported).map_err(|e| sql("write", &self.path, e))
    }

    /// Hands `changes` to the writer thread, to be committed while the agent goes on;
    /// gives them back while it is still busy with the last ones (keep them, and try
    /// again). Call [`Store::written`] to learn how the last ones went.
    pub fn commit_later(&mut self, changes: Changes) -> Result<(), Box<Changes>> {
        if self.writer.is_none() {
            match Writer::spawn(self.path.clone()) {
                Ok(writer) => self.writer = Some(writer),
                Err(_) => return Err(Box::new(changes)),
            }
        }
        let Some(writer) = &mut self.writer else {
            return Err(Box::new(changes));
        };
        if writer.busy {
            return Err(Box::new(changes));
        }
        match writer.changes.send(changes) {
            Ok(()) => {
                writer.busy = true;
                Ok(())
            }
            // The thread is gone: say so by failing, the agent commits itself.
            Err(std::sync::mpsc::SendError(changes)) => {
                self.writer = None;
                Err(Box::new(changes))
            }
        }
    }

    /// Whether the writer thread is still on the changes last handed to it.
    pub fn busy(&self) -> bool {
        self.writer.as_ref().is_some_and(|writer| writer.busy)
    }

    /// How the changes last handed to the writer went, once it is done with them;
    /// `None` while it is busy, or when nothing was handed.
    pub fn written(&mut self) -> Option<Written> {
        let writer = self.writer.as_mut().filter(|writer| writer.busy)?;
        let written = writer.done.try_recv().ok()?;
        writer.busy = false;
        Some(written)
    }

    /// Waits until the writer is done with what it was handed, and says how it went.
    pub fn settle(&mut self) -> Written {
        let Some(writer) = self.writer.as_mut().filter(|writer| writer.busy) else {
            return Ok(None);
        };
        writer.busy = false;
        match writer.done.recv() {
            Ok(written) => written,
            // The thread died with the batch: no way to know; the agent's next commit
            // writes its positions and failures again from what it holds.
            Err(_) => {
                self.writer = None;
                Ok(None)
            }
        }
    }

    /// Drops history older than `keep` allows (and the oldest past its count), failure
    /// windows that ended (`findtimes`: each jail's findtime; jails not listed lose all
    /// theirs), and bans, positions and cursors of jails or files no longer followed are
    /// left to the agent.
    pub fn prune(
        &mut self,
        keep: Keep,
        findtimes: &BTreeMap<String, Duration>,
        now: UnixMs,
    ) -> Result<Pruned, StoreError> {
        let write = |e| sql("prune", &self.path, e);
        let tx = self.connection.unchecked_transaction().map_err(write)?;
        let age = now.saturating_sub(ms(keep.max_age));
        let mut pruned = Pruned {
            history: tx
                .execute("DELETE FROM history WHERE last_at < ?1", [age])
                .map_err(write)?,
            ..Pruned::default()
        };
        let entries: i64 = tx
            .query_row("SELECT COUNT(*) FROM history", [], |row| row.get(0))
            .map_err(write)?;
        let over = entries.saturating_sub(i64::try_from(keep.max_entries).unwrap_or(i64::MAX));
        if over > 0 {
            pruned.history += tx
                .execute(
                    "DELETE FROM history WHERE (jail, target) IN \
                     (SELECT jail, target FROM history ORDER BY last_at LIMIT ?1)",
                    [over],
                )
                .map_err(write)?;
        }
        let jails: Vec<String> = {
            let mut statement = tx
                .prepare("SELECT DISTINCT jail FROM failures")
                .map_err(write)?;
            let rows = statement.query_map([], |row| row.get(0)).map_err(write)?;
            rows.collect::<Result<_, _>>().map_err(write)?
        };
        for jail in jails {
            let since = findtimes
                .get(&jail)
                .map_or(i64::MAX, |findtime| now.saturating_sub(ms(*findtime)));
            pruned.failures += tx
                .execute(
                    "DELETE FROM failures WHERE jail = ?1 AND last_at <= ?2",
                    params![jail, since],
                )
                .map_err(write)?;
        }
        tx.commit().map_err(write)?;
        // Hands back the free pages: those of these rows and of the bans lifted since.
        // The pragma frees a page per step, so it is stepped to its end.
        let mut vacuum = self
            .connection
            .prepare("PRAGMA incremental_vacuum")
            .map_err(write)?;
        let mut steps = vacuum.query([]).map_err(write)?;
        while steps.next().map_err(write)?.is_some() {}
        drop(steps);
        drop(vacuum);
        // Moves the WAL into the database and empties it, unless a reader holds it (then
        // the next minute's does).
        self.connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(write)?;
        Ok(pruned)
    }

    /// Bytes the state takes on disk: the database and its write-ahead log.
    pub fn bytes(&self) -> u64 {
        let wal = self.path.with_extension("db-wal");
        [&self.path, &wal]
            .iter()
            .filter_map(|path| std::fs::metadata(path).ok())
            .map(|meta| meta.len())
            .sum()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // What the writer was handed is committed before the store goes.
        let _last = self.settle();
    }
}

/// `changes` in one transaction on `connection`, with the mark of a `state.json` taken in.
fn commit_on(
    connection: &Connection,
    changes: &Changes,
    imported: Option<&Path>,
) -> rusqlite::Result<()> {
    let tx = connection.unchecked_transaction()?;
    write_changes(&tx, changes)?;
    if let Some(json) = imported {
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('imported', ?1)",
            [json.to_string_lossy()],
        )?;
    }
    tx.commit()
}

fn write_changes(tx: &rusqlite::Transaction<'_>, changes: &Changes) -> rusqlite::Result<()> {
    write_bans(tx, changes)?;
    write_failures(tx, changes)?;
    write_positions(tx, changes)?;
    for (jail, cursor) in &changes.cursors {
        tx.execute(
            "INSERT OR REPLACE INTO cursors (jail, cursor) VALUES (?1, ?2)",
            [jail, cursor],
        )?;
    }
    if let Some(ids) = &changes.jail_ids {
        tx.execute("DELETE FROM jails", [])?;
        for (name, id) in ids {
            tx.execute(
                "INSERT INTO jails (name, id) VALUES (?1, ?2)",
                params![name, id],
            )?;
        }
    }
    if let Some(id) = &changes.fleet_id {
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('fleet_id', ?1)",
            [id],
        )?;
    }
    Ok(())
}

/// Bans made and lifted, and the history they add to.
fn write_bans(tx: &rusqlite::Transaction<'_>, changes: &Changes) -> rusqlite::Result<()> {
    {
        let mut upsert = tx.prepare_cached(
            "INSERT OR REPLACE INTO bans (jail, target, banned_at, expires_at, failures, origin) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM bans WHERE jail = ?1 AND target = ?2")?;
        for ((jail, target), ban) in &changes.bans {
            let target = target.to_string();
            match ban {
                Some(ban) => upsert.execute(params![
                    jail,
                    target,
                    ban.banned_at,
                    ban.expires_at,
                    ban.failures,
                    ban.origin
                ])?,
                None => delete.execute(params![jail, target])?,
            };
        }
    }
    let mut count = tx.prepare_cached(
        "INSERT INTO history (jail, target, bans, last_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (jail, target) DO UPDATE SET bans = bans + excluded.bans, \
         last_at = MAX(last_at, excluded.last_at)",
    )?;
    for ((jail, target), (bans, at)) in &changes.history {
        count.execute(params![jail, target.to_string(), bans, at])?;
    }
    Ok(())
}

/// Failure windows that changed: their times, or none left.
fn write_failures(tx: &rusqlite::Transaction<'_>, changes: &Changes) -> rusqlite::Result<()> {
    let mut upsert = tx.prepare_cached(
        "INSERT OR REPLACE INTO failures (jail, target, times, last_at) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut delete = tx.prepare_cached("DELETE FROM failures WHERE jail = ?1 AND target = ?2")?;
    let mut text = String::new();
    for (jail, target, times) in changes
        .failures
        .iter()
        .flat_map(|(jail, targets)| targets.iter().map(move |(t, times)| (jail, t, times)))
    {
        let target = target.to_string();
        match times.last() {
            Some(&last) => {
                text.clear();
                for (n, time) in times.iter().enumerate() {
                    use std::fmt::Write as _;
                    let comma = if n == 0 { "" } else { "," };
                    let _infallible = write!(text, "{comma}{time}");
                }
                upsert.execute(params![jail, target, text, last])?
            }
            None => delete.execute(params![jail, target])?,
        };
    }
    Ok(())
}

/// Where each log was read up to, and the files it still follows after their rotation.
fn write_positions(tx: &rusqlite::Transaction<'_>, changes: &Changes) -> rusqlite::Result<()> {
    let mut upsert = tx.prepare_cached(
        "INSERT OR REPLACE INTO positions (path, offset, fingerprint) VALUES (?1, ?2, ?3)",
    )?;
    let mut forget = tx.prepare_cached("DELETE FROM rotated WHERE path = ?1")?;
    let mut rotated = tx.prepare_cached(
        "INSERT INTO rotated (path, seq, offset, fingerprint) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (path, checkpoint) in &changes.positions {
        let path = path.as_os_str().as_bytes();
        // SQLite's integers are signed: stored bit for bit.
        upsert.execute(params![
            path,
            checkpoint.offset as i64,
            checkpoint.fingerprint.map(|f| f as i64)
        ])?;
        forget.execute([path])?;
        for (seq, mark) in checkpoint.rotated.iter().enumerate() {
            rotated.execute(params![
                path,
                seq as i64,
                mark.offset as i64,
                mark.fingerprint as i64
            ])?;
        }
    }
    Ok(())
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn sql(op: &'static str, path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sql {
        op,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
