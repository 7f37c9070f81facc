//! What outlives the agent: the bans and failures taken back at start (from the state
//! database and the kernel maps), and what changed committed back.

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;
use tracing::{error, info, warn};

use super::{agent::Agent, table::ActiveBan};
use crate::clock::{Now, ms};
use crate::{
    clock::Expiry,
    control::protocol::StateStatus,
    ignore::IgnoreList,
    store::{Changes, Keep, SavedBan, Store, StoreError},
};

/// How much ban history the state keeps (for `bantime_increment`): what fail2ban's
/// `dbpurgeage` is, but long enough for increments to mean something.
pub(super) const KEEP: Keep = Keep {
    max_age: std::time::Duration::from_secs(30 * 24 * 3600),
    max_entries: 2_000_000,
};

impl Agent {
    /// Saved bans go back into the kernel if a reboot emptied it; bans the kernel holds
    /// for a current jail are kept even if the state missed them (a state that could not
    /// be written); bans of jails that are gone are lifted. A saved ban that ended while
    /// the agent was away is said ended now (log line, hook, metric).
    pub(super) fn restore(&mut self, saved: Vec<SavedBan>, now: Now) -> anyhow::Result<()> {
        let mut in_kernel = InKernel::new(self.kernel.list()?);
        self.bans.reserve(saved.len().max(in_kernel.bans.len()));
        let mut restored = 0usize;
        // A state written by hand, or by a broken disk, never bans what no path may ban.
        let never = IgnoreList::new(Vec::new(), self.setup.own.clone());
        for ban in saved {
            let spared = never.spares(&ban.target);
            let id = self.jails.get(&ban.jail).map(|run| run.id);
            let (Some(id), None) = (id, spared) else {
                if let Some(why) = spared {
                    warn!(jail = ban.jail, ip = %ban.target, "a saved ban is dropped: {why}");
                }
                if let Some(id) = id
                    && in_kernel.remove(&(id, ban.target)).is_some()
                {
                    self.kernel.unban(id, ban.target)?;
                }
                self.pending.bans.insert((ban.jail, ban.target), None);
                continue;
            };
            let left = ban.remaining(now.wall);
            let mut active = ActiveBan {
                expiry: Expiry::Never,
                expires_at: ban.expires_at,
                banned_at: ban.banned_at,
                failures: ban.failures,
            };
            if left.is_some_and(|left| left.is_zero()) {
                if in_kernel.remove(&(id, ban.target)).is_some() {
                    self.kernel.unban(id, ban.target)?;
                }
                self.pending
                    .bans
                    .insert((ban.jail.clone(), ban.target), None);
                self.unbanned(&ban.jail, ban.target, &active, "expired", now);
                continue;
            }
            active.expiry = match in_kernel.remove(&(id, ban.target)) {
                Some(expiry) if !expiry.expired(now.boot) => expiry,
                _ => {
                    let expiry = left.map_or(Expiry::Never, |left| Expiry::after(now.boot, left));
                    self.kernel.ban(id, ban.target, expiry)?;
                    expiry
                }
            };
            self.insert(&ban.jail, ban.target, active);
            restored += 1;
        }
        let ids: BTreeMap<u32, String> = self
            .jails
            .iter()
            .map(|(name, run)| (run.id, name.clone()))
            .collect();
        let mut adopted = 0usize;
        for ((id, target), expiry) in in_kernel.rest() {
            match ids.get(&id) {
                Some(jail) if !expiry.expired(now.boot) && never.spares(&target).is_none() => {
                    let expires_at = expiry.remaining(now.boot).map(|left| now.wall + ms(left));
                    let jail = jail.clone();
                    let active = ActiveBan {
                        expiry,
                        expires_at,
                        banned_at: now.wall,
                        failures: 0,
                    };
                    self.insert(&jail, target, active);
                    // The ban was made but not saved: it is saved, and counts in the
                    // history (for bantime increments) once, here.
                    self.stage(&jail, target, &active, "kernel");
                    self.pending.count_ban(&jail, target, now.wall);
                    adopted += 1;
                }
                _ => {
                    self.kernel.unban(id, target)?;
                }
            }
        }
        if restored + adopted > 0 {
            info!(restored, adopted, "bans in force at start");
        }
        Ok(())
    }

    /// Failures saved before the restart go back into their jails' windows (those of
    /// targets banned now excepted: their failures were spent on the ban).
    pub(super) fn restore_failures(&mut self, now: Now) -> anyhow::Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let mut restored = 0usize;
        for (name, run) in &mut self.jails {
            for (target, times) in store.failures(name)? {
                if self.bans.contains(name, target) {
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
    pub fn open_state_later(&mut self, error: &StoreError) {
        self.reopen = true;
        let message = error.to_string();
        if self.save_error.first(&message) {
            error!(
                "{message}. The agent protects from memory (bans in force stay in the kernel \
                 maps) and opens the state as soon as it can"
            );
        }
    }

    /// Opens the state that could not be opened at start and writes into it what the
    /// agent holds now: the bans in force (those it saved before and that are over go),
    /// the jail ids, positions and failures.
    pub(super) fn reopen_state(&mut self, now: Now) {
        let store = match Store::open(&self.global.state_dir, now.wall) {
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
            if !self.bans.contains(&ban.jail, ban.target) {
                self.pending.bans.insert((ban.jail, ban.target), None);
            }
        }
        let bans: Vec<(String, IpNet, ActiveBan)> = self
            .bans
            .iter()
            .map(|(jail, target, ban)| (jail.to_owned(), target, ban))
            .collect();
        for (jail, target, ban) in bans {
            self.stage(&jail, target, &ban, "memory");
        }
        self.pending.jail_ids = Some(self.state.jail_ids.clone());
        self.state.positions.clear();
        self.state.cursors.clear();
        self.store = Some(store);
        self.reopen = false;
    }

    /// Writes what changed since the last commit in one transaction: bans made and
    /// lifted, history, failure windows, log positions and journal cursors (nothing in a
    /// dry run), and waits until it is written. What cannot be written is kept and tried
    /// again at the next commit; the bans stay in force meanwhile.
    pub fn commit(&mut self) {
        self.settle_writer();
        let Some(changes) = self.gather() else { return };
        let Some(store) = &mut self.store else { return };
        let began = std::time::Instant::now();
        let committed = store.commit(&changes);
        self.setup
            .metrics
            .state_commit
            .observe(began.elapsed().as_secs_f64());
        match committed {
            Ok(()) => self.saved(),
            Err(e) => self.not_saved(&e, changes),
        }
    }

    /// Like [`Agent::commit`], for what need not wait (the failures and positions of
    /// lines read, no ban): handed to the state's writer thread while the agent reads on.
    /// When the writer is still busy, the changes stay staged for the next commit.
    pub(super) fn commit_soon(&mut self) {
        let Some(store) = &mut self.store else {
            self.commit();
            return;
        };
        match store.written() {
            Some(Ok(())) => self.saved(),
            Some(Err(failed)) => {
                let (e, older) = *failed;
                self.not_saved(&e, older);
            }
            None => {}
        }
        if self.store.as_ref().is_some_and(Store::busy) {
            return;
        }
        let Some(changes) = self.gather() else { return };
        let Some(store) = &mut self.store else { return };
        if let Err(changes) = store.commit_later(changes) {
            // No writer: commit here.
            self.pending.absorb(*changes);
            self.commit();
        }
    }

    /// Waits for the writer thread's batch, so that what comes next is written after it.
    fn settle_writer(&mut self) {
        let Some(store) = &mut self.store else { return };
        if !store.busy() {
            return;
        }
        match store.settle() {
            Ok(()) => self.saved(),
            Err(failed) => {
                let (e, older) = *failed;
                self.not_saved(&e, older);
            }
        }
    }

    /// Everything that changed, taken out of the agent to be written (the failure windows
    /// and positions are then known as saved); `None` when nothing did, or in a dry run.
    fn gather(&mut self) -> Option<Changes> {
        if self.store.is_none() {
            if !self.reopen {
                // A dry run: nothing is ever saved.
                self.pending = Changes::default();
                for run in self.jails.values_mut() {
                    run.detector.tracker_mut().saved();
                }
            }
            return None;
        }
        let mut changes = std::mem::take(&mut self.pending);
        for (path, log) in &self.logs {
            if let Some(checkpoint) = log.follower.checkpoint()
                && self.state.positions.get(path) != Some(&checkpoint)
            {
                changes.positions.insert(path.clone(), checkpoint);
            }
        }
        for (jail, journal) in &self.journals {
            if let Some(cursor) = journal.cursor()
                && self.state.cursors.get(jail).map(String::as_str) != Some(cursor)
            {
                changes.cursors.insert(jail.clone(), cursor.to_owned());
            }
        }
        for (name, run) in &mut self.jails {
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
    pub(super) fn state_status(&self) -> Option<StateStatus> {
        let (path, bytes) = match &self.store {
            Some(store) => (store.path().to_owned(), store.bytes()),
            None if self.reopen => (self.global.state_dir.join(crate::store::FILE), 0),
            None => return None,
        };
        Some(StateStatus {
            path,
            bytes,
            error: self.save_error.current().map(str::to_owned),
        })
    }

    /// Drops old history and ended failure windows from the state.
    pub(super) fn prune(&mut self, now: Now) {
        self.last_prune = now.wall;
        self.settle_writer();
        let Some(store) = &mut self.store else { return };
        let findtimes = self
            .jails
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
}

/// The bans the kernel holds at start, each taken at most once by a saved ban; those left
/// are adopted or lifted. A sorted `Vec` rather than a map: with a million bans, one
/// allocation of 40 bytes each instead of a tree's nodes.
struct InKernel {
    bans: Vec<((u32, IpNet), Expiry)>,
    taken: Vec<bool>,
}

impl InKernel {
    fn new(list: Vec<crate::datapath::BanRecord>) -> Self {
        let mut bans: Vec<((u32, IpNet), Expiry)> = list
            .into_iter()
            .map(|ban| ((ban.jail, ban.target), ban.expiry))
            .collect();
        bans.sort_unstable_by_key(|(key, _)| *key);
        bans.dedup_by_key(|(key, _)| *key);
        let taken = vec![false; bans.len()];
        Self { bans, taken }
    }

    /// The kernel's expiry of `key`, unless taken already; taken now.
    fn remove(&mut self, key: &(u32, IpNet)) -> Option<Expiry> {
        let i = self.bans.binary_search_by_key(key, |(k, _)| *k).ok()?;
        if std::mem::replace(&mut self.taken[i], true) {
            return None;
        }
        Some(self.bans[i].1)
    }

    /// The bans no saved ban took.
    fn rest(self) -> impl Iterator<Item = ((u32, IpNet), Expiry)> {
        self.bans
            .into_iter()
            .zip(self.taken)
            .filter(|(_, taken)| !taken)
            .map(|(ban, _)| ban)
    }
}

/// Entries committed since the memory was last handed back, past which [`release_memory`]
/// runs at the next sweep.
pub(super) const CHURN_TO_TRIM: usize = 10_000;

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
