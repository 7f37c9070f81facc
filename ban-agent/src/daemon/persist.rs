//! What outlives the agent: the state database, what changed since the last commit, and
//! committing it (bans made and lifted, history, failure windows, log positions, journal
//! cursors, jail ids, the fleet's place). A state that cannot be opened or written is
//! tried again every second while the agent protects from memory.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
};

use ipnet::IpNet;
use tracing::{error, info, warn};

use super::{
    follow::{Logs, Places},
    jails::Jails,
    log_once::LogOnce,
    table::{ActiveBan, Bans},
};
use crate::{
    clock::{Now, UnixMs},
    control::protocol::StateStatus,
    metrics::Metrics,
    store::{Changes, Keep, SavedBan, State, Store, StoreError},
};

/// How much ban history the state keeps (for `bantime_increment`): what fail2ban's
/// `dbpurgeage` is, but long enough for increments to mean something.
const KEEP: Keep = Keep {
    max_age: std::time::Duration::from_secs(30 * 24 * 3600),
    max_entries: 2_000_000,
};

/// How often old history and ended failure windows are pruned from the state.
const PRUNE_EVERY_MS: i64 = 60_000;

/// The state database and what is staged for it.
pub(super) struct Persist {
    /// `None` in a dry run, or while the state cannot be opened (`reopen`).
    store: Option<Store>,
    /// Positions, cursors, jail ids and the fleet's place as last committed (or read at
    /// start); the bans in force are the agent's table, the history is in the store.
    state: State,
    /// What changed since the last commit (kept until a commit succeeds).
    pending: Changes,
    /// The state could not be opened at start (a full disk, a read-only folder): it is
    /// tried again every second, and meanwhile the agent protects from memory.
    reopen: bool,
    /// When the state was last pruned.
    last_prune: UnixMs,
    /// Entries committed since the memory was last handed back to the system.
    churn: usize,
    /// The last error of saving the state, said once (a full disk fails every tick).
    save_error: LogOnce,
    metrics: Arc<Metrics>,
}

impl Persist {
    /// Reads the saved state (nothing without a store: a dry run starts from nothing and
    /// never saves); returns it with the saved bans, taken out for the agent to restore.
    pub(super) fn open(
        store: Option<Store>,
        metrics: Arc<Metrics>,
        now: Now,
    ) -> anyhow::Result<(Self, Vec<SavedBan>)> {
        let mut state = match &store {
            Some(store) => store.load()?,
            None => State::default(),
        };
        let saved = std::mem::take(&mut state.bans);
        let persist = Self {
            store,
            state,
            pending: Changes::default(),
            reopen: false,
            last_prune: now.wall,
            churn: 0,
            save_error: LogOnce::default(),
            metrics,
        };
        Ok((persist, saved))
    }

    /// The kernel's index of jail `name`, kept across restarts and reloads (the pinned
    /// maps key bans by it); a new jail takes the lowest free one. `None` when all are
    /// taken.
    pub(super) fn jail_id(&mut self, name: &str) -> Option<u32> {
        let known = self.state.jail_ids.contains_key(name);
        let id = self.state.jail_id(name)?;
        if !known {
            self.pending.jail_ids = Some(self.state.jail_ids.clone());
        }
        Some(id)
    }

    /// Jails that are gone lose their ids.
    pub(super) fn keep_jail_ids(&mut self, jails: &Jails) {
        self.state
            .jail_ids
            .retain(|name, _| jails.contains_key(name));
        self.pending.jail_ids = Some(self.state.jail_ids.clone());
    }

    /// Where the logs were read up to, for them to resume from and leave their place in.
    pub(super) fn places(&mut self) -> Places<'_> {
        Places {
            positions: &mut self.state.positions,
            cursors: &mut self.state.cursors,
        }
    }

    /// The last entry of the fleet's stream applied here, where reading resumes.
    pub(super) fn fleet_id(&self) -> Option<&str> {
        self.state.fleet_id.as_deref()
    }

    /// Where the fleet's stream was read up to, committed with what it applied.
    pub(super) fn fleet_read_up_to(&mut self, id: &str) {
        self.state.fleet_id = Some(id.to_owned());
        self.pending.fleet_id = Some(id.to_owned());
    }

    /// Stages the ban of `target` in `jail` as saved, to commit.
    pub(super) fn stage(&mut self, jail: &str, target: IpNet, ban: &ActiveBan, origin: &str) {
        let saved = SavedBan {
            jail: jail.to_owned(),
            target,
            expires_at: ban.expires_at,
            banned_at: ban.banned_at,
            failures: ban.failures,
            origin: origin.to_owned(),
        };
        self.pending
            .bans
            .insert((jail.to_owned(), target), Some(saved));
    }

    /// Stages the end of the ban of `target` in `jail`, to commit.
    pub(super) fn stage_lift(&mut self, jail: &str, target: IpNet) {
        self.pending.bans.insert((jail.to_owned(), target), None);
    }

    /// Whether a ban of `target` in `jail` is staged, not yet committed.
    pub(super) fn staged(&self, jail: &str, target: IpNet) -> bool {
        matches!(
            self.pending.bans.get(&(jail.to_owned(), target)),
            Some(Some(_))
        )
    }

    /// Counts a new ban of `target` in the history, to commit.
    pub(super) fn count_ban(&mut self, jail: &str, target: IpNet, at: UnixMs) {
        self.pending.count_ban(jail, target, at);
    }

    /// Counts `bans` bans of `target` made elsewhere (fail2ban's), to commit.
    pub(super) fn count_bans(&mut self, jail: &str, target: IpNet, bans: u32, at: UnixMs) {
        self.pending.count_bans(jail, target, bans, at);
    }

    /// Failures saved before the restart go back into their jails' windows (those of
    /// targets banned now excepted: their failures were spent on the ban).
    pub(super) fn restore_failures(
        &self,
        jails: &mut Jails,
        bans: &Bans,
        now: Now,
    ) -> anyhow::Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let mut restored = 0usize;
        for (name, run) in jails {
            for (target, times) in store.failures(name)? {
                if bans.contains(name, target) {
                    continue;
                }
                run.detector.tracker_mut().restore(target, &times, now.wall);
                restored += 1;
            }
        }
        if restored > 0 {
            info!(addresses = restored, "failures counted before the restart");
        }
        Ok(())
    }

    /// Previous bans of `target` in `jail` (or every jail): saved, and staged to save.
    pub(super) fn previous_bans(&mut self, jail: &str, target: &IpNet, every_jail: bool) -> u32 {
        // What the writer thread holds counts too.
        self.settle_writer();
        let staged: u32 = self
            .pending
            .history
            .iter()
            .filter(|((name, staged), _)| staged == target && (every_jail || name == jail))
            .map(|(_, (bans, _))| *bans)
            .sum();
        let saved = match &self.store {
            Some(store) => match store.previous_bans(jail, target, every_jail) {
                Ok(saved) => saved,
                Err(e) => {
                    let message = e.to_string();
                    if self.save_error.first(&message) {
                        error!("{message}; bans are not lengthened by bantime_increment");
                    }
                    0
                }
            },
            None => 0,
        };
        saved.saturating_add(staged)
    }

    /// The state could not be opened at start: said once, and tried again each second.
    pub(super) fn open_later(&mut self, error: &StoreError) {
        self.reopen = true;
        let message = error.to_string();
        if self.save_error.first(&message) {
            error!(
                "{message}. The agent protects from memory (bans in force stay in the kernel \
                 maps) and opens the state as soon as it can"
            );
        }
    }

    /// Opens the state if it could not be opened at start (tried once a second).
    pub(super) fn reopen_if_needed(&mut self, state_dir: &Path, bans: &Bans, now: Now) {
        if self.reopen {
            self.reopen_state(state_dir, bans, now);
        }
    }

    /// Prunes once a minute, and hands back the memory freed since the last time once
    /// enough was committed.
    pub(super) fn tidy(&mut self, jails: &Jails, now: Now) {
        if now.wall - self.last_prune >= PRUNE_EVERY_MS {
            self.prune(jails, now);
        }
        // Once the writer is done with the last batch: it frees it.
        let writing = self.store.as_ref().is_some_and(Store::busy);
        if self.churn >= CHURN_TO_TRIM && !writing {
            self.churn = 0;
            release_memory();
        }
    }

    /// Opens the state that could not be opened at start and writes into it what the
    /// agent holds now: the bans in force (those it saved before and that are over go),
    /// the jail ids, positions and failures.
    fn reopen_state(&mut self, state_dir: &Path, bans: &Bans, now: Now) {
        let store = match Store::open(state_dir, now.wall) {
            Ok(store) => store,
            Err(e) => {
                let message = e.to_string();
                if self.save_error.first(&message) {
                    error!("{message}; tried again every second");
                }
                return;
            }
        };
        let saved = match store.load() {
            Ok(saved) => saved,
            Err(e) => {
                error!("{e}");
                return;
            }
        };
        for ban in saved.bans {
            if !bans.contains(&ban.jail, ban.target) {
                self.pending.bans.insert((ban.jail, ban.target), None);
            }
        }
        for (jail, target, ban) in bans.iter() {
            self.stage(jail, target, &ban, "memory");
        }
        self.pending.jail_ids = Some(self.state.jail_ids.clone());
        self.state.positions.clear();
        self.state.cursors.clear();
        self.store = Some(store);
        self.reopen = false;
    }

    /// Writes what changed since the last commit in one transaction: bans made and
    /// lifted, history, failure windows (taken from `jails`), log positions and journal
    /// cursors (from `logs`) (nothing in a dry run), and waits until it is written. What
    /// cannot be written is kept and tried again at the next commit; the bans stay in
    /// force meanwhile.
    pub(super) fn commit(&mut self, logs: &Logs, jails: &mut Jails) {
        self.settle_writer();
        let Some(changes) = self.gather(logs, jails) else {
            return;
        };
        let Some(store) = &mut self.store else { return };
        let began = std::time::Instant::now();
        let committed = store.commit(&changes);
        self.metrics
            .state_commit
            .observe(began.elapsed().as_secs_f64());
        match committed {
            Ok(()) => self.saved(),
            Err(e) => self.not_saved(&e, changes),
        }
    }

    /// Like [`Persist::commit`], for what need not wait (the failures and positions of
    /// lines read, no ban): handed to the state's writer thread while the agent reads on.
    /// When the writer is still busy, the changes stay staged for the next commit.
    pub(super) fn commit_soon(&mut self, logs: &Logs, jails: &mut Jails) {
        if self.writer_done() {
            self.hand_over(logs, jails);
        }
    }

    /// Like [`Persist::commit`] (one transaction with the bans staged), but written by the
    /// state's writer thread while the agent reads on; the writer's last batch is waited
    /// for first, so that this one is written after it. [`Persist::settle_writer`] waits
    /// until it is written. `false` when it was committed here instead (no writer: a dry
    /// run, no state, or its thread cannot start).
    pub(super) fn commit_on_writer(&mut self, logs: &Logs, jails: &mut Jails) -> bool {
        self.settle_writer();
        self.hand_over(logs, jails)
    }

    /// Hands what changed to the idle writer thread; `false` when it was committed here
    /// instead (no state, or no writer) or nothing changed.
    fn hand_over(&mut self, logs: &Logs, jails: &mut Jails) -> bool {
        if self.store.is_none() {
            self.commit(logs, jails);
            return false;
        }
        let Some(changes) = self.gather(logs, jails) else {
            return false;
        };
        let Some(store) = &mut self.store else {
            return false;
        };
        match store.commit_later(changes) {
            Ok(()) => true,
            Err(changes) => {
                // No writer: commit here.
                self.pending.absorb(*changes);
                self.commit(logs, jails);
                false
            }
        }
    }

    /// Whether the writer thread is done with its batch (what became of it is taken in);
    /// never waits.
    pub(super) fn writer_done(&mut self) -> bool {
        let Some(store) = &mut self.store else {
            return true;
        };
        match store.written() {
            Some(Ok(took)) => self.written_by_writer(took),
            Some(Err(failed)) => {
                let (e, older) = *failed;
                self.not_saved(&e, older);
            }
            None => {}
        }
        !self.store.as_ref().is_some_and(Store::busy)
    }

    /// Waits for the writer thread's batch, so that what comes next is written after it.
    pub(super) fn settle_writer(&mut self) {
        let Some(store) = &mut self.store else { return };
        if !store.busy() {
            return;
        }
        match store.settle() {
            Ok(took) => self.written_by_writer(took),
            Err(failed) => {
                let (e, older) = *failed;
                self.not_saved(&e, older);
            }
        }
    }

    /// Everything that changed, taken out to be written (the failure windows and
    /// positions are then known as saved); `None` when nothing did, or in a dry run.
    fn gather(&mut self, logs: &Logs, jails: &mut Jails) -> Option<Changes> {
        if self.store.is_none() {
            if !self.reopen {
                // A dry run: nothing is ever saved.
                self.pending = Changes::default();
                for run in jails.values_mut() {
                    run.detector.tracker_mut().saved();
                }
            }
            return None;
        }
        let mut changes = std::mem::take(&mut self.pending);
        for (path, checkpoint) in logs.checkpoints() {
            if self.state.positions.get(path) != Some(&checkpoint) {
                changes.positions.insert(path.clone(), checkpoint);
            }
        }
        for (jail, cursor) in logs.cursors() {
            if self.state.cursors.get(jail).map(String::as_str) != Some(cursor) {
                changes.cursors.insert(jail.clone(), cursor.to_owned());
            }
        }
        for (name, run) in jails {
            let tracker = run.detector.tracker_mut();
            if tracker.has_changes() {
                let targets = changes.failures.entry(name.clone()).or_default();
                targets.extend(tracker.changes());
                tracker.saved();
            }
        }
        self.churn += changes.bans.len() + changes.history.len();
        self.churn += changes.failures.values().map(HashMap::len).sum::<usize>();
        self.state.positions.extend(changes.positions.clone());
        self.state.cursors.extend(changes.cursors.clone());
        (!changes.is_empty()).then_some(changes)
    }

    /// The writer thread's commit went through, in `took` (`None`: there was none).
    fn written_by_writer(&mut self, took: Option<std::time::Duration>) {
        if let Some(took) = took {
            self.metrics.state_commit.observe(took.as_secs_f64());
        }
        self.saved();
    }

    /// A commit went through.
    fn saved(&mut self) {
        if self.save_error.ended()
            && let Some(store) = &self.store
        {
            info!(path = %store.path().display(), "the state is saved again");
        }
    }

    /// A commit failed: its changes are staged again, under anything newer.
    fn not_saved(&mut self, e: &StoreError, changes: Changes) {
        // The bans stay in the kernel maps; only what a restart restores is late.
        let message = e.to_string();
        if self.save_error.first(&message) {
            error!(
                "cannot save the state: {message}. Bans stay in force; a restart would \
                 restore them as last saved. Saving is retried every second"
            );
        }
        self.pending.absorb(changes);
    }

    /// The state database for `status`: none in a dry run.
    pub(super) fn status(&self, state_dir: &Path) -> Option<StateStatus> {
        let (path, bytes): (PathBuf, u64) = match &self.store {
            Some(store) => (store.path().to_owned(), store.bytes()),
            None if self.reopen => (state_dir.join(crate::store::FILE), 0),
            None => return None,
        };
        Some(StateStatus {
            path,
            bytes,
            error: self.save_error.current().map(str::to_owned),
        })
    }

    /// Refreshes the size of the state database in the metrics.
    pub(super) fn refresh_metrics(&self) {
        if let Some(store) = &self.store {
            self.metrics
                .state_bytes
                .set(i64::try_from(store.bytes()).unwrap_or(i64::MAX));
        }
    }

    /// Drops old history and ended failure windows from the state.
    fn prune(&mut self, jails: &Jails, now: Now) {
        self.last_prune = now.wall;
        self.settle_writer();
        let Some(store) = &mut self.store else { return };
        let findtimes: BTreeMap<String, std::time::Duration> = jails
            .iter()
            .map(|(name, run)| (name.clone(), run.config.rules.findtime))
            .collect();
        match store.prune(KEEP, &findtimes, now.wall) {
            Ok(pruned) if pruned.history + pruned.failures > 0 => {
                tracing::debug!(
                    history = pruned.history,
                    failures = pruned.failures,
                    "pruned the state"
                );
            }
            Ok(_) => {}
            Err(e) => warn!("{e}"),
        }
    }

    /// Drops jail `name` (a reload removed it): its id is freed.
    pub(super) fn drop_jail(&mut self, name: &str) {
        self.state.jail_ids.remove(name);
        self.pending.jail_ids = Some(self.state.jail_ids.clone());
    }
}

/// Entries committed since the memory was last handed back, past which [`release_memory`]
/// runs at the next sweep.
const CHURN_TO_TRIM: usize = 10_000;

/// Hands the memory freed since back to the system. A flood's batches are many small
/// allocations (a ban's or a failure's entries until their commit), freed after it; glibc
/// keeps freed small blocks in its heap, so the resident size would stay at the flood's
/// peak. `malloc_trim` returns every free page, inside the heap too; it takes a few
/// milliseconds, and runs at most once a second, once the writer is done with the batch.
pub(super) fn release_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only returns free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}
